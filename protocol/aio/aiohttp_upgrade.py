"""A websocket upgrade answered inside an aiohttp handler, carried on by a WebSocketChannel.

The hub's routes (the API, RPC, the tunnel endpoint) share one aiohttp server. For the tunnel
endpoint the handler hands the connection to a :class:`WebSocketChannel` instead of aiohttp's
``WebSocketResponse``: messages then reach the session in the callback that read them, and the
session writes without awaiting, as on the agent. With ``WebSocketResponse`` every message
crossed a reader task and a writer task (README, "Performance").

The handler must not return while the channel is in use: aiohttp writes the handler's response
onto the transport, which is harmless only once the channel has closed it. So a handler ends
with ``return await handed_back(channel)``.
"""

from __future__ import annotations

from aiohttp import web

from protocol.aio.channel import WebSocketChannel

#: headers of a refusal that aiohttp sets itself, or that do not apply to its response
_NOT_COPIED = frozenset({"content-length", "connection", "date", "server"})


def request_head(request: web.BaseRequest) -> bytes:
    """The request line and headers as received (aiohttp keeps them raw)."""
    version = request.version
    lines = [f"{request.method} {request.raw_path} HTTP/{version.major}.{version.minor}".encode()]
    lines += [name + b": " + value for name, value in request.raw_headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def accept_websocket(
    request: web.BaseRequest, *, max_size: int, close_timeout: float = 2.0
) -> WebSocketChannel | web.Response:
    """Answer ``request``'s websocket upgrade with a channel, or return the refusal to send."""
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("the caller went away before the upgrade")
    result = WebSocketChannel.accept(
        transport, request_head(request), max_size=max_size, close_timeout=close_timeout
    )
    if isinstance(result, WebSocketChannel):
        return result
    headers = {k: v for k, v in result.headers.raw_items() if k.lower() not in _NOT_COPIED}
    return web.Response(
        status=result.status_code, reason=result.reason_phrase, body=result.body, headers=headers
    )


async def handed_back(channel: WebSocketChannel) -> web.StreamResponse:
    """Wait until the channel's connection is gone; returns what the handler returns then
    (aiohttp cannot write it to the closed transport, and does nothing more)."""
    await channel.wait_lost()
    return web.Response(status=101)
