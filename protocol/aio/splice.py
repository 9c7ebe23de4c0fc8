"""Join a TCP connection and a tunnel stream, both ways, with half-close.

:class:`SocketRelay` is the TCP connection's asyncio protocol and the stream's consumer at
once: bytes from the socket go straight into the tunnel (``try_write``) and bytes from the
tunnel straight into the socket's transport, with no task and no buffer in between. Each
direction has its own backpressure: when the stream has no credit the socket stops being read
(``pause_reading``); when the socket's send buffer is full the tunnel's credit is held back
(``consumed`` waits for ``resume_writing``), so the peer stops sending on this stream only.

The socket's kernel buffers are fixed at :data:`SOCKET_BUFFER` each way unless told otherwise.
The stream window is the relay's flow control; left to autotune, the kernel adds megabytes of
its own buffering on top, which a reader that stopped pins: 100 stalled downloads held about
5 MiB each in the hub's and the agent's sockets, and slowed a healthy transfer on the same
tunnel by 5-25% (tests/e2e/test_tunnel_relay.py). With 256 KiB the slowdown went and bulk
through the relay got faster too (its bytes stay in the CPU cache). The cost: one relayed
connection moves at most about buffer / RTT, 256 MB/s at 1 ms, which suits MAAS and the other
endpoints in the gateway's own data center; 0 leaves the kernel to autotune.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import cast

from protocol.aio.stream import TunnelStream
from protocol.codes import ErrorCode
from protocol.exceptions import ConnectionClosed, StreamResetError

#: bytes of kernel send buffer and of receive buffer for a relayed socket (module docstring)
SOCKET_BUFFER = 256 * 1024
#: the range a fixed buffer may take (the kernel doubles it and caps it at its own maximum)
SOCKET_BUFFER_RANGE = (4096, 64 << 20)


def check_socket_buffer(value: int, name: str) -> None:
    """Raise ``ValueError`` unless ``value`` is 0 (autotune) or in :data:`SOCKET_BUFFER_RANGE`."""
    low, high = SOCKET_BUFFER_RANGE
    if value != 0 and not low <= value <= high:
        raise ValueError(
            f"{name}={value!r} must be 0 (the kernel autotunes) or a byte count from {low} "
            f"to {high}"
        )


class SocketRelay(asyncio.Protocol):
    def __init__(self, stream: TunnelStream, socket_buffer: int = SOCKET_BUFFER) -> None:
        self.stream = stream
        self.socket_buffer = socket_buffer
        self.transport: asyncio.Transport | None = None
        #: resolved when both directions are over (or one failed) and the socket is closed
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending: memoryview | None = None  # socket bytes waiting for stream credit
        self._socket_eof = False  # the TCP peer sends no more
        self._tunnel_eof = False  # the tunnel peer sends no more
        self._socket_gone = False
        self._write_paused = False
        self._unacknowledged = 0

    # ------------------------------------------------------------------ socket side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike
        self.transport = cast(asyncio.Transport, transport)
        if self.socket_buffer > 0:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.socket_buffer)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.socket_buffer)
        self.stream.attach(self)

    def data_received(self, data: bytes) -> None:
        self._send(memoryview(data))

    def eof_received(self) -> bool:
        self._socket_eof = True
        if self._pending is None:
            self._end_upstream()
        return True  # keep the socket open: the other direction may still be sending

    def connection_lost(self, exc: Exception | None) -> None:
        self._socket_gone = True
        if exc is not None and not self.done.done():
            self.stream.reset(ErrorCode.CONNECT_FAILED, "connection lost")
        if exc is not None or self._tunnel_eof:
            self._resolve()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        n, self._unacknowledged = self._unacknowledged, 0
        self.stream.consumed(n)

    # ------------------------------------------------------------------ tunnel side

    def stream_data(self, data: bytes) -> None:
        if self._socket_gone or self.transport is None:
            self.stream.consumed(len(data))  # nowhere to deliver: do not hold the peer up
            return
        self.transport.write(data)
        if self._write_paused:
            self._unacknowledged += len(data)
        else:
            self.stream.consumed(len(data))

    def stream_eof(self) -> None:
        self._tunnel_eof = True
        transport = self.transport
        if self._socket_gone or transport is None:
            self._resolve()
            return
        if transport.can_write_eof():
            transport.write_eof()
        self._maybe_close()

    def stream_failed(self, error: BaseException) -> None:
        if self.transport is not None:
            self.transport.abort()
        self._resolve()

    # ------------------------------------------------------------------ internals

    def _send(self, view: memoryview) -> bool:
        """Write ``view`` to the stream; False if some of it waits for credit (``_pending``),
        True if all of it went, or the stream failed (the relay is then over)."""
        try:
            n = self.stream.try_write(view)
        except (StreamResetError, ConnectionClosed, ConnectionResetError):
            if self.transport is not None:
                self.transport.abort()
            self._resolve()
            return True
        if n < len(view):
            self._pending = view[n:]
            assert self.transport is not None
            self.transport.pause_reading()
            self.stream.when_writable(self._resume)
            return False
        return True

    def _resume(self) -> None:
        # what _send returns, not a second look at self._pending: that was just set to None
        # here, and compiled code (protocol/NATIVE.md) trusts the type it was narrowed to
        view, self._pending = self._pending, None
        if view is not None and not self._send(view):
            return
        if self.transport is not None and not self.done.done():
            if self._socket_eof:
                self._end_upstream()
            else:
                self.transport.resume_reading()

    def _end_upstream(self) -> None:
        with contextlib.suppress(StreamResetError, ConnectionClosed):
            self.stream.finish()
        self._maybe_close()

    def _maybe_close(self) -> None:
        if self._socket_eof and self._tunnel_eof and self._pending is None:
            if self.transport is not None:
                self.transport.close()  # flushes what is buffered, then connection_lost

    def _resolve(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def relay(stream: TunnelStream, transport: asyncio.Transport, relay: SocketRelay) -> None:
    """Wait until ``relay`` is over; if the waiting is cancelled, drop the socket."""
    try:
        await asyncio.shield(relay.done)
    finally:
        if not relay.done.done():
            transport.abort()
