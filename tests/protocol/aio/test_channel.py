"""The agent's websocket channel and dial: real sockets on loopback, a real websockets server
and an in-test HTTP CONNECT proxy (the frames themselves: test_wsframes.py)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from aiohttp import web
from websockets.asyncio.server import ServerConnection, serve

from protocol.aio.channel import WebSocketChannel
from protocol.aio.dial import dial
from protocol.aio.proxy import ProxySettings
from protocol.exceptions import DialError, HubRejected, ProxyError
from tests.support.channel import Collector
from tests.support.net import splice

HOST = "127.0.0.1"


async def echo_server(ws: ServerConnection) -> None:
    await ws.send([b"frag", b"mented"])  # one message in two frames
    await ws.send("text")
    pong = await ws.ping()
    await asyncio.wait_for(pong, 5)  # the channel answered the ping
    received = await ws.recv()
    assert isinstance(received, bytes)
    await ws.send(received + b"-echo")
    await ws.close(4000, "bye")


@pytest.fixture
async def ws_server() -> AsyncIterator[str]:
    async with serve(echo_server, HOST, 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://{HOST}:{port}/v1/tunnel"


async def test_messages_both_ways_pings_answered_close_reported(ws_server: str) -> None:
    channel = await dial(ws_server, token="t-123")
    receiver = Collector()
    channel.attach(receiver)
    channel.write(b"hello")
    await receiver.wait_for(3)
    assert receiver.messages == [b"fragmented", "text", b"hello-echo"]
    await asyncio.wait_for(receiver.lost.wait(), 5)
    with pytest.raises(ConnectionError):
        channel.write(b"too late")


async def test_messages_before_attach_wait_for_the_receiver(ws_server: str) -> None:
    channel = await dial(ws_server, token="t-123")
    await asyncio.sleep(0.2)  # the server's first messages arrive with nobody attached
    receiver = Collector()
    channel.attach(receiver)
    assert receiver.messages[:2] == [b"fragmented", "text"]
    await channel.close()


async def aiohttp_server(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_get("/v1/tunnel", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    return runner, runner.addresses[-1][1]


async def test_a_refusal_names_the_status_and_the_hubs_error_code() -> None:
    async def refuse(request: web.Request) -> web.Response:
        body = {"code": "pairing_code_used", "message": "this pairing code was used"}
        return web.json_response(body, status=409)

    runner, port = await aiohttp_server(refuse)
    try:
        with pytest.raises(HubRejected) as info:
            await dial(f"ws://{HOST}:{port}/v1/tunnel", authorization="Pairing sekrit-code-1")
        assert info.value.status == 409 and info.value.code == "pairing_code_used"
        assert "HTTP 409" in str(info.value) and "this pairing code was used" in str(info.value)
        assert "sekrit-code-1" not in str(info.value)
    finally:
        await runner.cleanup()


async def test_an_http_answer_that_is_not_an_upgrade_is_named() -> None:
    async def plain(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    runner, port = await aiohttp_server(plain)
    try:
        with pytest.raises(DialError, match=r"answered HTTP 200 to the websocket"):
            await dial(f"ws://{HOST}:{port}/v1/tunnel", token="t")
    finally:
        await runner.cleanup()


async def test_nothing_listening_and_a_silent_hub_are_dial_errors() -> None:
    with socket_bound() as port, pytest.raises(DialError, match="cannot reach the hub"):
        await dial(f"ws://{HOST}:{port}/v1/tunnel", token="t")

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # takes the request, never answers

    server = await asyncio.start_server(silent, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(DialError, match="cannot reach the hub"):
            await dial(f"ws://{HOST}:{port}/v1/tunnel", token="t", open_timeout=0.3)
        assert loop.time() - started < 2
    finally:
        server.close()


@contextlib.contextmanager
def socket_bound() -> Iterator[int]:
    """A port that is bound but not listening: connecting to it is refused."""
    import socket

    sock = socket.socket()
    sock.bind((HOST, 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


class ConnectProxy:
    """An HTTP CONNECT proxy in a few lines: answers as told, then splices to the target."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.heads: list[str] = []
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, HOST, 0)
        return f"{HOST}:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        self.heads.append(head)
        writer.write(self.answer)
        if not self.answer.startswith(b"HTTP/1.1 200"):
            await writer.drain()
            writer.close()
            return
        host, _, port = head.split(" ")[1].rpartition(":")
        up_reader, up_writer = await asyncio.open_connection(host, int(port))

        await splice((reader, writer), (up_reader, up_writer))

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_dial_through_a_connect_proxy_with_credentials(ws_server: str) -> None:
    proxy = ConnectProxy(b"HTTP/1.1 200 Connection established\r\n\r\n")
    address = await proxy.start()
    try:
        proxies = ProxySettings(http_proxy=f"http://al:pa%40ss@{address}")
        channel = await dial(ws_server, token="t", proxies=proxies)
        receiver = Collector()
        channel.attach(receiver)
        await receiver.wait_for(2)
        target = ws_server.split("/")[2]
        assert proxy.heads[0].startswith(f"CONNECT {target} HTTP/1.1\r\n")
        expected = base64.b64encode(b"al:pa@ss").decode()
        assert f"Proxy-Authorization: Basic {expected}\r\n" in proxy.heads[0]
        await channel.close()
    finally:
        proxy.stop()


@pytest.mark.parametrize(
    ("answer", "error", "text"),
    [
        (b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 2\r\n\r\nno",
         ProxyError, "answered HTTP 407 to CONNECT"),
        (b"HTTP/1.1 403 Forbidden\r\n\r\n", ProxyError, "allows CONNECT to this host"),
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", DialError, "is not HTTP"),
    ],
)  # fmt: skip
async def test_a_proxy_refusal_says_what_to_check(
    ws_server: str, answer: bytes, error: type[Exception], text: str
) -> None:
    proxy = ConnectProxy(answer)
    address = await proxy.start()
    try:
        proxies = ProxySettings(http_proxy=f"http://al:hunter22@{address}")
        with pytest.raises(error) as info:
            await dial(ws_server, token="t", proxies=proxies)
        assert text in str(info.value) and "hunter22" not in str(info.value)
        assert f"http://al:***@{address}" in str(info.value)
    finally:
        proxy.stop()


async def test_pause_before_attach_reaches_the_receiver(ws_server: str) -> None:
    channel = await dial(ws_server, token="t")
    assert isinstance(channel, WebSocketChannel)
    channel.pause_writing()  # as the transport does when its buffer fills
    receiver = Collector()
    channel.attach(receiver)
    assert receiver.paused == 1
    channel.resume_writing()
    assert receiver.paused == 0
    await channel.close()


def test_the_error_body_reader_takes_only_a_json_object() -> None:
    from protocol.aio.dial import _error_body

    assert _error_body(json.dumps({"code": "c", "message": "m"}).encode()) == ("m", "c")
    assert _error_body(b"[1, 2]") == ("", "")
    assert _error_body(b"<html>") == ("", "")
