"""Helpers of ``bench/tunnel.py``: subprocesses, a minimal origin, minimal clients, idle ends.

Everything here listens and connects on 127.0.0.1 only. Run as a script, this module is also
the entry point of the benchmark's own child processes::

    python bench/_tunnel_support.py idle-end server|client ...   one end of a tunnel (part 4a)
    python bench/_tunnel_support.py idle-origin                   holds TCP connections (4b)

For part 4b the real hub and agent get room for 10,000 streams from their own settings
(``pcg-sim hub --max-streams``, the agent's ``max_streams``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script from a checkout that is not installed
    sys.path.insert(0, str(REPO_ROOT))

from protocol.aio.procstats import rss_bytes  # noqa: E402
from protocol.frames import Settings  # noqa: E402

HOST = "127.0.0.1"
GATEWAY = "gw-bench"
SUPPORT_SCRIPT = Path(__file__).resolve()

#: the small HTTP exchange of the latency part: fixed bytes both ways
REQUEST = b"GET /s HTTP/1.1\r\nHost: origin\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
CONNECT_OK = b" 200 "

#: what the bulk senders write, one call at a time (zeros: nothing on the path compresses)
BULK_CHUNK = memoryview(bytes(1 << 20))


def wide_settings(streams: int) -> Settings:
    """Default settings with room for ``streams`` streams opened by the peer."""
    default = Settings()
    return Settings(
        max_streams=max(default.max_streams, streams + 1024),
        max_pending_opens=max(default.max_pending_opens, streams + 1024),
    )


# ---------------------------------------------------------------------------------------------
# Small utilities


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float | None:
    """user + system CPU seconds that ``pid`` has used, from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize_ms(samples_ns: Iterable[int]) -> dict[str, float]:
    values = sorted(s / 1e6 for s in samples_ns)
    return {
        "n": len(values),
        "p50_ms": statistics.median(values) if values else math.nan,
        "p99_ms": percentile(values, 99),
        "mean_ms": statistics.fmean(values) if values else math.nan,
    }


# ---------------------------------------------------------------------------------------------
# Child processes (hub, agent, the benchmark's own helpers), all killed on exit

_CHILDREN: list[subprocess.Popen[bytes]] = []


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    env.update(extra or {})
    return env


def spawn(
    args: list[str],
    *,
    stdout: Any = subprocess.DEVNULL,
    stderr: Any = subprocess.DEVNULL,
    stdin: Any = subprocess.DEVNULL,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        args, cwd=REPO_ROOT, stdout=stdout, stderr=stderr, stdin=stdin, env=child_env(env)
    )
    _CHILDREN.append(proc)
    return proc


def stop_process(proc: subprocess.Popen[bytes] | None, grace: float = 5.0) -> None:
    if proc is None:
        return
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
    if proc in _CHILDREN:
        _CHILDREN.remove(proc)


def stop_all_children() -> None:
    """Stop every child this process started (idempotent; also right for Ctrl-C)."""
    for proc in list(reversed(_CHILDREN)):
        stop_process(proc, grace=3.0)


async def read_json_line(
    proc: subprocess.Popen[bytes], timeout: float, what: str, log: Path | None = None
) -> dict[str, Any]:
    """The next JSON line on a child's stdout, read without blocking the event loop."""
    assert proc.stdout is not None
    stdout = proc.stdout
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            line = await loop.run_in_executor(None, stdout.readline)
    except TimeoutError:
        raise RuntimeError(f"{what}: no answer within {timeout}s{_tail(log)}") from None
    if not line:
        raise RuntimeError(f"{what} exited ({proc.poll()}){_tail(log)}")
    result: dict[str, Any] = json.loads(line)
    return result


def _tail(log: Path | None) -> str:
    if log is None or not log.exists():
        return ""
    return ":\n" + log.read_text(errors="replace")[-3000:]


