"""A websocket channel's receiver for tests: it keeps what the channel hands it."""

from __future__ import annotations

import asyncio


class Collector:
    """A channel receiver that keeps what it is given."""

    def __init__(self) -> None:
        self.messages: list[bytes | str] = []
        self.lost = asyncio.Event()
        self.paused = 0
        self.arrived = asyncio.Event()

    def message_received(self, message: bytes | str) -> None:
        self.messages.append(message)
        self.arrived.set()

    def channel_lost(self, exc: Exception | None) -> None:
        self.lost.set()

    def pause_writing(self) -> None:
        self.paused += 1

    def resume_writing(self) -> None:
        self.paused -= 1

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.messages) < count:
                self.arrived.clear()
                await self.arrived.wait()
