"""The tunnel inside the NAT topology, for the fault tests.

::

    public host 198.19.1.2       router     gateway host 198.19.2.10   MAAS host 198.19.2.20
    pcg-sim hub :8443 wss+API  <--(NAT)---  pcg-agent (dials out)      origin :9000 (records ids)
                :8080 CONNECT                                          pcg-sim maas :5240
    caller (a loop of this process)                                    (a loop of this process)

The hub, the agent and the MAAS simulator are real subprocesses started inside their hosts.
The caller (HTTP through the hub's CONNECT listener, RPCs through its API) and the origin run
on event loops of this process whose threads entered the public and the MAAS host's namespaces
(:mod:`tests.faults.nsloop`), so their sockets are those hosts' sockets. Traffic goes only to
addresses of the topology's namespaces.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import secrets
import ssl
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import yaml
from aiohttp import web

from agent.config import AgentConfig
from agent.config import load as load_agent_config
from protocol.simulator.nat import Host, NatTopology
from tests.faults.instrumented import EFFECTS_ENV
from tests.faults.nsloop import NamespaceLoop
from tests.faults.services import BIN, Service
from tests.support.net import HttpResult, http_request, splice
from tests.support.tls import Pki, make_pki

T = TypeVar("T")

HUB_PORT = 8443
CONNECT_PORT = 8080
ORIGIN_PORT = 9000
MAAS_PORT = 5240

TUNNEL_UP = r"tunnel up gateway="
TUNNEL_DOWN = r"tunnel down gateway="


@dataclass(frozen=True, slots=True)
class Timing:
    """Keepalive and reconnect settings of one test's agent and hub (seconds).

    ``ping_interval=None`` leaves the agent's default (10 s)."""

    ping_interval: float | None = 2.0
    ping_timeout: float = 2.0
    write_timeout: float = 4.0
    open_timeout: float = 3.0
    connect_timeout: float = 3.0
    backoff_base: float = 0.2
    backoff_cap: float = 2.0
    backoff_reset_after: float = 5.0
    hub_ping_interval: float = 2.0
    hub_ping_timeout: float = 2.0

    def agent_settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "ping_timeout": self.ping_timeout,
            "write_timeout": self.write_timeout,
            "open_timeout": self.open_timeout,
            "connect_timeout": self.connect_timeout,
            "backoff_base": self.backoff_base,
            "backoff_cap": self.backoff_cap,
            "backoff_reset_after": self.backoff_reset_after,
        }
        if self.ping_interval is not None:
            settings["ping_interval"] = self.ping_interval
        return settings

    @property
    def hub_dead_peer_bound(self) -> float:
        return self.hub_ping_interval + self.hub_ping_timeout


def recovery_bound(config: AgentConfig, timing: Timing, margin: float = 2.5) -> float:
    """How long after a fault (or its end) relayed requests may keep failing, for this config.

    The agent notices a dead path within ``dead_peer_bound`` (PROTOCOL.md §7, agent/config.py),
    waits at most ``backoff_cap`` before the next dial, a dial may hang ``open_timeout``; until
    the hub's own keepalive ends the old session it may route a stream to it; ``margin`` covers
    the probe's own attempt timeout and pause."""
    noticed = max(config.dead_peer_bound, timing.hub_dead_peer_bound)
    return noticed + config.backoff.cap + config.open_timeout + margin


# --------------------------------------------------------------------------- processes