@dataclass
class Tunnel:
    """A hub and one agent as real subprocesses, connected, on 127.0.0.1."""

    workdir: Path
    use_uvloop: bool
    allow_port: int
    wide_streams: int = 0  # > 0: start both through ``wide`` with room for that many streams
    env: dict[str, str] = field(default_factory=dict)  # for both processes, e.g. PCG_NATIVE
    hub: subprocess.Popen[bytes] | None = None
    agent: subprocess.Popen[bytes] | None = None
    connect_addr: tuple[str, int] = (HOST, 0)
    api_port: int = 0
    _token: str = field(default_factory=lambda: "bench-" + secrets.token_urlsafe(18))

    def _entry(self, which: str) -> list[str]:
        module = "protocol.simulator.cli" if which == "hub" else "agent.main"
        return [sys.executable, "-m", module] + (["hub"] if which == "hub" else [])

    async def start(self, timeout: float = 30.0) -> None:
        tokens = self.workdir / "tokens.yaml"
        tokens.write_text(f"{GATEWAY}: {self._token}\n")
        port = free_port()
        args = self._entry("hub") + [
            "--host", HOST, "--port", str(port), "--connect-port", "0", "--insecure-ws",
            "--tokens-file", str(tokens), "--ping-interval", "10", "--ping-timeout", "10",
        ]  # fmt: skip
        if not self.use_uvloop:
            args.append("--no-uvloop")
        limits: dict[str, int] = {}
        if self.wide_streams:
            wide = wide_settings(self.wide_streams)
            args += ["--max-streams", str(wide.max_streams),
                     "--max-pending-opens", str(wide.max_pending_opens)]  # fmt: skip
            limits = {"max_streams": wide.max_streams, "max_pending_opens": wide.max_pending_opens}
        hub_log = self.workdir / "hub.log"
        with open(hub_log, "ab") as log:
            self.hub = spawn(args, stdout=subprocess.PIPE, stderr=log, env=self.env)
        ready = await read_json_line(self.hub, timeout, "the hub", hub_log)
        host, _, connect_port = ready["connect"].rpartition(":")
        self.connect_addr = (host, int(connect_port))
        self.api_port = port
        config = self.workdir / "agent.yaml"
        config.write_text(
            json.dumps(  # JSON is YAML
                {
                    "gateway_name": GATEWAY,
                    "hub_url": ready["tunnel_url"],
                    "token": self._token,
                    "allowlist": [f"{HOST}:{self.allow_port}"],
                    "use_uvloop": self.use_uvloop,
                    "log_level": "INFO",
                    "drain_timeout": 2.0,
                    **limits,
                }
            )
        )
        agent_log = self.workdir / "agent.log"
        with open(agent_log, "ab") as log:
            self.agent = spawn(
                self._entry("agent") + ["-c", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**self.env, "PCG_USE_UVLOOP": "true" if self.use_uvloop else "false"},
            )
        deadline = time.monotonic() + timeout
        while "tunnel up" not in agent_log.read_text(errors="replace"):
            if self.agent.poll() is not None or self.hub.poll() is not None:
                raise RuntimeError(f"hub or agent exited{_tail(agent_log)}{_tail(hub_log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the agent did not connect within {timeout}s{_tail(agent_log)}")
            await asyncio.sleep(0.05)

    def pids(self) -> list[int]:
        """The hub's and the agent's process ids, once started."""
        assert self.hub is not None and self.agent is not None
        return [self.hub.pid, self.agent.pid]

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU time the hub and the agent have used so far (0 for one whose /proc is gone)."""
        hub, agent = (cpu_seconds(pid) or 0.0 for pid in self.pids())
        return hub, agent

    def relay_cpu(self) -> float:
        """Both relays' CPU seconds so far: what a request or a transfer costs the tunnel."""
        return sum(self.cpu_seconds())

    def connect_head(self, port: int) -> bytes:
        return (
            f"CONNECT {HOST}:{port} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Pcg-Gateway: {GATEWAY}\r\n\r\n"
        ).encode()

    async def open_streams_at_hub(self) -> int:
        """Streams open on the gateway's sessions, as the hub's API reports them."""
        reader, writer = await asyncio.open_connection(HOST, self.api_port)
        try:
            writer.write(b"GET /v1/gateways HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
            raw = await asyncio.wait_for(reader.read(), 10)
        finally:
            writer.close()
        try:
            body = json.loads(raw.partition(b"\r\n\r\n")[2])
            return int(sum(s["open_streams"] for s in body.get(GATEWAY, [])))
        except (ValueError, KeyError, TypeError, AttributeError):
            return -1  # the API changed shape: "unknown"

    def stop(self) -> None:
        stop_process(self.agent)
        stop_process(self.hub)


# ---------------------------------------------------------------------------------------------
# The origin: a raw asyncio TCP server answering a fixed tiny HTTP/1.1 response


class OriginProtocol(asyncio.Protocol):
    """``GET /s`` -> RESPONSE; ``GET /bytes/N`` -> N bytes; ``POST /sink`` reads its body."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.sink_left = 0
        self.send_left = 0
        self.writable = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = tr = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        tr.set_write_buffer_limits(high=1 << 20)

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        if not self.buffer and not self.sink_left and data == REQUEST:
            transport.write(RESPONSE)  # the fast path of the latency part
            return
        if self.sink_left:
            if len(data) <= self.sink_left:
                self.sink_left -= len(data)
                if not self.sink_left:
                    transport.write(RESPONSE)
                return
            data = data[self.sink_left :]
            self.sink_left = 0
            transport.write(RESPONSE)
        self.buffer += data
        while not self.sink_left:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            if head.startswith(b"GET /s "):
                transport.write(RESPONSE)
            elif head.startswith(b"GET /bytes/"):
                self.send_left = int(head[11 : head.index(b" ", 11)])
                transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % self.send_left)
                self._pump()
            elif head.startswith(b"POST /sink "):
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                taken = min(length, len(self.buffer))
                self.buffer = self.buffer[taken:]
                self.sink_left = length - taken
                if not self.sink_left:
                    transport.write(RESPONSE)
            else:
                transport.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                transport.close()
                return

    def _pump(self) -> None:
        transport = self.transport
        assert transport is not None
        chunk = BULK_CHUNK
        while self.send_left and self.writable and not transport.is_closing():
            n = min(len(chunk), self.send_left)
            transport.write(chunk[:n])
            self.send_left -= n

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True
        self._pump()


def _port_of(server: asyncio.AbstractServer) -> int:
    sockets: Any = getattr(server, "sockets", ())  # asyncio.Server and uvloop's Server
    return int(sockets[0].getsockname()[1])


async def start_origin() -> tuple[asyncio.AbstractServer, int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(OriginProtocol, HOST, 0, backlog=4096)
    return server, _port_of(server)


# ---------------------------------------------------------------------------------------------
# Clients: plain asyncio protocols, optionally through the hub's CONNECT listener first


class ClientProtocol(asyncio.Protocol):
    """Sends ``connect_head`` first (if any) and waits for its 200, then hands bytes to
    :meth:`on_data`."""

    def __init__(self, connect_head: bytes | None) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.connect_head = connect_head
        self.transport: asyncio.Transport | None = None
        self.established: asyncio.Future[None] = loop.create_future()
        self.waiter: asyncio.Future[None] | None = None
        self.writable: asyncio.Future[None] | None = None
        self._head = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = tr = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        if self.connect_head:
            tr.write(self.connect_head)
        else:
            self.established.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.established.done():
            self.on_data(data)
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            return
        head, rest = self._head[:end], self._head[end + 4 :]
        self._head = b""
        if CONNECT_OK not in head.split(b"\r\n", 1)[0]:
            self.established.set_exception(
                ConnectionError(f"CONNECT refused: {head.decode('latin-1')!r}")
            )
            return
        self.established.set_result(None)
        if rest:
            self.on_data(rest)

    def on_data(self, data: bytes) -> None:
        raise NotImplementedError

    def connection_lost(self, exc: Exception | None) -> None:
        error = exc or ConnectionResetError("connection closed")
        for future in (self.established, self.waiter, self.writable):
            if future is not None and not future.done():
                future.set_exception(error)
                future.exception()

    def pause_writing(self) -> None:
        self.writable = self.loop.create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None


class RequestClient(ClientProtocol):
    """One fixed request at a time on a keep-alive connection; the response has a fixed size."""

    def __init__(self, connect_head: bytes | None) -> None:
        super().__init__(connect_head)
        self.missing = 0

    async def request(self) -> None:
        assert self.transport is not None
        self.missing = len(RESPONSE)
        self.waiter = waiter = self.loop.create_future()
        self.transport.write(REQUEST)
        await waiter

    def on_data(self, data: bytes) -> None:
        self.missing -= len(data)
        if self.missing <= 0 and self.waiter is not None and not self.waiter.done():
            if self.missing < 0:
                self.waiter.set_exception(RuntimeError("more bytes than one response"))
            else:
                self.waiter.set_result(None)


class BulkClient(ClientProtocol):
    """Download: count ``expect`` bytes. Upload: write N bytes, then read RESPONSE."""

    def __init__(self, connect_head: bytes | None) -> None:
        super().__init__(connect_head)
        self.missing = 0

    def expect(self, n: int) -> asyncio.Future[None]:
        self.missing = n
        self.waiter = waiter = self.loop.create_future()
        return waiter

    def on_data(self, data: bytes) -> None:
        self.missing -= len(data)
        if self.missing <= 0 and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def download(self, n: int) -> None:
        assert self.transport is not None
        done = self.expect(len(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n) + n)
        self.transport.write(b"GET /bytes/%d HTTP/1.1\r\nHost: origin\r\n\r\n" % n)
        await done

    async def upload(self, n: int) -> None:
        transport = self.transport
        assert transport is not None
        done = self.expect(len(RESPONSE))
        transport.write(b"POST /sink HTTP/1.1\r\nHost: origin\r\nContent-Length: %d\r\n\r\n" % n)
        chunk = BULK_CHUNK
        left = n
        while left:
            if self.writable is not None:
                await self.writable
            size = min(len(chunk), left)
            transport.write(chunk[:size])
            left -= size
        await done


P = TypeVar("P", bound="ClientProtocol")


async def open_client(
    factory: Callable[[bytes | None], P],
    addr: tuple[str, int],
    connect_head: bytes | None,
    timeout: float = 30.0,
) -> tuple[asyncio.Transport, P]:
    """Connect to ``addr``; through CONNECT when ``connect_head`` is given."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        transport, protocol = await loop.create_connection(
            lambda: factory(connect_head), addr[0], addr[1]
        )
        try:
            await protocol.established
        except BaseException:
            transport.abort()
            raise
    return transport, protocol


