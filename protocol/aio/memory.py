"""An in-memory message transport pair, for tests and benchmarks of the session layer."""

from __future__ import annotations

import asyncio


class MemoryTransport:
    """One end of a pipe of whole messages; :func:`memory_pipe` makes the pair."""

    def __init__(self) -> None:
        self._inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.peer: MemoryTransport | None = None
        self.closed = False

    async def recv(self) -> bytes:
        message = await self._inbox.get()
        if message is None:
            self._inbox.put_nowait(None)
            raise EOFError("memory transport closed")
        return message

    async def send(self, message: bytes) -> None:
        if self.closed or self.peer is None or self.peer.closed:
            raise EOFError("memory transport closed")
        self.peer._inbox.put_nowait(bytes(message))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if not self.closed:
            self.closed = True
            self._inbox.put_nowait(None)
            if self.peer is not None:
                self.peer._inbox.put_nowait(None)


def memory_pipe() -> tuple[MemoryTransport, MemoryTransport]:
    a, b = MemoryTransport(), MemoryTransport()
    a.peer, b.peer = b, a
    return a, b
