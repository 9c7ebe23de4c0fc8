"""In-memory message transports, for tests and benchmarks of the session layer.

:func:`memory_pipe` joins two pull ends (async ``recv``/``send``); :func:`memory_channel_pipe`
joins a push end (a :class:`~protocol.aio.session.Channel`, like the websocket channel of the
agent and of the hub) to a pull end, so that the session's tests cover both kinds.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from protocol.aio.channel import ChannelReceiver


class MemoryTransport:
    """The pull end of a pipe of whole messages."""

    def __init__(self) -> None:
        self._inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.peer: MemoryTransport | MemoryChannel | None = None
        self.closed = False

    def _put(self, message: bytes | None) -> None:
        self._inbox.put_nowait(message)

    async def recv(self) -> bytes:
        message = await self._inbox.get()
        if message is None:
            self._inbox.put_nowait(None)
            raise EOFError("memory transport closed")
        return message

    async def send(self, message: bytes) -> None:
        if self.closed or self.peer is None or self.peer.closed:
            raise EOFError("memory transport closed")
        self.peer._put(bytes(message))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if not self.closed:
            self.closed = True
            self._inbox.put_nowait(None)
            if self.peer is not None:
                self.peer._put(None)


class MemoryChannel:
    """The push end: delivers each message to its receiver in a callback of its own.

    :meth:`stall` and :meth:`unstall` play a socket whose buffer filled and drained again.
    """

    def __init__(self) -> None:
        self.peer: MemoryTransport | None = None
        self.closed = False
        self._receiver: ChannelReceiver | None = None
        self._early: list[bytes | None] = []
        self._loop = asyncio.get_running_loop()

    def attach(self, receiver: ChannelReceiver) -> None:
        self._receiver = receiver
        early, self._early = self._early, []
        for message in early:
            self._put(message)

    def _put(self, message: bytes | None) -> None:
        receiver = self._receiver
        if receiver is None:
            self._early.append(message)
        elif message is None:
            self.closed = True
            self._loop.call_soon(receiver.channel_lost, None)
        else:
            self._loop.call_soon(receiver.message_received, message)

    def write(self, message: bytes) -> None:
        if self.closed or self.peer is None or self.peer.closed:
            raise ConnectionError("memory channel closed")
        self.peer._put(bytes(message))

    def stall(self) -> None:
        if self._receiver is not None:
            self._receiver.pause_writing()

    def unstall(self) -> None:
        if self._receiver is not None:
            self._receiver.resume_writing()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if not self.closed:
            self.closed = True
            if self._receiver is not None:
                self._loop.call_soon(self._receiver.channel_lost, None)
            if self.peer is not None:
                self.peer._put(None)


def memory_pipe() -> tuple[MemoryTransport, MemoryTransport]:
    a, b = MemoryTransport(), MemoryTransport()
    a.peer, b.peer = b, a
    return a, b


def memory_channel_pipe() -> tuple[MemoryChannel, MemoryTransport]:
    """(push end, pull end): must be called with the event loop running."""
    a, b = MemoryChannel(), MemoryTransport()
    a.peer, b.peer = b, a
    return a, b