# ---------------------------------------------------------------------------------------------
# The raw baseline: a loopback socket copy between two threads, no event loop


def raw_socket_copy(n: int, chunk: int = 1 << 20) -> float:
    """Seconds to copy ``n`` bytes over a loopback TCP connection: a thread sends a buffer in
    a loop, this thread receives into a bytearray (both ``chunk`` bytes)."""
    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen(1)
        sender = socket.create_connection(listener.getsockname())
        receiver, _ = listener.accept()
    data = memoryview(bytes(chunk))
    error: list[BaseException] = []

    def send() -> None:
        try:
            left = n
            while left:
                size = min(chunk, left)
                sender.sendall(data[:size])
                left -= size
        except BaseException as exc:  # reported by the receiving side
            error.append(exc)

    buffer = bytearray(chunk)
    view = memoryview(buffer)
    thread = threading.Thread(target=send, daemon=True)
    try:
        start = time.perf_counter()
        thread.start()
        got = 0
        while got < n:
            size = receiver.recv_into(view)
            if not size:
                break
            got += size
        elapsed = time.perf_counter() - start
        thread.join(10)
    finally:
        sender.close()
        receiver.close()
    if error or got != n:
        raise RuntimeError(f"raw copy moved {got} of {n} bytes: {error}")
    return elapsed


