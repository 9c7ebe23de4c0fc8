"""Adapts an aiohttp server-side websocket to the session's Transport (recv/send/close)."""

from __future__ import annotations

from aiohttp import WSMsgType, web


class AiohttpTransport:
    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws

    async def recv(self) -> str | bytes:
        message = await self.ws.receive()
        if message.type is WSMsgType.BINARY:
            data: bytes = message.data
            return data
        if message.type is WSMsgType.TEXT:
            text: str = message.data
            return text
        raise ConnectionError(f"websocket ended ({message.type.name})")

    async def send(self, message: bytes) -> None:
        await self.ws.send_bytes(message)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.ws.close(code=code, message=reason.encode())