class LabHub(Service):
    """``pcg-sim hub`` on the public host: wss with a test CA, CONNECT listener, debug routes."""

    def __init__(
        self,
        topology: NatTopology,
        workdir: Path,
        tokens: dict[str, str],
        pki: Pki,
        timing: Timing,
        *,
        instrumented: bool = False,
    ) -> None:
        tokens_file = workdir / "hub-tokens.yaml"
        tokens_file.write_text(yaml.safe_dump(tokens))
        self.address = topology.address(Host.PUBLIC)
        args = [
            "--host", self.address, "--port", str(HUB_PORT), "--connect-port", str(CONNECT_PORT),
            "--tokens-file", str(tokens_file), "--cert", str(pki.server_cert),
            "--key", str(pki.server_key), "--debug-endpoints",
            "--ping-interval", str(timing.hub_ping_interval),
            "--ping-timeout", str(timing.hub_ping_timeout),
        ]  # fmt: skip
        if instrumented:
            argv = [sys.executable, "-m", "tests.faults.instrumented", "hub", *args]
        else:
            argv = [str(BIN / "pcg-sim"), "hub", *args]
        launch = functools.partial(topology.popen, Host.PUBLIC)
        super().__init__(argv, workdir / "hub.log", launch=launch)

    def start(self, timeout: float = 15.0) -> None:
        super().start()
        self.wait_log(r'"event": "listening"', timeout=timeout, count=self.starts)

    def restart(self) -> None:
        self.kill()
        self.start()


class LabAgent(Service):
    """``pcg-agent`` on the gateway host (or the instrumented one, see instrumented.py)."""

    def __init__(
        self,
        topology: NatTopology,
        workdir: Path,
        settings: dict[str, Any],
        *,
        instrumented: bool = False,
    ) -> None:
        self.config_path = workdir / f"agent-{settings['gateway_name']}.yaml"
        self.config_path.write_text(yaml.safe_dump(settings))
        #: the agent's own reading of that file: its bounds are what the tests hold it to
        self.config = load_agent_config(self.config_path, environ={})
        self.effects_path = workdir / f"effects-{settings['gateway_name']}.log"
        if instrumented:
            argv = [sys.executable, "-m", "tests.faults.instrumented", "agent"]
        else:
            argv = [str(BIN / "pcg-agent")]
        argv += ["-c", str(self.config_path)]
        launch = functools.partial(topology.popen, Host.GATEWAY)
        super().__init__(
            argv,
            workdir / f"agent-{settings['gateway_name']}.log",
            launch=launch,
            env={EFFECTS_ENV: str(self.effects_path)},
        )

    @property
    def ups(self) -> int:
        return self.count(TUNNEL_UP)

    @property
    def downs(self) -> int:
        return self.count(TUNNEL_DOWN)

    def down_reasons(self) -> list[str]:
        return [
            line.partition(" reason=")[2]
            for line in self.log.splitlines()
            if "tunnel down gateway=" in line
        ]

    def effects(self) -> collections.Counter[str]:
        if not self.effects_path.exists():
            return collections.Counter()
        return collections.Counter(self.effects_path.read_text().split())


class LabMaas(Service):
    """``pcg-sim maas`` on the MAAS host; its API key is generated into the workdir."""

    def __init__(self, topology: NatTopology, workdir: Path) -> None:
        self.key_file = workdir / "maas-api-key"
        self.address = topology.address(Host.MAAS)
        argv = [
            str(BIN / "pcg-sim"), "maas", "--host", self.address, "--port", str(MAAS_PORT),
            "--api-key-file", str(self.key_file), "--log-level", "warning",
        ]  # fmt: skip
        self.topology = topology
        super().__init__(
            argv, workdir / "maas.log", launch=functools.partial(topology.popen, Host.MAAS)
        )

    def start(self, timeout: float = 15.0) -> None:
        super().start()
        self.wait_log(r"MAAS simulator at ", timeout=timeout, count=self.starts)

    @property
    def endpoint_path(self) -> str:
        return "/MAAS"

    @property
    def api_key(self) -> str:
        return self.key_file.read_text().strip()


# --------------------------------------------------------------------------- origin