# ---------------------------------------------------------------------------------------------
# Child: one end of a tunnel holding idle streams (part 4a)


async def _stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def _say(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def _memory_now(trace: bool) -> tuple[int, int | None]:
    gc.collect()
    return (tracemalloc.get_traced_memory()[0] if trace else 0), rss_bytes()


def _top_sites(
    before: tracemalloc.Snapshot | None, after: tracemalloc.Snapshot | None, streams: int
) -> dict[str, float]:
    if before is None or after is None:
        return {}
    stats = [
        s
        for s in after.compare_to(before, "lineno")
        if s.traceback[0].filename != tracemalloc.__file__
    ]
    return {
        f"{_short(s.traceback[0].filename)}:{s.traceback[0].lineno}": s.size_diff / streams
        for s in stats[:6]
    }


def _short(filename: str) -> str:
    path = Path(filename)
    names = [path.name]
    for root in (REPO_ROOT, *(Path(p) for p in sys.path if p)):
        with contextlib.suppress(ValueError):
            names.append(str(path.relative_to(root)))
    return min(names[1:] or names, key=len)


async def idle_end(role: str, streams: int, trace: bool, url: str | None) -> int:
    """One end of a tunnel over a real websocket, answering commands on stdin.

    ``server``: an aiohttp server (as the hub) whose TunnelSession opens the streams.
    ``client``: the agent's websocket channel (``dial``) whose handler accepts each stream and
    then waits in ``read()``. Commands: ``warm`` (server: open, accept and close 100 streams),
    ``base`` (record memory), ``open`` (server: open ``streams`` and wait until all are
    accepted), ``measure`` (wait until ``streams`` are open here, record memory, report).
    """
    from protocol.aio.session import TunnelSession
    from protocol.aio.stream import TunnelStream
    from protocol.connection import ConnectionConfig, Role

    settings = wide_settings(streams)
    commands = await _stdin_lines()
    ready: asyncio.Future[TunnelSession] = asyncio.get_running_loop().create_future()
    counts = {"accepted": 0}
    held: list[TunnelStream] = []
    runner: Any = None

    async def handler(stream: TunnelStream) -> None:
        stream.accept()
        counts["accepted"] += 1  # warm-up streams count too: "base" sets it back to 0
        await stream.read()  # idle: blocks until the peer closes or resets

    if role == "server":
        from aiohttp import web

        from protocol.aio.aiohttp_upgrade import accept_websocket, handed_back

        async def tunnel(request: web.Request) -> web.StreamResponse:
            channel = accept_websocket(request, max_size=settings.max_message_size + 1024)
            if isinstance(channel, web.Response):
                return channel
            session = TunnelSession(
                channel,
                ConnectionConfig(Role.SERVER, settings, ping_interval=30, ping_timeout=30),
                label="bench-server",
            )
            await session.start()
            ready.set_result(session)
            await session.wait_closed()
            await session.close()
            return await handed_back(channel)

        app = web.Application()
        app.add_routes([web.get("/v1/tunnel", tunnel)])
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, HOST, 0)
        await site.start()
        assert site._server is not None
        _say(event="listening", port=_port_of(site._server))
        session = await asyncio.wait_for(ready, 60)
    else:
        from protocol.aio.dial import dial

        assert url is not None
        ws = await dial(url, token="bench", open_timeout=30)
        session = TunnelSession(
            ws,
            ConnectionConfig(Role.CLIENT, settings, ping_interval=30, ping_timeout=30),
            stream_handler=handler,
            label="bench-client",
        )
        await session.start()
    _say(event="connected")

    before_snap: tracemalloc.Snapshot | None = None
    base: tuple[int, int | None] = (0, None)
    if trace:
        tracemalloc.start(1)
    while line := (await commands.readline()).decode().strip():
        if line == "warm" and role == "server":
            warm = [session.open_stream({"kind": "idle"}) for _ in range(100)]
            await asyncio.wait_for(asyncio.gather(*(s.wait_accepted() for s in warm)), 60)
            for stream in warm:
                await stream.close()
            del warm
            await _wait_for(lambda: session.stats().open_streams == 0, 30)
            _say(event="warm")
        elif line == "base":
            await _wait_for(lambda: session.stats().open_streams == 0, 30)
            await asyncio.sleep(0.1)
            counts["accepted"] = 0
            base = _memory_now(trace)
            before_snap = tracemalloc.take_snapshot() if trace else None
            _say(event="base")
        elif line == "open" and role == "server":
            started = time.perf_counter()
            for first in range(0, streams, 500):
                batch = [
                    session.open_stream({"kind": "idle"}) for _ in range(min(500, streams - first))
                ]
                held.extend(batch)
                await asyncio.wait_for(asyncio.gather(*(s.wait_accepted() for s in batch)), 60)
            _say(event="opened", seconds=time.perf_counter() - started)
        elif line == "measure":
            if role == "client":
                await _wait_for(lambda: counts["accepted"] >= streams, 60)
            await asyncio.sleep(0.2)
            open_streams = session.stats().open_streams
            after = _memory_now(trace)
            after_snap = tracemalloc.take_snapshot() if trace else None
            rss = None if after[1] is None or base[1] is None else after[1] - base[1]
            _say(
                event="measured",
                role=role,
                open_streams=open_streams,
                traced_bytes=after[0] - base[0] if trace else None,
                rss_bytes=rss,
                top_sites=_top_sites(before_snap, after_snap, streams),
            )
            before_snap = after_snap = None
        elif line == "quit":
            break
    with contextlib.suppress(Exception):
        await asyncio.wait_for(session.close(), 5)
    if runner is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(runner.cleanup(), 5)
    return 0


