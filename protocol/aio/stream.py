"""One tunnel stream as the application sees it: async read and write with backpressure."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from protocol.codes import ErrorCode
from protocol.exceptions import StreamResetError
from protocol.frames import MetadataValue
from protocol.state import StreamState

if TYPE_CHECKING:
    from protocol.aio.session import TunnelSession


class StreamConsumer(Protocol):
    """Takes a stream's data as it arrives, instead of ``read`` (see :meth:`TunnelStream.attach`).

    It must call :meth:`TunnelStream.consumed` once it has handed bytes on, so that the peer
    gets its credit back; holding that call back is its backpressure.
    """

    def stream_data(self, data: bytes) -> None: ...

    def stream_eof(self) -> None: ...

    def stream_failed(self, error: BaseException) -> None: ...


class TunnelStream:
    """A bidirectional byte stream inside a :class:`~protocol.aio.session.TunnelSession`.

    ``write`` waits while the peer's window is full; ``read`` gives the peer credit back as
    the application consumes bytes, so a reader that stops reading stalls only its stream.
    A relay can instead :meth:`attach` a consumer and write with :meth:`try_write`: no task
    and no buffer between the tunnel and a socket.
    """

    __slots__ = (
        "session",
        "stream_id",
        "metadata",
        "_buffer",
        "_buffered",
        "_eof",
        "_error",
        "_readable",
        "_writable",
        "_accepted",
        "_local_closed",
        "_consumer",
        "_on_writable",
        "on_reset",
    )

    def __init__(
        self,
        session: TunnelSession,
        stream_id: int,
        metadata: Mapping[str, MetadataValue],
        *,
        accepted: bool,
    ) -> None:
        self.session = session
        self.stream_id = stream_id
        self.metadata = metadata
        self._buffer: deque[bytes] | None = None  # made on first data: most streams idle a while
        self._buffered = 0
        self._eof = False
        self._error: BaseException | None = None
        self._readable: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._accepted: asyncio.Future[None] | bool = accepted
        self._local_closed = False
        self._consumer: StreamConsumer | None = None
        self._on_writable: Callable[[], None] | None = None
        #: called (once) when the stream is reset or its session ends
        self.on_reset: Callable[[BaseException], None] | None = None

    def __repr__(self) -> str:
        return f"<TunnelStream {self.stream_id} {self.state.value}>"

    @property
    def state(self) -> StreamState:
        return self.session.conn.stream_state(self.stream_id)

    @property
    def at_eof(self) -> bool:
        return self._eof and not self._buffer

    # ------------------------------------------------------------------ application API

    def accept(self) -> None:
        """Accept a stream the peer opened (before writing to it)."""
        self._raise_if_failed()
        self.session.conn.accept_stream(self.stream_id)
        self._accepted = True
        self.session._wake_writer()

    async def wait_accepted(self) -> None:
        """Wait until the peer accepted a stream this side opened; raises if it was reset."""
        if self._accepted is True:
            return
        self._raise_if_failed()
        if self._accepted is False:
            self._accepted = asyncio.get_running_loop().create_future()
        assert isinstance(self._accepted, asyncio.Future)
        await asyncio.shield(self._accepted)

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all buffered bytes when ``n`` < 0); b"" at end of stream."""
        while not self._buffer:
            if self._error is not None:
                raise self._error
            if self._eof:
                return b""
            self._readable = asyncio.get_running_loop().create_future()
            try:
                await self._readable
            finally:
                self._readable = None
        buffer = self._buffer
        if n < 0 or n >= self._buffered:
            data = buffer.popleft() if len(buffer) == 1 else b"".join(buffer)
            buffer.clear()
        else:
            data = self._take(buffer, n)
        self._buffered -= len(data)
        self.session._acknowledge(self.stream_id, len(data))
        return data

    async def readexactly(self, n: int) -> bytes:
        parts = []
        while n > 0:
            chunk = await self.read(n)
            if not chunk:
                raise EOFError(f"stream {self.stream_id} ended {n} bytes short")
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of ``data``, waiting for window as needed."""
        view = memoryview(data)
        conn = self.session.conn
        while view:
            self._raise_if_failed()
            if self._local_closed:
                raise ConnectionResetError(f"stream {self.stream_id} is closed for writing")
            n = conn.send_data(self.stream_id, view)
            if n:
                view = view[n:]
                self.session._wake_writer()
            if view:
                await self._wait_writable()

    async def close(self) -> None:
        """Half-close: no more data from this side. Reading goes on until the peer closes."""
        self.finish()

    def finish(self) -> None:
        """:meth:`close` without awaiting (it never needs to wait)."""
        if self._local_closed or self._error is not None:
            return
        self._local_closed = True
        self.session._close_stream(self)

    # ------------------------------------------------------------------ consumer mode

    def attach(self, consumer: StreamConsumer) -> None:
        """Hand every byte that arrives, and the end of the stream, to ``consumer`` (what
        arrived before is handed over at once)."""
        self._consumer = consumer
        if self._buffer:
            pending = list(self._buffer)
            self._buffer.clear()
            self._buffered = 0
            for data in pending:
                consumer.stream_data(data)
        if self._error is not None:
            consumer.stream_failed(self._error)
        elif self._eof:
            consumer.stream_eof()

    def consumed(self, n: int) -> None:
        """The consumer handed ``n`` bytes on: the peer may send that many more."""
        if n:
            self.session._acknowledge(self.stream_id, n)

    def try_write(self, data: bytes | memoryview) -> int:
        """Send what the windows allow of ``data`` now; returns how many bytes were taken.
        When fewer than all, :meth:`when_writable` says when to try again."""
        if self._error is not None:
            raise self._error
        if self._local_closed:
            raise ConnectionResetError(f"stream {self.stream_id} is closed for writing")
        n = self.session.conn.send_data(self.stream_id, data)
        if n:
            self.session._wake_writer()
        return n

    def when_writable(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, when the peer gives this stream more credit."""
        self._on_writable = callback
        self.session._blocked_writers.add(self)

    def reset(self, code: ErrorCode = ErrorCode.CANCEL, message: str = "") -> None:
        """Abort the stream in both directions."""
        if self._error is None:
            self._fail(StreamResetError(self.stream_id, code, message, remote=False))
        self.session._reset_stream(self, code, message)

    # ------------------------------------------------------------------ session side

    @staticmethod
    def _take(buffer: deque[bytes], n: int) -> bytes:
        parts = []
        while n > 0:
            head = buffer[0]
            if len(head) <= n:
                parts.append(buffer.popleft())
                n -= len(head)
            else:
                parts.append(head[:n])
                buffer[0] = head[n:]
                n = 0
        return b"".join(parts)

    def _feed(self, data: bytes) -> None:
        if self._consumer is not None:
            self._consumer.stream_data(data)
            return
        if self._buffer is None:
            self._buffer = deque()
        self._buffer.append(data)
        self._buffered += len(data)
        if self._readable is not None and not self._readable.done():
            self._readable.set_result(None)

    def _feed_eof(self) -> None:
        self._eof = True
        if self._consumer is not None:
            self._consumer.stream_eof()
            return
        if self._readable is not None and not self._readable.done():
            self._readable.set_result(None)

    def _set_accepted(self) -> None:
        if isinstance(self._accepted, asyncio.Future) and not self._accepted.done():
            self._accepted.set_result(None)
        self._accepted = True

    def _notify_writable(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        if self._on_writable is not None and self.session.conn.sendable(self.stream_id):
            callback, self._on_writable = self._on_writable, None
            self.session._blocked_writers.discard(self)
            callback()

    def _fail(self, error: BaseException) -> None:
        if self._error is not None:
            return
        self._error = error
        for waiter in (self._readable, self._writable, self._accepted):
            if isinstance(waiter, asyncio.Future) and not waiter.done():
                waiter.set_exception(error)
                waiter.exception()  # mark retrieved: nobody may be waiting
        if self.on_reset is not None:
            callback, self.on_reset = self.on_reset, None
            callback(error)
        self._on_writable = None
        if self._consumer is not None:
            self._consumer.stream_failed(error)

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    async def _wait_writable(self) -> None:
        if self.session.conn.sendable(self.stream_id) > 0:
            return
        self._writable = asyncio.get_running_loop().create_future()
        self.session._blocked_writers.add(self)
        try:
            await self._writable
        finally:
            self._writable = None
            self.session._blocked_writers.discard(self)