class RecordingOrigin:
    """An HTTP server on the MAAS host that records every request id it served.

    ``GET /req/{id}`` answers ``{"id": id}``; ``GET /small`` answers ``ok``. ``mode`` (set from
    any thread) makes ``/req`` answer 503 with Retry-After (``unavailable``), or answer only
    after ``slow_s`` seconds (``slow``)."""

    def __init__(self) -> None:
        #: id -> how many requests for it reached the origin and were served (not refused)
        self.served: collections.Counter[str] = collections.Counter()
        #: id -> how many were answered 503
        self.refused: collections.Counter[str] = collections.Counter()
        self.mode = "ok"
        self.slow_s = 3.5
        self.retry_after = 1
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> None:
        app = web.Application()
        app.add_routes([web.get("/req/{id}", self._request), web.get("/small", self._small)])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port, backlog=1024).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _request(self, request: web.Request) -> web.Response:
        request_id = request.match_info["id"]
        mode = self.mode
        if mode == "unavailable":
            self.refused[request_id] += 1
            return web.Response(
                status=503, text="busy\n", headers={"Retry-After": str(self.retry_after)}
            )
        self.served[request_id] += 1
        if mode == "slow":
            await asyncio.sleep(self.slow_s)
        return web.json_response({"id": request_id})

    async def _small(self, request: web.Request) -> web.Response:
        return web.Response(body=b"ok")


# --------------------------------------------------------------------------- caller