async def _wait_for(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)


# ---------------------------------------------------------------------------------------------
# Child: an origin that accepts and holds connections (part 4b)


class _Hold(asyncio.Protocol):
    def data_received(self, data: bytes) -> None:
        pass


async def idle_origin() -> int:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Hold, HOST, 0, backlog=4096)
    _say(event="listening", port=_port_of(server))
    commands = await _stdin_lines()
    await commands.readline()  # anything, or EOF: stop
    server.close()
    return 0


def _run_loop(main: Awaitable[int], use_uvloop: bool) -> int:
    from protocol.aio.loop import run

    return run(main, use_uvloop=use_uvloop)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    raise_nofile_limit()
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="_tunnel_support")
    sub = parser.add_subparsers(dest="command", required=True)
    end = sub.add_parser("idle-end")
    end.add_argument("role", choices=["server", "client"])
    end.add_argument("--streams", type=int, required=True)
    end.add_argument("--trace", action="store_true")
    end.add_argument("--url")
    end.add_argument("--no-uvloop", action="store_true")
    origin = sub.add_parser("idle-origin")
    origin.add_argument("--no-uvloop", action="store_true")
    parsed = parser.parse_args(args)
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # the parent cleans up; just go
    if parsed.command == "idle-end":
        coro = idle_end(parsed.role, parsed.streams, parsed.trace, parsed.url)
        return _run_loop(coro, not parsed.no_uvloop)
    return _run_loop(idle_origin(), not parsed.no_uvloop)


