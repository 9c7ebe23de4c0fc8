"""The hub on its own: agents dialling in as in-process sessions over real websockets."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from protocol.aio.dial import dial
from protocol.aio.session import TunnelSession
from protocol.aio.stream import TunnelStream
from protocol.codes import ErrorCode
from protocol.connection import ConnectionConfig, Role
from protocol.simulator.hub import Hub, HubConfig, static_tokens
from tests.support.net import fetch_via_connect
from tests.support.origin import Origin

TOKEN = "tok-" + secrets.token_hex(8)


@pytest.fixture
async def hub() -> AsyncIterator[tuple[Hub, str]]:
    hub = Hub(static_tokens({TOKEN: "gw"}), HubConfig(open_timeout=0.5))
    app = web.Application()
    app.add_routes(hub.routes())
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[-1][1]
    await hub.start_connect_listener("127.0.0.1", 0)
    yield hub, f"ws://127.0.0.1:{port}/v1/tunnel"
    if hub.connect_server:
        hub.connect_server.close()
    await runner.cleanup()


async def agent_session(url: str, instance: str, handler=None) -> TunnelSession:  # noqa: ANN001
    ws = await dial(url, token=TOKEN)
    session = TunnelSession(
        ws,
        ConnectionConfig(Role.CLIENT, info={"instance": instance}),
        stream_handler=handler,
    )
    await session.start()
    return session


async def wait_for(predicate, timeout: float = 5.0) -> None:  # noqa: ANN001
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_a_new_session_from_the_same_instance_retires_the_old_one(
    hub: tuple[Hub, str],
) -> None:
    server, url = hub
    old = await agent_session(url, "one")
    await wait_for(lambda: len(server.sessions.get("gw", [])) == 1)
    other = await agent_session(url, "two")  # another node of the gateway: kept
    await wait_for(lambda: len(server.sessions.get("gw", [])) == 2)
    new = await agent_session(url, "one")
    await wait_for(lambda: len(server.sessions.get("gw", [])) == 2)
    reason = await asyncio.wait_for(old.wait_closed(), 5)
    assert reason.code is ErrorCode.PEER_UNRESPONSIVE
    assert {s.peer_info["instance"] for s in server.sessions["gw"]} == {"one", "two"}
    assert not new.closed and not other.closed
    for session in (new, other):
        await session.close()


async def test_a_session_that_never_accepts_is_passed_over(hub: tuple[Hub, str]) -> None:
    server, url = hub
    origin = Origin()
    await origin.start()

    async def silent(stream: TunnelStream) -> None:
        await asyncio.sleep(3600)  # a wedged path: never ACCEPTs, never resets

    async def relay(stream: TunnelStream) -> None:
        from protocol.aio.splice import SocketRelay
        from protocol.aio.splice import relay as join

        loop = asyncio.get_running_loop()
        transport, joined = await loop.create_connection(
            lambda: SocketRelay(stream), "127.0.0.1", origin.port
        )
        stream.accept()
        await join(stream, transport, joined)

    wedged = await agent_session(url, "a", silent)
    healthy = await agent_session(url, "b", relay)
    await wait_for(lambda: len(server.sessions.get("gw", [])) == 2)
    assert server.connect_server is not None
    connect = server.connect_server.sockets[0].getsockname()[:2]
    for _ in range(4):  # round-robin would send every other stream to the wedged session
        result = await asyncio.wait_for(
            fetch_via_connect(connect, "gw", "127.0.0.1", origin.port, "GET", "/small"), 5
        )
        assert result.body == b"ok"
    for session in (wedged, healthy):
        await session.close()
    await origin.stop()
