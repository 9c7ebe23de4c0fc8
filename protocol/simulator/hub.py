"""The Palette-side hub: agents dial in; callers reach through them.

Agents connect to ``GET /v1/tunnel`` (websocket, ``Authorization: Bearer <token>``). The hub
keeps every live session per gateway name. Callers, on the same server:

* ``GET  /v1/gateways`` lists gateways and their sessions;
* ``POST /v1/gateways/{name}/rpc/{method}`` sends an RPC (JSON body = params; optional
  ``Idempotency-Key`` header and ``?deadline=SECONDS``); the answer is the JSON result, or
  with ``Accept: application/x-ndjson`` every progress event and then the result, one per line;
* a separate HTTP CONNECT listener opens a byte stream through a gateway to ``host:port``:
  ``CONNECT host:port HTTP/1.1`` with the gateway named by a ``Pcg-Gateway`` header or as the
  proxy user name (``http://GATEWAY@127.0.0.1:PORT`` as the proxy URL). With only one gateway
  connected the name may be left out.

New streams and RPCs are spread round-robin over a gateway's usable sessions.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web

from protocol.aio.aiohttp_upgrade import accept_websocket, handed_back
from protocol.aio.procstats import process_stats
from protocol.aio.rpc import RpcHandler, RpcServer, call
from protocol.aio.session import TunnelSession
from protocol.aio.splice import SOCKET_BUFFER, SocketRelay, check_socket_buffer, relay
from protocol.aio.stream import TunnelStream
from protocol.codes import ErrorCode
from protocol.connection import ConnectionConfig, Role, check_growth_budget, check_seconds
from protocol.exceptions import (
    ConnectionClosed,
    LocalProtocolError,
    RpcError,
    StreamResetError,
)
from protocol.frames import Settings
from protocol.state import SessionState

log = logging.getLogger("pcg.hub")

#: the websocket upgrade request -> the session's identity (a gateway name), or the HTTP
#: response that refuses it (401 with a body saying why)
Authenticator = Callable[[web.Request], Awaitable[str | web.Response]]
TUNNEL_PATH = "/v1/tunnel"


class GatewayUnavailable(LookupError):
    """No usable session for that gateway."""


@dataclass(frozen=True, slots=True)
class HubConfig:
    settings: Settings = Settings()
    ping_interval: float = 10.0
    ping_timeout: float = 10.0
    write_timeout: float = 20.0
    #: how long a caller's stream may wait for the agent's ACCEPT before another session is tried
    open_timeout: float = 10.0
    #: receive-window growth shared by one session's streams (PROTOCOL.md §6.5); 0: off
    window_growth_budget: int = 256 * 1024 * 1024
    #: kernel buffer each way of a relayed caller socket; 0: the kernel autotunes (splice.py)
    relay_socket_buffer: int = SOCKET_BUFFER
    #: debug endpoints (raw bytes onto a session, GOAWAY) for tests; off unless asked
    debug_endpoints: bool = False

    def __post_init__(self) -> None:
        check_seconds(self, "ping_interval", "ping_timeout", "write_timeout", "open_timeout")
        check_growth_budget(self.window_growth_budget)
        check_socket_buffer(self.relay_socket_buffer, "relay_socket_buffer")


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header.startswith("Bearer ") else ""


def static_tokens(tokens: Mapping[str, str]) -> Authenticator:
    """An authenticator from a fixed token -> gateway name map."""
    table = dict(tokens)

    async def authenticate(request: web.Request) -> str | web.Response:
        gateway = table.get(bearer_token(request))
        if gateway is None:
            return web.Response(status=401, text="missing or invalid bearer token\n")
        return gateway

    return authenticate


class Hub:
    def __init__(
        self,
        authenticate: Authenticator,
        config: HubConfig | None = None,
        *,
        rpc_handler: RpcHandler | None = None,
    ) -> None:
        self.authenticate = authenticate
        self.config = config or HubConfig()
        self.rpc_handler = rpc_handler
        self.sessions: dict[str, list[TunnelSession]] = {}
        self.session_listeners: list[Callable[[str, TunnelSession, bool], None]] = []
        self._cursor = itertools.count()
        self.connect_server: asyncio.Server | None = None

    # ------------------------------------------------------------------ agents

    def routes(self) -> list[web.RouteDef]:
        routes = [
            web.get(TUNNEL_PATH, self._tunnel),
            web.get("/v1/gateways", self._list_gateways),
            web.get("/v1/hub/stats", self._stats),
            web.post("/v1/gateways/{name}/rpc/{method}", self._rpc),
        ]
        if self.config.debug_endpoints:
            routes += [
                web.post("/v1/gateways/{name}/debug/raw", self._debug_raw),
                web.post("/v1/gateways/{name}/debug/goaway", self._debug_goaway),
            ]
        return routes

    async def _tunnel(self, request: web.Request) -> web.StreamResponse:
        identity = await self.authenticate(request)
        if isinstance(identity, web.Response):
            log.warning("tunnel refused peer=%s status=%d", request.remote, identity.status)
            return identity
        gateway = identity
        settings = self.config.settings
        channel = accept_websocket(request, max_size=settings.max_message_size + 1024)
        if isinstance(channel, web.Response):
            log.warning("tunnel refused peer=%s status=%d (not a websocket upgrade)",
                        request.remote, channel.status)  # fmt: skip
            return channel
        session = TunnelSession(
            channel,
            ConnectionConfig(
                Role.SERVER,
                settings,
                info={"hub": "pcg-sim"},
                ping_interval=self.config.ping_interval,
                ping_timeout=self.config.ping_timeout,
                window_growth_budget=self.config.window_growth_budget,
            ),
            rpc_server=RpcServer(self.rpc_handler) if self.rpc_handler else None,
            write_timeout=self.config.write_timeout,
            label=gateway,
        )
        try:
            await session.start()
        except ConnectionClosed as exc:
            log.warning("tunnel handshake failed gateway=%s reason=%s", gateway, exc)
        else:
            self._add(gateway, session)
            try:
                reason = await session.wait_closed()
                log.info("tunnel session ended gateway=%s reason=%s", gateway, reason)
            finally:
                self._remove(gateway, session)
        finally:
            await session.close()
        return await handed_back(channel)

    def _add(self, gateway: str, session: TunnelSession) -> None:
        # One agent process keeps one session: a new session from the same instance means its
        # old ones are dead, even if this side's keepalive has not noticed yet (a NAT that
        # forgot the flow drops packets silently). Retire them now, so no stream goes there.
        instance = session.peer_info.get("instance")
        if instance:
            for old in list(self.sessions.get(gateway, [])):
                draining = old.conn.state is SessionState.DRAINING  # goes away by itself
                if old.peer_info.get("instance") == instance and not draining:
                    log.info("retiring stale session gateway=%s instance=%s", gateway, instance)
                    self._remove(gateway, old)
                    old.abort(ErrorCode.PEER_UNRESPONSIVE, "superseded by a new session")
        self.sessions.setdefault(gateway, []).append(session)
        log.info(
            "tunnel session up gateway=%s sessions=%d agent=%s",
            gateway,
            len(self.sessions[gateway]),
            session.peer_info.get("agent", "?"),
        )
        for listener in self.session_listeners:
            listener(gateway, session, True)

    def _remove(self, gateway: str, session: TunnelSession) -> None:
        live = self.sessions.get(gateway, [])
        if session in live:
            live.remove(session)
            for listener in self.session_listeners:
                listener(gateway, session, False)
        if not live:
            self.sessions.pop(gateway, None)

    # ------------------------------------------------------------------ callers

    def pick(self, gateway: str | None) -> TunnelSession:
        """A usable session of ``gateway`` (round-robin); any gateway if only one is up."""
        if gateway is None:
            if len(self.sessions) != 1:
                names = ", ".join(sorted(self.sessions)) or "none"
                raise GatewayUnavailable(f"name a gateway; connected: {names}")
            gateway = next(iter(self.sessions))
        usable = [s for s in self.sessions.get(gateway, []) if s.is_usable]
        if not usable:
            raise GatewayUnavailable(f"gateway {gateway!r} has no live tunnel session")
        return usable[next(self._cursor) % len(usable)]

    def open_stream(self, gateway: str | None, host: str, port: int) -> TunnelStream:
        return self.pick(gateway).open_stream({"kind": "tcp", "host": host, "port": port})

    async def call(
        self,
        gateway: str,
        method: str,
        params: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        return await call(self.pick(gateway), method, params, **kwargs)

    async def _list_gateways(self, request: web.Request) -> web.Response:
        body = {
            name: [
                {
                    "agent": s.peer_info.get("agent"),
                    "rtt_ms": None if s.rtt is None else round(s.rtt * 1000, 3),
                    "open_streams": s.stats().open_streams,
                    "usable": s.is_usable,
                }
                for s in sessions
            ]
            for name, sessions in self.sessions.items()
        }
        return web.json_response(body)

    async def _stats(self, request: web.Request) -> web.Response:
        sessions = [s for group in self.sessions.values() for s in group]
        return web.json_response(
            {
                **process_stats(),
                "sessions": len(sessions),
                "open_streams": sum(s.stats().open_streams for s in sessions),
            }
        )

    async def _rpc(self, request: web.Request) -> web.StreamResponse:
        gateway, method = request.match_info["name"], request.match_info["method"]
        try:
            params = await request.json() if request.can_read_body else {}
        except json.JSONDecodeError as exc:
            return _error(400, "invalid_argument", f"body is not JSON: {exc}")
        deadline = request.query.get("deadline")
        kwargs: dict[str, Any] = {
            "idempotency_key": request.headers.get("Idempotency-Key"),
            "deadline": float(deadline) if deadline else None,
        }
        try:
            session = self.pick(gateway)
        except GatewayUnavailable as exc:
            return _error(503, "unavailable", str(exc))
        if "application/x-ndjson" not in request.headers.get("Accept", ""):
            try:
                result = await call(session, method, params, **kwargs)
            except RpcError as exc:
                return _error(_status_for(exc.code), exc.code, exc.message, exc.details)
            return web.json_response({"result": result})
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)

        async def progress(event: Mapping[str, Any]) -> None:
            await response.write(json.dumps({"progress": dict(event)}).encode() + b"\n")

        try:
            result = await call(session, method, params, on_progress=progress, **kwargs)
            line: dict[str, Any] = {"result": result}
        except RpcError as exc:
            line = {"error": {"code": exc.code, "message": exc.message, "details": exc.details}}
        await response.write(json.dumps(line).encode() + b"\n")
        await response.write_eof()
        return response

    async def _debug_raw(self, request: web.Request) -> web.Response:
        session = self.pick(request.match_info["name"])
        await session.send_raw(await request.read())
        return web.json_response({"sent": True})

    async def _debug_goaway(self, request: web.Request) -> web.Response:
        session = self.pick(request.match_info["name"])
        retry_ms = int(request.query.get("retry_after_ms", "0"))
        await session.go_away(ErrorCode.SHUTTING_DOWN, "hub asked", retry_ms)
        return web.json_response({"sent": True})

    # ------------------------------------------------------------------ CONNECT listener

    async def start_connect_listener(self, host: str, port: int) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self.connect_server = await loop.create_server(
            lambda: ConnectRequest(self), host, port, backlog=1024
        )
        address = self.connect_server.sockets[0].getsockname()
        return address[0], address[1]

    async def _open_accepted(self, gateway: str | None, host: str, port: int) -> TunnelStream:
        """A stream the agent accepted; a session that does not answer within the open timeout
        is passed over for the next one, each live session at most once."""
        attempt = 0
        while True:
            session = self.pick(gateway)
            stream = session.open_stream({"kind": "tcp", "host": host, "port": port})
            try:
                async with asyncio.timeout(self.config.open_timeout):
                    await stream.wait_accepted()
                return stream
            except TimeoutError:
                stream.reset(ErrorCode.CANCEL, "no ACCEPT within the open timeout")
                attempt += 1
                log.warning(
                    "stream not accepted gateway=%s destination=%s:%d attempt=%d",
                    session.label,
                    host,
                    port,
                    attempt,
                )
                if attempt >= len(self.sessions.get(session.label, [])):
                    raise GatewayUnavailable(
                        f"gateway {session.label!r} accepted no stream within "
                        f"{self.config.open_timeout}s on any of its sessions"
                    ) from None

    async def connect(self, request: ConnectRequest, head: bytes) -> None:
        """Answer one CONNECT: open the stream, then hand the socket to a relay."""
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split()
        if len(parts) != 3 or parts[0] != "CONNECT":
            request.reply(405, "only CONNECT host:port is served here")
            return
        host, _, port_text = parts[1].rpartition(":")
        host = host.strip("[]")
        if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            request.reply(400, f"bad CONNECT target {parts[1]!r}: use host:port")
            return
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        try:
            stream = await self._open_accepted(_gateway_of(headers), host, int(port_text))
        except GatewayUnavailable as exc:
            request.reply(503, str(exc))
            return
        except StreamResetError as exc:
            status = 403 if exc.code is ErrorCode.DESTINATION_NOT_ALLOWED else 502
            request.reply(status, f"{exc.code.name}: {exc.reason}")
            return
        except (ConnectionClosed, LocalProtocolError) as exc:
            # a closed session, or the agent's limit of concurrent streams: try again later
            request.reply(503, str(exc))
            return
        joined = request.established(stream)
        if joined is not None and joined.transport is not None:
            await relay(stream, joined.transport, joined)


class ConnectRequest(asyncio.Protocol):
    """One caller's connection to the CONNECT listener: reads the request head, asks the hub
    for a stream, then gives its transport to a :class:`SocketRelay`."""

    MAX_HEAD = 16 * 1024

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.transport: asyncio.Transport | None = None
        self.received = bytearray()
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike
        self.transport = cast(asyncio.Transport, transport)
        self.timer = asyncio.get_running_loop().call_later(10, self.transport.abort)

    def data_received(self, data: bytes) -> None:
        self.received += data
        end = self.received.find(b"\r\n\r\n")
        if end < 0:
            if len(self.received) > self.MAX_HEAD:
                self.reply(400, "request head too long")
            return
        assert self.transport is not None
        self.transport.pause_reading()
        if self.timer is not None:
            self.timer.cancel()
        head = bytes(self.received[:end])
        del self.received[: end + 4]
        self.task = asyncio.get_running_loop().create_task(self.hub.connect(self, head))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def reply(self, status: int, message: str) -> None:
        reason = {400: "Bad Request", 403: "Forbidden", 405: "Method Not Allowed"}.get(
            status, "Service Unavailable" if status == 503 else "Bad Gateway"
        )
        body = (message + "\n").encode()
        assert self.transport is not None
        self.transport.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n".encode()
            + body
        )
        self.transport.close()

    def established(self, stream: TunnelStream) -> SocketRelay | None:
        transport = self.transport
        if transport is None or transport.is_closing():
            stream.reset(ErrorCode.CANCEL, "the caller went away")
            return None
        transport.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        joined = SocketRelay(stream, self.hub.config.relay_socket_buffer)
        transport.set_protocol(joined)
        joined.connection_made(transport)
        if self.received:  # bytes the caller sent right behind its CONNECT head
            joined.data_received(bytes(self.received))
            self.received.clear()
        transport.resume_reading()
        return joined


def _gateway_of(headers: Mapping[str, str]) -> str | None:
    if headers.get("pcg-gateway"):
        return headers["pcg-gateway"]
    auth = headers.get("proxy-authorization", "")
    if auth.lower().startswith("basic "):
        try:
            user = base64.b64decode(auth[6:]).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user or None
    return None


_STATUS = {
    "invalid_argument": 400,
    "not_found": 404,
    "failed_precondition": 409,
    "resource_exhausted": 409,
    "unavailable": 503,
    "deadline_exceeded": 504,
    "cancelled": 499,
    "unauthenticated": 401,
}


def _status_for(code: str) -> int:
    return _STATUS.get(code, 500)


def _error(
    status: int, code: str, message: str, details: Mapping[str, Any] | None = None
) -> web.Response:
    body = {"error": {"code": code, "message": message, "details": dict(details or {})}}
    return web.json_response(body, status=status)


# ---------------------------------------------------------------------------------------------
# pcg-sim hub


def register(subparsers: Any) -> None:
    from protocol.simulator.cli import add_server_options

    parser = subparsers.add_parser(
        "hub",
        help="the Palette-side tunnel hub",
        description=(
            "Serve the tunnel endpoint agents dial (wss://HOST:PORT/v1/tunnel), an HTTP API to "
            "send RPCs through a gateway, and an HTTP CONNECT listener to open byte streams "
            "through it. Prints one JSON line with the addresses when ready."
        ),
    )
    add_server_options(parser, "--insecure-ws", "plain ws:// instead of wss://")
    parser.add_argument(
        "--token",
        action="append",
        default=[],
        metavar="GATEWAY=TOKEN",
        help="accept TOKEN from the agent of GATEWAY (repeatable)",
    )
    parser.add_argument(
        "--tokens-file", help="YAML map of gateway name to token (keeps tokens off ps)"
    )
    parser.add_argument("--connect-port", type=int, default=0, help="CONNECT listener port")
    parser.add_argument(
        "--max-streams", type=int, default=4096, help="streams an agent may open per session"
    )
    parser.add_argument("--max-pending-opens", type=int, default=1024)
    parser.add_argument(
        "--window-growth-budget",
        type=int,
        default=256 * 1024 * 1024,
        help="bytes of window growth per session (0: no window tuning)",
    )
    parser.add_argument(
        "--relay-socket-buffer",
        type=int,
        default=SOCKET_BUFFER,
        help="kernel buffer each way of a relayed caller socket (0: the kernel autotunes)",
    )
    parser.add_argument("--debug-endpoints", action="store_true", help="enable test endpoints")
    parser.add_argument("--no-uvloop", action="store_true")
    parser.set_defaults(func=_main)


def _tokens(args: Any) -> dict[str, str]:
    import yaml

    by_gateway: dict[str, str] = {}
    if args.tokens_file:
        with open(args.tokens_file) as f:
            loaded = yaml.safe_load(f) or {}
        if not isinstance(loaded, dict):
            raise SystemExit(f"{args.tokens_file}: expected a map of gateway name to token")
        by_gateway.update({str(k): str(v) for k, v in loaded.items()})
    for item in args.token:
        gateway, sep, token = item.partition("=")
        if not sep or not gateway or not token:
            raise SystemExit("--token takes GATEWAY=TOKEN (the token itself is not shown here)")
        by_gateway[gateway] = token
    return {token: gateway for gateway, token in by_gateway.items()}


def _main(args: Any) -> int:
    import ssl

    from protocol.aio.loop import run
    from protocol.simulator.cli import option_error, tls_files

    tls: ssl.SSLContext | None = None
    files = tls_files(
        args.host, args.cert, args.key, insecure=args.insecure_ws, insecure_flag="--insecure-ws"
    )
    if files is not None:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(*files)
    tokens = _tokens(args)
    if not tokens:
        raise SystemExit("no agent could connect: give --token GATEWAY=TOKEN or --tokens-file")
    try:
        settings = Settings(max_streams=args.max_streams, max_pending_opens=args.max_pending_opens)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    try:
        config = HubConfig(
            settings=settings,
            window_growth_budget=args.window_growth_budget,
            relay_socket_buffer=args.relay_socket_buffer,
            ping_interval=args.ping_interval,
            ping_timeout=args.ping_timeout,
            debug_endpoints=args.debug_endpoints,
        )
    except ValueError as exc:
        raise option_error("hub", exc) from None
    hub = Hub(static_tokens(tokens), config)
    return run(
        _serve(hub, args.host, args.port, tls, args.connect_port), use_uvloop=not args.no_uvloop
    )


async def _serve(hub: Hub, host: str, port: int, tls: Any, connect_port: int) -> int:
    import signal

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = web.Application()
    app.add_routes(hub.routes())
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=tls)
    await site.start()
    connect_host, bound_connect = await hub.start_connect_listener(host, connect_port)
    scheme = "wss" if tls else "ws"
    print(
        json.dumps(
            {
                "event": "listening",
                "tunnel_url": f"{scheme}://{host}:{port}{TUNNEL_PATH}",
                "api_url": f"{'https' if tls else 'http'}://{host}:{port}/v1",
                "connect": f"{connect_host}:{bound_connect}",
            }
        ),
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for sessions in list(hub.sessions.values()):
        for session in list(sessions):
            await session.close(ErrorCode.SHUTTING_DOWN, "hub stopping")
    if hub.connect_server is not None:
        hub.connect_server.close()
    await runner.cleanup()
    return 0