class BenchError(RuntimeError):
    pass


def run_script(
    name: str,
    bench: Callable[[Path], Coroutine[Any, Any, dict[str, Any]]],
    render: Callable[[dict[str, Any]], str] | None,
    error_exit: int = 2,
) -> int:
    """Run ``bench`` in a temporary directory on uvloop (when installed), stop every child it
    started, and print its result: ``render(result)``, or one JSON object when ``render`` is
    None. A :class:`BenchError` is printed and exits ``error_exit``."""
    from protocol.aio.loop import run as run_loop

    try:
        with tempfile.TemporaryDirectory(prefix=f"pcg-bench-{name}-") as tmp:
            result = run_loop(bench(Path(tmp)))
    except BenchError as exc:
        print(f"bench/{name}.py: {exc}", file=sys.stderr)
        return error_exit
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        stop_all_children()
    print(json.dumps(result, indent=2) if render is None else render(result))
    return 0


# ---------------------------------------------------------------------------------------------
# Measuring loops shared by bench/tunnel.py and bench/compare.py


async def time_transfer(
    addr: tuple[str, int], head: bytes | None, direction: str, n: int, timeout: float
) -> float:
    transport, client = await open_client(BulkClient, addr, head)
    try:
        start = time.perf_counter()
        async with asyncio.timeout(timeout):
            if direction == "download":
                await client.download(n)
            else:
                await client.upload(n)
        return time.perf_counter() - start
    finally:
        transport.close()