class TunnelRefused(Exception):
    """The hub answered the CONNECT with something other than 200."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"CONNECT answered {status}: {text.strip()[:200]}")
        self.status = status


ATTEMPT_ERRORS = (OSError, TimeoutError, asyncio.IncompleteReadError, TunnelRefused, ValueError)


@dataclass(slots=True)
class Outcome:
    """One logical request (one id) as the caller saw it, over all its attempts."""

    request_id: str
    ok: bool = False
    attempts: int = 0
    seconds: float = 0.0
    #: monotonic times: when the last attempt began, when the request ended
    last_attempt: float = 0.0
    finished: float = 0.0
    #: answers whose body carried another id (must never happen)
    foreign: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass(slots=True)
class RpcOutcome:
    key: str
    ok: bool = False
    attempts: int = 0
    seconds: float = 0.0
    last_attempt: float = 0.0
    finished: float = 0.0
    result: Any = None
    errors: list[str] = field(default_factory=list)


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:160]


class Caller:
    """The Palette side's client, on the public host's loop: HTTP through the hub's CONNECT
    listener (a new stream per request), RPCs through the hub's API."""

    def __init__(self, hub_host: str, gateway: str, ca_file: Path) -> None:
        self.hub_host = hub_host
        self.gateway = gateway
        self.ca_file = ca_file
        self._http: aiohttp.ClientSession | None = None

    async def open_tunnel(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self.hub_host, CONNECT_PORT)
        try:
            target = f"{host}:{port}"
            writer.write(
                f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
                f"Pcg-Gateway: {self.gateway}\r\n\r\n".encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split()[1])
            if status != 200:
                text = await reader.read(4096)
                raise TunnelRefused(status, text.decode(errors="replace"))
        except BaseException:
            writer.close()
            raise
        return reader, writer

    async def fetch(self, host: str, port: int, path: str, *, timeout: float) -> HttpResult:
        """One attempt: one CONNECT stream, one HTTP request on it."""
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await self.open_tunnel(host, port)
                return await http_request(reader, writer, "GET", path, host=f"{host}:{port}")
        finally:
            if writer is not None:
                writer.close()

    async def fetch_until_ok(
        self,
        request_id: str,
        host: str,
        port: int,
        *,
        attempt_timeout: float,
        bound: float,
        pause: float = 0.2,
    ) -> Outcome:
        """``GET /req/{id}`` until a 200 carrying this id, retrying the same id, at most
        ``bound`` seconds. 503 waits its Retry-After."""
        outcome = Outcome(request_id)
        started = time.monotonic()
        deadline = started + bound
        while (remaining := deadline - time.monotonic()) > 0:
            outcome.attempts += 1
            outcome.last_attempt = time.monotonic()
            wait = pause
            try:
                answer = await self.fetch(
                    host, port, f"/req/{request_id}", timeout=min(attempt_timeout, remaining)
                )
            except ATTEMPT_ERRORS as exc:
                outcome.errors.append(_short(exc))
            else:
                if answer.status == 200:
                    answered = str(json.loads(answer.body).get("id"))
                    if answered == request_id:
                        outcome.ok = True
                        break
                    outcome.foreign.append(answered)
                else:
                    outcome.errors.append(f"HTTP {answer.status}")
                    wait = max(pause, float(answer.headers.get("retry-after", "0") or 0))
            await asyncio.sleep(min(wait, max(0.0, deadline - time.monotonic())))
        outcome.finished = time.monotonic()
        outcome.seconds = outcome.finished - started
        return outcome

    async def first_success(
        self, host: str, port: int, *, deadline: float, attempt_timeout: float = 1.5
    ) -> tuple[float, int, list[str]]:
        """Probe ``GET /small`` until it answers ``ok``: (monotonic time, attempts, errors)."""
        attempts = 0
        errors: list[str] = []
        while (remaining := deadline - time.monotonic()) > 0:
            attempts += 1
            try:
                answer = await self.fetch(
                    host, port, "/small", timeout=min(attempt_timeout, remaining)
                )
                if answer.status == 200 and answer.body == b"ok":
                    return time.monotonic(), attempts, errors
                errors.append(f"HTTP {answer.status}")
            except ATTEMPT_ERRORS as exc:
                errors.append(_short(exc))
            await asyncio.sleep(0.1)
        raise AssertionError(f"no relayed request succeeded in time; {attempts} attempts: {errors}")

    # -- RPCs through the hub's API

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            tls = ssl.create_default_context(cafile=str(self.ca_file))
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=tls, limit=32), trust_env=False
            )
        return self._http

    async def hub_get(self, path: str, timeout: float = 5.0) -> Any:
        url = f"https://{self.hub_host}:{HUB_PORT}{path}"
        async with self._session().get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as got:
            return await got.json()

    async def rpc(
        self,
        method: str,
        params: dict[str, Any],
        *,
        key: str | None = None,
        deadline: float = 5.0,
        timeout: float = 8.0,
    ) -> tuple[int, dict[str, Any]]:
        url = (
            f"https://{self.hub_host}:{HUB_PORT}/v1/gateways/{self.gateway}/rpc/{method}"
            f"?deadline={deadline}"
        )
        headers = {"Idempotency-Key": key} if key else {}
        async with self._session().post(
            url, json=params, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            return response.status, await response.json()

    async def rpc_until_done(
        self,
        method: str,
        params: dict[str, Any],
        key: str,
        *,
        bound: float,
        deadline: float = 4.0,
    ) -> RpcOutcome:
        """Call until a result, retrying with the same idempotency key on what PROTOCOL.md §9.4
        says to retry (unavailable, deadline_exceeded, resource_exhausted) and on a hub that
        cannot be reached; stop at any other error."""
        outcome = RpcOutcome(key)
        started = time.monotonic()
        stop_at = started + bound
        while time.monotonic() < stop_at:
            outcome.attempts += 1
            outcome.last_attempt = time.monotonic()
            try:
                status, body = await self.rpc(
                    method, params, key=key, deadline=deadline, timeout=deadline + 3
                )
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                outcome.errors.append(_short(exc))
            else:
                if status == 200:
                    outcome.ok, outcome.result = True, body.get("result")
                    break
                code = str(body.get("error", {}).get("code"))
                outcome.errors.append(f"HTTP {status} {code}")
                if code not in ("unavailable", "deadline_exceeded", "resource_exhausted"):
                    break
            await asyncio.sleep(0.3)
        outcome.finished = time.monotonic()
        outcome.seconds = outcome.finished - started
        return outcome

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()


class ConnectForwarder:
    """A local port on the public host that carries each connection through the tunnel to one
    destination, so an unmodified HTTP client (the MAAS client) reaches MAAS through the hub."""

    def __init__(self, caller: Caller, host: str, port: int) -> None:
        self.caller = caller
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                up_reader, up_writer = await self.caller.open_tunnel(*self.target)
        except ATTEMPT_ERRORS:
            writer.close()  # the client sees the connection drop and retries
            return

        await splice((reader, writer), (up_reader, up_writer))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()


# --------------------------------------------------------------------------- the lab


class TunnelLab:
    """Per topology: the caller's and the origin's loops, the test CA, the origin."""

    def __init__(self, topology: NatTopology, workdir: Path) -> None:
        self.topology = topology
        self.workdir = workdir
        self.public = NamespaceLoop(topology.namespace(Host.PUBLIC)).start()
        self.private = NamespaceLoop(topology.namespace(Host.MAAS)).start()
        self.pki = make_pki(workdir / "pki", hosts=(topology.address(Host.PUBLIC),))
        self.origin = RecordingOrigin()
        self.private.run(self.origin.start(self.maas_address, ORIGIN_PORT), 10)
        topology.wait_listening(Host.MAAS, ORIGIN_PORT)

    @property
    def maas_address(self) -> str:
        return self.topology.address(Host.MAAS)

    def tunnel(
        self,
        timing: Timing,
        *,
        instrumented: bool = False,
        agent_extra: dict[str, Any] | None = None,
    ) -> Tunnel:
        return Tunnel(self, timing, instrumented=instrumented, agent_extra=agent_extra)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.private.run(self.origin.stop(), 10)
        self.public.close()
        self.private.close()


class Tunnel:
    """One test's hub and agent (started, tunnel up) and the caller that uses them."""

    def __init__(
        self,
        lab: TunnelLab,
        timing: Timing,
        *,
        instrumented: bool,
        agent_extra: dict[str, Any] | None,
    ) -> None:
        self.lab = lab
        self.timing = timing
        self.gateway = "gw-" + secrets.token_hex(3)
        self.workdir = lab.workdir / self.gateway
        self.workdir.mkdir()
        token = "tok-" + secrets.token_urlsafe(18)
        topology = lab.topology
        self.hub = LabHub(
            topology, self.workdir, {self.gateway: token}, lab.pki, timing,
            instrumented=instrumented,
        )  # fmt: skip
        settings: dict[str, Any] = {
            "gateway_name": self.gateway,
            "hub_url": f"wss://{topology.address(Host.PUBLIC)}:{HUB_PORT}/v1/tunnel",
            "token": token,
            "ca_bundle": str(lab.pki.ca_cert),
            "allowlist": [f"{lab.maas_address}:*"],
            "log_level": "INFO",
            **timing.agent_settings(),
            **(agent_extra or {}),
        }
        self.agent = LabAgent(topology, self.workdir, settings, instrumented=instrumented)
        self.caller = Caller(topology.address(Host.PUBLIC), self.gateway, lab.pki.ca_cert)
        self.hub.start()
        self.agent.start()
        self.agent.wait_log(TUNNEL_UP, timeout=15)

    @property
    def config(self) -> AgentConfig:
        return self.agent.config

    @property
    def bound(self) -> float:
        return recovery_bound(self.config, self.timing)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return self.lab.public.run(coro, timeout)

    def relayed_ok(self, timeout: float = 3.0) -> bool:
        answer = self.run(
            self.caller.fetch(self.lab.maas_address, ORIGIN_PORT, "/small", timeout=timeout),
            timeout + 1,
        )
        return answer.status == 200 and answer.body == b"ok"

    def recover(self, since: float, *, bound: float | None = None) -> tuple[float, int, list[str]]:
        """Probe through the tunnel until a request succeeds: (seconds since ``since``,
        attempts, errors of the failed attempts). Fails after ``bound`` (+ probe slack)."""
        limit = self.bound if bound is None else bound
        deadline = since + limit + 1.0
        probe = self.caller.first_success(self.lab.maas_address, ORIGIN_PORT, deadline=deadline)
        at, attempts, errors = self.run(probe, timeout=limit + 5)
        return at - since, attempts, errors

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.run(self.caller.close(), 5)
        self.agent.stop()
        self.hub.stop()
