"""A tunnel session over one websocket: the driver of the sans-I/O core.

Two kinds of transport: a :class:`Channel` (:class:`~protocol.aio.channel.WebSocketChannel`,
on the agent and on the hub) pushes each message into the session from its socket callback and
takes writes without awaiting, so a message crosses no task; a :class:`Transport` (the
in-memory pipe, or any websocket with async ``recv``/``send``) is driven by a reader task and a
writer task. Either way, a keepalive task calls ``tick`` on time and watches for writes that stall,
and stream handlers run as tasks of their own.

The core is given ``time.monotonic()``, not ``loop.time()``: uvloop's clock counts whole
milliseconds, too coarse for the round-trip times of a local network (PROTOCOL.md §6.5).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from time import monotonic
from typing import Protocol, cast

from protocol import events as ev
from protocol.aio.stream import TunnelStream
from protocol.codes import ErrorCode
from protocol.connection import ConnectionConfig, TunnelConnection
from protocol.exceptions import ConnectionClosed, StreamResetError
from protocol.frames import MetadataValue
from protocol.rpc import RPC_STREAM_KIND
from protocol.state import SessionState, StreamState

log = logging.getLogger("pcg.tunnel")

#: The largest message written to a :class:`Channel`. Each pass over a message (the core's
#: join, the client's mask (RFC 6455 §5.3), the frame's copy) costs much more once the message
#: outgrows the CPU cache: on the agent, 128 KiB messages moved bulk data about 20% faster, on
#: less CPU, than 1 MiB ones (bench/tunnel.py, download). The hub does not mask; the other
#: passes remain, so it keeps the same cap.
CHANNEL_MESSAGE_BYTES = 128 * 1024

StreamHandler = Callable[[TunnelStream], Awaitable[None]]


class Transport(Protocol):
    """Whole binary messages in both directions, pulled (async ``recv`` and ``send``)."""

    async def recv(self) -> str | bytes: ...

    async def send(self, message: bytes) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class Channel(Protocol):
    """Whole binary messages, pushed: once attached, the channel calls the session's
    ``message_received``, ``channel_lost``, ``pause_writing`` and ``resume_writing``."""

    def attach(self, receiver: TunnelSession) -> None: ...

    def write(self, message: bytes) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


@dataclass(frozen=True, slots=True)
class SessionStats:
    open_streams: int
    streams_opened: int
    streams_accepted: int
    bytes_sent: int
    bytes_received: int
    rtt: float | None


class TunnelSession:
    """Drive a :class:`TunnelConnection` over ``transport``.

    ``stream_handler`` runs (as its own task) for every stream the peer opens except RPC
    streams, which go to ``rpc_server`` (see :mod:`protocol.aio.rpc`). A handler must
    ``accept()`` or ``reset()`` its stream; when it returns, the stream is half-closed.
    """

    def __init__(
        self,
        transport: Transport | Channel,
        config: ConnectionConfig,
        *,
        stream_handler: StreamHandler | None = None,
        rpc_server: StreamHandler | None = None,
        write_timeout: float = 20.0,
        label: str = "",
    ) -> None:
        self.conn = TunnelConnection(config)
        self.transport = transport
        self.label = label
        self.stream_handler = stream_handler
        self.rpc_server = rpc_server
        self.write_timeout = write_timeout
        self.peer_info: Mapping[str, str] = {}
        self.rtt: float | None = None
        self.goaway: ev.GoAwayReceived | None = None
        #: set when the peer's first GOAWAY arrives (graceful or not)
        self.goaway_received = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._streams: dict[int, TunnelStream] = {}
        self._blocked_writers: set[TunnelStream] = set()
        self._handler_tasks: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._send_wakeup = asyncio.Event()
        self._flushed = asyncio.Event()
        self._idle = asyncio.Event()
        self._send_started: float | None = None
        # the transport as the kind it is: a channel pushes, a transport is pulled by two tasks
        self._channel: Channel | None = None
        self._pull: Transport | None = None
        # told apart by what they have, not isinstance: a Protocol class checked at run time
        # does not survive compilation (protocol/NATIVE.md)
        if hasattr(transport, "attach"):
            self._channel = cast(Channel, transport)
        else:
            self._pull = transport
        self._flush_scheduled = False
        self._write_paused = False
        self._channel_gone = False
        self._handshake: asyncio.Future[ev.HandshakeComplete] = self._loop.create_future()
        self._closed: asyncio.Future[ConnectionClosed] = self._loop.create_future()
        self._streams_opened = 0
        self._streams_accepted = 0
        self._bytes_sent = 0
        self._bytes_received = 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self, handshake_timeout: float = 10.0) -> ev.HandshakeComplete:
        """Run the session's tasks and wait for the HELLO exchange."""
        self.conn.initiate()
        self._tasks = [
            self._loop.create_task(self._keepalive_loop(), name=f"tunnel-keepalive {self.label}")
        ]
        if self._channel is not None:
            self._channel.attach(self)
        else:
            self._tasks += [
                self._loop.create_task(self._read_loop(), name=f"tunnel-read {self.label}"),
                self._loop.create_task(self._write_loop(), name=f"tunnel-write {self.label}"),
            ]
        self._wake_writer()
        try:
            async with asyncio.timeout(handshake_timeout):
                done = await asyncio.shield(self._handshake)
        except TimeoutError:
            self.abort(ErrorCode.PEER_UNRESPONSIVE, f"no HELLO within {handshake_timeout}s")
            await self.wait_closed()
            raise ConnectionClosed(
                ErrorCode.PEER_UNRESPONSIVE, f"no HELLO within {handshake_timeout}s"
            ) from None
        self.peer_info = done.peer_info
        return done

    @property
    def closed(self) -> bool:
        return self._closed.done()

    @property
    def is_usable(self) -> bool:
        """True while new streams may be opened on this session."""
        conn = self.conn
        return (
            not self.closed
            and not conn.peer_going_away
            and not conn.closed
            and conn.state is not SessionState.DRAINING  # this side sent a graceful GOAWAY
        )

    @property
    def close_reason(self) -> ConnectionClosed | None:
        """Why the session ended, once it has."""
        return self._closed.result() if self._closed.done() else None

    async def wait_closed(self) -> ConnectionClosed:
        """Wait until the session is over; returns why."""
        return await asyncio.shield(self._closed)

    async def go_away(
        self, code: ErrorCode = ErrorCode.NO_ERROR, message: str = "", retry_after_ms: int = 0
    ) -> None:
        """Take no new streams from the peer; streams already open go on (PROTOCOL.md §8)."""
        self.conn.go_away(code, message, retry_after_ms)
        self._wake_writer()
        if self.conn.closed:
            self._finish(ConnectionClosed(code, message))

    async def drain(self, grace: float) -> bool:
        """Wait up to ``grace`` seconds for every open stream to end; True if they all did."""
        self._check_idle()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._idle.wait()
        return not self._streams

    async def close(self, code: ErrorCode = ErrorCode.NO_ERROR, message: str = "") -> None:
        """End the session now: GOAWAY, then close the transport."""
        if not self.closed:
            self.conn.go_away(code, message)
            self._wake_writer()
            await self._wait_flushed(1.0)
            self._finish(ConnectionClosed(code, message or "closed by this side"))
        await self._stop_tasks()

    async def send_raw(self, message: bytes) -> None:
        """Put ``message`` on the transport behind the core's back: for fault tests only."""
        if self._channel is not None:
            self._channel.write(message)
        elif self._pull is not None:
            await self._pull.send(message)

    def stats(self) -> SessionStats:
        return SessionStats(
            open_streams=len(self._streams),
            streams_opened=self._streams_opened,
            streams_accepted=self._streams_accepted,
            bytes_sent=self._bytes_sent,
            bytes_received=self._bytes_received,
            rtt=self.rtt,
        )

    # ------------------------------------------------------------------ streams

    def open_stream(self, metadata: Mapping[str, MetadataValue] | None = None) -> TunnelStream:
        """Open a stream; data may be written at once, before the peer accepts it."""
        if self.closed:
            reason = self._closed.result()
            raise ConnectionClosed(reason.code, reason.reason)
        stream_id = self.conn.open_stream(metadata)
        stream = TunnelStream(self, stream_id, metadata or {}, accepted=False)
        self._streams[stream_id] = stream
        self._streams_opened += 1
        self._wake_writer()
        return stream

    def _acknowledge(self, stream_id: int, n: int) -> None:
        self.conn.acknowledge(stream_id, n)
        if self.conn.wants_write:
            self._wake_writer()

    def _close_stream(self, stream: TunnelStream) -> None:
        if self.closed:
            return
        self.conn.close_stream(stream.stream_id)
        self._wake_writer()
        self._maybe_forget(stream)

    def _reset_stream(self, stream: TunnelStream, code: ErrorCode, message: str) -> None:
        self._forget(stream.stream_id)
        if not self.closed:
            self.conn.reset_stream(stream.stream_id, code, message)
            self._wake_writer()

    def _maybe_forget(self, stream: TunnelStream) -> None:
        if self.conn.stream_state(stream.stream_id) is StreamState.CLOSED:
            self._forget(stream.stream_id)

    def _forget(self, stream_id: int) -> TunnelStream | None:
        stream = self._streams.pop(stream_id, None)
        if not self._streams and not self._handler_tasks:
            self._idle.set()
        return stream

    # ------------------------------------------------------------------ tasks

    def _wake_writer(self) -> None:
        self._flushed.clear()
        if self._channel is None:
            self._send_wakeup.set()
        elif not self._flush_scheduled:
            # once per loop turn: what every callback of this turn queued goes out together
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _check_idle(self) -> None:
        if not self._streams and not self._handler_tasks:
            self._idle.set()
        else:
            self._idle.clear()

    # ------------------------------------------------------------------ the transport's side

    def message_received(self, message: bytes | str) -> None:
        """One websocket message from the peer (a :class:`Channel` calls this)."""
        conn = self.conn
        if conn.closed:
            return
        if isinstance(message, str):
            conn.go_away(ErrorCode.PROTOCOL_ERROR, "text message on a binary protocol")
            self._wake_writer()
            self._finish(ConnectionClosed(ErrorCode.PROTOCOL_ERROR, "text message"))
            return
        self._bytes_received += len(message)
        self._dispatch(conn.receive_data(message, monotonic()))
        if conn.wants_write:
            self._wake_writer()

    def channel_lost(self, exc: Exception | None) -> None:
        """The channel's connection is gone (a :class:`Channel` calls this)."""
        self._channel_gone = True
        self._transport_lost(exc)

    def _transport_lost(self, exc: BaseException | None) -> None:
        why = "the connection ended" if exc is None else f"{exc!r:.200}"
        self._finish(ConnectionClosed(ErrorCode.NO_ERROR, f"transport closed: {why}"))

    def pause_writing(self) -> None:
        """The channel's buffer is full: write nothing more until :meth:`resume_writing`."""
        if not self._write_paused:
            self._write_paused = True
            self._send_started = monotonic()  # the keepalive ends a session stalled too long

    def resume_writing(self) -> None:
        self._write_paused = False
        self._send_started = None
        self._wake_writer()

    def _flush(self) -> None:
        """Write what the core queued to a :class:`Channel`, unless it is paused."""
        self._flush_scheduled = False
        conn = self.conn
        channel = self._channel
        assert channel is not None
        try:
            while not self._write_paused and (message := conn.data_to_send(CHANNEL_MESSAGE_BYTES)):
                channel.write(message)
                self._bytes_sent += len(message)
        except Exception as exc:
            self._channel_gone = True
            self._transport_lost(exc)
            return
        if not conn.wants_write:
            self._flushed.set()
            if conn.closed:  # the GOAWAY that ended the session is on the wire
                self._finish(
                    ConnectionClosed(conn.close_code or ErrorCode.NO_ERROR, "session ended")
                )

    async def _read_loop(self) -> None:
        transport = self._pull
        assert transport is not None
        try:
            while not self.conn.closed and not self.closed:
                self.message_received(await transport.recv())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the transport went away: OSError, EOF, a closed websocket
            self._transport_lost(exc)

    async def _write_loop(self) -> None:
        conn = self.conn
        transport = self._pull
        assert transport is not None
        try:
            while True:
                await self._send_wakeup.wait()
                self._send_wakeup.clear()
                while message := conn.data_to_send():
                    self._send_started = monotonic()
                    await transport.send(message)
                    self._send_started = None
                    self._bytes_sent += len(message)
                if not conn.wants_write:
                    self._flushed.set()
                if conn.closed:
                    # the GOAWAY that ended the session is on the wire: close the transport
                    self._finish(
                        ConnectionClosed(conn.close_code or ErrorCode.NO_ERROR, "session ended")
                    )
                    with contextlib.suppress(Exception):
                        await transport.close()
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._transport_lost(exc)

    async def _keepalive_loop(self) -> None:
        conn = self.conn
        while not conn.closed and not self.closed:
            deadline = conn.next_deadline()
            now = monotonic()
            wake = now + 1.0 if deadline is None else min(deadline, now + 1.0)
            if self._send_started is not None:
                wake = min(wake, self._send_started + self.write_timeout)
            await asyncio.sleep(max(0.0, wake - now))
            now = monotonic()
            if self._send_started is not None and now - self._send_started >= self.write_timeout:
                # A write that does not complete means the peer or the path is gone even if
                # nothing else says so (PROTOCOL.md §7): do not wait for the pong timeout.
                self.abort(
                    ErrorCode.PEER_UNRESPONSIVE,
                    f"a write stalled for {now - self._send_started:.1f}s",
                )
                return
            self._dispatch(conn.tick(now))
            if conn.wants_write:
                self._wake_writer()

    # ------------------------------------------------------------------ events

    def _dispatch(self, events: list[ev.Event]) -> None:
        streams = self._streams
        for event in events:
            if type(event) is ev.DataReceived:
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream._feed(event.data)
                else:  # nobody will read it: give the credit back at once
                    self.conn.acknowledge(event.stream_id, len(event.data))
            elif type(event) is ev.WindowUpdated:
                if event.stream_id == 0:
                    for blocked in list(self._blocked_writers):
                        blocked._notify_writable()
                else:
                    stream = streams.get(event.stream_id)
                    if stream is not None:
                        stream._notify_writable()
            elif type(event) is ev.StreamOpened:
                self._on_stream_opened(event)
            elif type(event) is ev.StreamAccepted:
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream._set_accepted()
            elif type(event) is ev.StreamEnded:
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream._feed_eof()
                    self._maybe_forget(stream)
            elif type(event) is ev.StreamReset:
                stream = self._forget(event.stream_id)
                if stream is not None:
                    stream._fail(
                        StreamResetError(event.stream_id, event.code, event.message, remote=True)
                    )
            elif type(event) is ev.PongReceived:
                self.rtt = event.rtt
            elif type(event) is ev.HandshakeComplete:
                if not self._handshake.done():
                    self._handshake.set_result(event)
            elif type(event) is ev.GoAwayReceived:
                self.goaway = event
                self.goaway_received.set()
                log.info(
                    "peer sent GOAWAY session=%s code=%s retry_after_ms=%d message=%r",
                    self.label,
                    event.code.name,
                    event.retry_after_ms,
                    event.message,
                )
            elif type(event) is ev.ConnectionTerminated:
                if not event.remote:
                    log.warning(
                        "ending session session=%s code=%s reason=%r",
                        self.label,
                        event.code.name,
                        event.message,
                    )
                self._wake_writer()
                self._finish(ConnectionClosed(event.code, event.message))

    def _on_stream_opened(self, event: ev.StreamOpened) -> None:
        stream = TunnelStream(self, event.stream_id, event.metadata, accepted=False)
        is_rpc = event.metadata.get("kind") == RPC_STREAM_KIND
        handler = self.rpc_server if is_rpc else self.stream_handler
        if handler is None:
            self.conn.reset_stream(event.stream_id, ErrorCode.REFUSED_STREAM, "no handler")
            return
        self._streams[event.stream_id] = stream
        self._streams_accepted += 1
        task = self._loop.create_task(self._run_handler(handler, stream))
        self._handler_tasks.add(task)
        task.add_done_callback(self._handler_done)

    def _handler_done(self, task: asyncio.Task[None]) -> None:
        self._handler_tasks.discard(task)
        self._check_idle()

    async def _run_handler(self, handler: StreamHandler, stream: TunnelStream) -> None:
        try:
            await handler(stream)
        except (StreamResetError, ConnectionClosed):
            pass
        except asyncio.CancelledError:
            stream.reset(ErrorCode.CANCEL, "session closing")
            raise
        except Exception as exc:
            log.exception(
                "stream handler failed session=%s stream=%d", self.label, stream.stream_id
            )
            stream.reset(ErrorCode.INTERNAL_ERROR, type(exc).__name__)
            return
        if stream.state in (StreamState.SYN_RECEIVED, StreamState.SYN_RECEIVED_REMOTE_CLOSED):
            stream.reset(ErrorCode.REFUSED_STREAM, "handler returned without accepting")
        elif not self.closed and stream.stream_id in self._streams:
            await stream.close()

    # ------------------------------------------------------------------ ending

    def abort(self, code: ErrorCode, message: str) -> None:
        """End the session now with GOAWAY(code): this side knows the peer or path is gone."""
        if self.conn.closed:
            self._finish(ConnectionClosed(code, message))
            return
        self._dispatch(self.conn.abort(code, message))
        self._wake_writer()

    def _finish(self, reason: ConnectionClosed) -> None:
        if self._closed.done():
            return
        self._closed.set_result(reason)
        if not self._handshake.done():
            self._handshake.set_exception(reason)
            self._handshake.exception()
        for stream in list(self._streams.values()):
            stream._fail(ConnectionClosed(reason.code, reason.reason))
        self._streams.clear()
        self._idle.set()
        for task in list(self._handler_tasks):
            task.cancel()
        # the reader may be blocked in recv(): closing the transport releases it
        self._loop.create_task(self._close_transport_soon())

    async def _close_transport_soon(self) -> None:
        await self._wait_flushed(1.0)  # let the writer put a final GOAWAY on the wire
        with contextlib.suppress(Exception):
            await self.transport.close()
        await self._stop_tasks()

    async def _wait_flushed(self, grace: float) -> None:
        if self._channel_gone or not self.conn.wants_write:
            return
        if any(task.done() for task in self._tasks[1:]):  # the writer task is gone
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._flushed.wait()

    async def _stop_tasks(self) -> None:
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current and not task.done():
                task.cancel()
        for task in self._tasks:
            if task is not current:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