async def keepalive_latencies(
    addr: tuple[str, int],
    head: bytes | None,
    conns: int,
    per_conn: int,
    warmup: int,
    seconds: float,
) -> tuple[list[int], float]:
    """``conns`` keep-alive connections each making ``per_conn`` requests one after the other;
    returns every request's latency (ns) and the wall time of the whole batch."""
    opened = await asyncio.gather(
        *(open_client(RequestClient, addr, head) for _ in range(conns)), return_exceptions=True
    )
    clients = [c for c in opened if not isinstance(c, BaseException)]
    try:
        if len(clients) != conns:
            errors = [c for c in opened if isinstance(c, BaseException)]
            raise BenchError(f"{conns - len(clients)} of {conns} connections failed: {errors[0]}")
        samples: list[int] = []
        clock = time.perf_counter_ns
        async with asyncio.timeout(seconds + 30):
            for _ in range(max(1, warmup // conns)):
                await asyncio.gather(*(client.request() for _, client in clients))
            deadline = time.perf_counter() + seconds

            async def worker(client: RequestClient) -> None:
                for _ in range(per_conn):
                    if time.perf_counter() > deadline:
                        return
                    start = clock()
                    await client.request()
                    samples.append(clock() - start)

            start = time.perf_counter()
            await asyncio.gather(*(worker(client) for _, client in clients))
            wall = time.perf_counter() - start
        return samples, wall
    finally:
        for transport, _ in clients:
            transport.close()


async def fresh_latencies(
    addr: tuple[str, int], head: bytes | None, workers: int, per_worker: int, seconds: float
) -> tuple[list[int], float]:
    """``workers`` loops each opening a new connection (CONNECT stream) per request."""
    samples: list[int] = []
    clock = time.perf_counter_ns
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        for _ in range(per_worker):
            if time.perf_counter() > deadline:
                return
            start = clock()
            transport, client = await open_client(RequestClient, addr, head)
            try:
                await client.request()
            finally:
                transport.close()
            samples.append(clock() - start)

    start = time.perf_counter()
    async with asyncio.timeout(seconds + 30):
        await asyncio.gather(*(worker() for _ in range(workers)))
    return samples, time.perf_counter() - start


class LatencyProfile(Protocol):
    """How many small requests one latency step makes (both benches' profiles have these)."""

    @property
    def c1_requests(self) -> int: ...
    @property
    def c100_requests_per_conn(self) -> int: ...
    @property
    def fresh_c1_requests(self) -> int: ...
    @property
    def fresh_c100_per_worker(self) -> int: ...
    @property
    def warmup_requests(self) -> int: ...
    @property
    def step_seconds(self) -> float: ...


Measure = Callable[[tuple[str, int], bytes | None, int], Awaitable[tuple[list[int], float]]]


def latency_modes(profile: LatencyProfile, new_connection_mode: str) -> dict[str, Measure]:
    """The two small-request workloads, by name: ``keepalive`` (requests one after another on
    each connection) and ``new_connection_mode`` (a new connection per request); each takes
    (address, CONNECT head or None, concurrency) and returns (latencies in ns, wall time)."""
    seconds = profile.step_seconds
    return {
        "keepalive": lambda addr, head, c: keepalive_latencies(
            addr,
            head,
            c,
            profile.c1_requests if c == 1 else profile.c100_requests_per_conn,
            profile.warmup_requests,
            seconds,
        ),
        new_connection_mode: lambda addr, head, c: fresh_latencies(
            addr,
            head,
            c,
            profile.fresh_c1_requests if c == 1 else profile.fresh_c100_per_worker,
            seconds,
        ),
    }


if __name__ == "__main__":
    sys.exit(main())
