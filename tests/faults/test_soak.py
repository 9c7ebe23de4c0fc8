"""Compressed soak: 100,000 streams opened and closed and 10,000 RPCs over one tunnel between a
real hub and a real agent (subprocesses, loopback); afterwards asyncio tasks, open file
descriptors and RSS of both are within 5 % of their values after warm-up.

Streams go through the hub's CONNECT listener: 8 in 10 carry a small exchange with an echo
origin and are closed by it, 1 in 10 is refused by the agent's allowlist (403), 1 in 10 is
abandoned by the caller right after its CONNECT. RPCs are ``agent.status`` through the hub's API.
Task counts come from the instrumented hub and agent (tests/faults/instrumented.py: one extra
route and one extra RPC method), fds and RSS from /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from protocol.aio.loop import run as run_loop
from tests.faults.services import Service
from tests.support.net import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

GATEWAY = "gw-soak"
STREAMS = 100_000
RPCS = 10_000
WARMUP_STREAMS = 10_000
WARMUP_RPCS = 1_000
STREAM_CONCURRENCY = 64
RPC_CONCURRENCY = 8
TOLERANCE = 0.05
REFUSED = ("127.0.0.1", 9)  # not on the allowlist: the agent resets the stream, nothing dials


@dataclass(frozen=True, slots=True)
class Figures:
    tasks: int
    fds: int
    rss_kib: int
    fd_kinds: tuple[tuple[str, int], ...] = ()

    def line(self) -> str:
        kinds = ", ".join(f"{n} {k}" for k, n in self.fd_kinds if not k.startswith("/"))
        return (
            f"tasks {self.tasks:3d}  fds {self.fds:3d} ({kinds})  "
            f"rss {self.rss_kib / 1024:6.1f} MiB"
        )


def within(after: float, before: float, tolerance: float = TOLERANCE) -> bool:
    return abs(after - before) <= tolerance * before


class Soak:
    def __init__(self, workdir: Path) -> None:
        self.port, self.connect_port = free_port(), free_port()
        token = "tok-" + secrets.token_urlsafe(18)
        tokens = workdir / "hub-tokens.yaml"
        tokens.write_text(yaml.safe_dump({GATEWAY: token}))
        self.hub = Service(
            [
                sys.executable, "-m", "tests.faults.instrumented", "hub", "--host", "127.0.0.1",
                "--port", str(self.port), "--connect-port", str(self.connect_port),
                "--tokens-file", str(tokens), "--insecure-ws",
                "--ping-interval", "2", "--ping-timeout", "5",
            ],
            workdir / "hub.log",
        )  # fmt: skip
        self.workdir = workdir
        self.token = token
        self.agent: Service | None = None
        self.counts: Counter[str] = Counter()
        self.api = f"http://127.0.0.1:{self.port}/v1"

    def start_agent(self, origin_port: int) -> Service:
        config = {
            "gateway_name": GATEWAY,
            "hub_url": f"ws://127.0.0.1:{self.port}/v1/tunnel",
            "token": self.token,
            "allowlist": [f"127.0.0.1:{origin_port}"],
            "ping_interval": 2.0,
            "ping_timeout": 5.0,
            "log_level": "INFO",
        }
        path = self.workdir / "agent.yaml"
        path.write_text(yaml.safe_dump(config))
        argv = [sys.executable, "-m", "tests.faults.instrumented", "agent", "-c", str(path)]
        self.agent = Service(argv, self.workdir / "agent.log")
        self.agent.start()
        return self.agent

    # -- traffic

    async def stream(self, index: int, origin_port: int) -> None:
        kind = "refused" if index % 10 == 0 else "abandoned" if index % 10 == 1 else "echo"
        host, port = REFUSED if kind == "refused" else ("127.0.0.1", origin_port)
        reader, writer = await asyncio.open_connection("127.0.0.1", self.connect_port)
        try:
            head = f"CONNECT {host}:{port} HTTP/1.1\r\nPcg-Gateway: {GATEWAY}\r\n\r\n".encode()
            if kind == "abandoned":
                writer.write(head)
                self.counts["abandoned"] += 1
                return
            writer.write(head + b"ping")
            status = int((await reader.readuntil(b"\r\n\r\n")).split()[1])
            if kind == "refused":
                self.counts["refused" if status == 403 else f"refused answered {status}"] += 1
            elif status == 200 and await reader.readexactly(4) == b"ping":
                self.counts["echo"] += 1
            else:
                self.counts[f"echo answered {status}"] += 1
        finally:
            writer.close()

    async def streams(self, first: int, count: int, origin_port: int) -> None:
        indexes = iter(range(first, first + count))

        async def worker() -> None:
            for index in indexes:
                try:
                    await self.stream(index, origin_port)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    self.counts[f"error {type(exc).__name__}"] += 1

        await asyncio.gather(*(worker() for _ in range(STREAM_CONCURRENCY)))

    async def rpcs(self, count: int) -> None:
        remaining = iter(range(count))
        url = f"{self.api}/gateways/{GATEWAY}/rpc/agent.status"
        async with aiohttp.ClientSession(trust_env=False) as http:

            async def worker() -> None:
                for _ in remaining:
                    async with http.post(url, json={}) as response:
                        body = await response.json()
                    ok = response.status == 200 and body["result"]["gateway"] == GATEWAY
                    self.counts["rpc" if ok else f"rpc answered {response.status}"] += 1

            await asyncio.gather(*(worker() for _ in range(RPC_CONCURRENCY)))

    async def traffic(self, first: int, streams: int, rpcs: int, origin_port: int) -> float:
        started = time.monotonic()
        async with asyncio.timeout(150):
            await asyncio.gather(self.streams(first, streams, origin_port), self.rpcs(rpcs))
        return time.monotonic() - started

    # -- figures

    async def _get(self, http: aiohttp.ClientSession, path: str) -> Any:
        async with http.get(self.api + path) as response:
            return await response.json()

    async def figures(self) -> tuple[Figures, Figures]:
        """(hub, agent) once nothing is open and two readings in a row agree (at most 15 s)."""
        assert self.agent is not None
        connector = aiohttp.TCPConnector(force_close=True)  # leave no connection behind
        previous: tuple[Figures, Figures] | None = None
        async with aiohttp.ClientSession(connector=connector, trust_env=False) as http:
            deadline = time.monotonic() + 15
            while True:
                await asyncio.sleep(0.5)
                # /proc first: the queries below open a connection the hub closes a bit later
                hub_proc, agent_proc = self.hub.figures(), self.agent.figures()
                sessions = (await self._get(http, "/gateways")).get(GATEWAY, [])
                hub_tasks = (await self._get(http, "/debug/tasks"))["tasks"]
                url = f"{self.api}/gateways/{GATEWAY}/rpc/faults.tasks"
                async with http.post(url, json={}) as response:
                    agent_tasks = (await response.json())["result"]["tasks"]
                current = (
                    Figures(hub_tasks, hub_proc.fds, hub_proc.rss_kib, hub_proc.fd_kinds),
                    Figures(agent_tasks, agent_proc.fds, agent_proc.rss_kib, agent_proc.fd_kinds),
                )
                idle = len(sessions) == 1 and sessions[0]["open_streams"] == 0
                steady = previous is not None and all(
                    (a.tasks, a.fds) == (b.tasks, b.fds)
                    for a, b in zip(current, previous, strict=True)
                )
                if (idle and steady) or time.monotonic() > deadline:
                    return current
                previous = current


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        writer.write(await reader.read(64))
        await writer.drain()
    writer.close()


def test_100k_streams_and_10k_rpcs_over_one_tunnel_leave_no_leak(tmp_path: Path) -> None:
    soak = Soak(tmp_path)
    soak.hub.start()
    try:
        soak.hub.wait_log(r'"event": "listening"', timeout=15)
        results = run_loop(body(soak))
    finally:
        if soak.agent is not None:
            soak.agent.stop()
        soak.hub.stop()
    (hub_warm, agent_warm), (hub_end, agent_end), seconds = results
    print(f"\n[soak] {STREAMS} streams + {RPCS} RPCs in {seconds:.1f}s: {dict(soak.counts)}")
    for name, warm, end in (("hub", hub_warm, hub_end), ("agent", agent_warm, agent_end)):
        print(f"[soak] {name:<5} after warm-up: {warm.line()}")
        print(f"[soak] {name:<5} at the end:    {end.line()}")

    expected = {
        "echo": (WARMUP_STREAMS + STREAMS) * 8 // 10,
        "refused": (WARMUP_STREAMS + STREAMS) // 10,
        "abandoned": (WARMUP_STREAMS + STREAMS) // 10,
        "rpc": WARMUP_RPCS + RPCS,
    }
    assert dict(soak.counts) == expected
    assert soak.agent is not None and soak.agent.count(r"tunnel up gateway=") == 1, "one tunnel"
    for warm, end in ((hub_warm, hub_end), (agent_warm, agent_end)):
        assert within(end.tasks, warm.tasks), (warm, end)
        assert within(end.fds, warm.fds), (warm, end)
        assert within(end.rss_kib, warm.rss_kib), (warm, end)


async def body(soak: Soak) -> tuple[tuple[Figures, Figures], tuple[Figures, Figures], float]:
    server = await asyncio.start_server(echo, "127.0.0.1", 0, backlog=1024)
    origin_port = int(server.sockets[0].getsockname()[1])
    try:
        agent = soak.start_agent(origin_port)
        deadline = time.monotonic() + 15
        while agent.count(r"tunnel up gateway=") < 1:
            assert time.monotonic() < deadline and agent.alive, agent.log[-2000:]
            await asyncio.sleep(0.05)
        await soak.traffic(0, WARMUP_STREAMS, WARMUP_RPCS, origin_port)
        warm = await soak.figures()
        seconds = await soak.traffic(WARMUP_STREAMS, STREAMS, RPCS, origin_port)
        end = await soak.figures()
        return warm, end, seconds
    finally:
        server.close()
