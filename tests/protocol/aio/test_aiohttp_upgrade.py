"""The server side of the websocket channel, taken over from an aiohttp handler: a real
websockets client on loopback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedOK

from protocol.aio.aiohttp_upgrade import accept_websocket, handed_back
from protocol.aio.channel import WebSocketChannel

HOST = "127.0.0.1"


class Echo:
    """A channel receiver that sends every binary message back, and notes the end."""

    def __init__(self, channel: WebSocketChannel) -> None:
        self.channel = channel
        self.texts: list[str] = []
        self.lost = asyncio.Event()

    def message_received(self, message: bytes | str) -> None:
        if isinstance(message, str):
            self.texts.append(message)
        else:
            self.channel.write(message + b"-echo")

    def channel_lost(self, exc: Exception | None) -> None:
        self.lost.set()

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass


@pytest.fixture
async def server() -> AsyncIterator[tuple[int, list[Echo]]]:
    ends: list[Echo] = []

    async def tunnel(request: web.Request) -> web.StreamResponse:
        channel = accept_websocket(request, max_size=1 << 20)
        if isinstance(channel, web.Response):
            return channel
        echo = Echo(channel)
        ends.append(echo)
        channel.attach(echo)
        return await handed_back(channel)

    async def other(request: web.Request) -> web.Response:
        return web.Response(text="still serving")

    app = web.Application()
    app.router.add_get("/v1/tunnel", tunnel)
    app.router.add_get("/other", other)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    yield runner.addresses[-1][1], ends
    await runner.cleanup()


async def test_messages_both_ways_pings_answered_close_completes(
    server: tuple[int, list[Echo]], caplog: pytest.LogCaptureFixture
) -> None:
    port, ends = server
    caplog.set_level(logging.DEBUG, logger="aiohttp")
    async with connect(f"ws://{HOST}:{port}/v1/tunnel", compression=None) as ws:
        await ws.send(b"hello")
        assert await ws.recv() == b"hello-echo"
        await ws.send([b"frag", b"mented"])  # one message in two frames
        assert await ws.recv() == b"fragmented-echo"
        await ws.send("text")
        await asyncio.wait_for(await ws.ping(), 5)  # the channel answered the ping
        big = bytes(range(256)) * 1024  # 256 KiB: several TCP reads
        await ws.send(big)
        assert await ws.recv() == big + b"-echo"
        await ws.close(4000, "bye")
    assert ws.close_code == 4000  # the server echoed the close frame: a clean close
    [end] = ends
    await asyncio.wait_for(end.lost.wait(), 5)
    assert end.texts == ["text"]
    with pytest.raises(ConnectionError):
        end.channel.write(b"too late")
    # the handler returned; aiohttp neither complained nor stopped serving
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://{HOST}:{port}/other") as response:
            assert response.status == 200 and await response.text() == "still serving"


async def test_the_server_closing_is_a_clean_close_for_the_client(
    server: tuple[int, list[Echo]],
) -> None:
    port, ends = server
    async with connect(f"ws://{HOST}:{port}/v1/tunnel", compression=None) as ws:
        await ws.send(b"x")
        assert await ws.recv() == b"x-echo"
        await ends[0].channel.close(1001, "going away")
        with pytest.raises(ConnectionClosedOK):
            await ws.recv()
    assert ws.close_code == 1001 and ws.close_reason == "going away"


@pytest.mark.parametrize(
    ("headers", "status", "says"),
    [
        ({}, 426, "missing connection header"),
        (
            {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "8",
             "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="},
            400,
            "sec-websocket-version",
        ),
        (
            {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"},
            400,
            "sec-websocket-key",
        ),
    ],
)  # fmt: skip
async def test_a_request_that_is_not_an_upgrade_gets_the_reason(
    server: tuple[int, list[Echo]], headers: dict[str, str], status: int, says: str
) -> None:
    port, ends = server
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://{HOST}:{port}/v1/tunnel", headers=headers) as response:
            assert response.status == status
            assert says in (await response.text()).lower()
    assert ends == []  # nothing was taken over
