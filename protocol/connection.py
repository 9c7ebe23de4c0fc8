"""The sans-I/O tunnel session: bytes in, events out (PROTOCOL.md).

:class:`TunnelConnection` never touches a socket, an event loop or a clock. Its driver feeds it
each websocket message with :meth:`~TunnelConnection.receive_data`, sends what
:meth:`~TunnelConnection.data_to_send` returns as one binary message each, calls
:meth:`~TunnelConnection.tick` at :meth:`~TunnelConnection.next_deadline`, and passes the
current time (any monotonic clock, in seconds) wherever it is asked for.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import msgpack

from protocol import PROTOCOL_VERSION
from protocol import events as ev
from protocol.codes import ErrorCode
from protocol.exceptions import (
    ConnectionClosed,
    LocalProtocolError,
    RemoteProtocolError,
    StreamLimitError,
)
from protocol.frames import (
    MAX_STREAM_ID,
    Accept,
    Data,
    Fin,
    Frame,
    GoAway,
    Hello,
    MetadataValue,
    Open,
    Ping,
    Pong,
    Reset,
    Settings,
    Window,
    data_frame_span,
    decode_batch,
    encode,
    encode_data_header,
)
from protocol.state import (
    RECEIVES_DATA,
    SENDS_DATA,
    SessionState,
    remote_violation_code,
    session_transition,
    stream_transition,
)
from protocol.state import SessionInput as J
from protocol.state import StreamInput as I
from protocol.state import StreamState as S
from protocol.windows import ReceiveWindow, SendWindow, WindowTuner

_GRACEFUL = (ErrorCode.NO_ERROR, ErrorCode.SHUTTING_DOWN)
_STARTED = (SessionState.OPEN, SessionState.DRAINING)


class Role(enum.Enum):
    """CLIENT dials out (the gateway agent), speaks first and opens odd stream ids;
    SERVER accepts the websocket (the Palette-side hub) and opens even ones (§4.1, §5.1)."""

    CLIENT = "client"
    SERVER = "server"


def check_seconds(config: object, *names: str) -> None:
    """Raise ``ValueError`` for the first of ``names`` that is not, on ``config``, a positive
    and finite number of seconds (the config classes of the core, the hub and the agent)."""
    for name in names:
        value = getattr(config, name)
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{name}={value!r} must be a positive number of seconds")


def check_growth_budget(value: int, name: str = "window_growth_budget") -> None:
    """Raise ``ValueError`` unless ``value`` is a window growth budget: 0 or more bytes."""
    if value < 0:
        raise ValueError(f"{name}={value!r} must be 0 (no window tuning) or a positive byte count")


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    role: Role
    #: what this side accepts from the peer, announced in HELLO
    settings: Settings = Settings()
    #: protocol versions this side speaks
    versions: tuple[int, ...] = (PROTOCOL_VERSION,)
    capabilities: tuple[str, ...] = ("rpc",)
    #: free-form strings about this side for the peer's logs (software name and version)
    info: Mapping[str, str] = field(default_factory=dict)
    #: seconds between PINGs, and how long a PING may go unanswered before the peer is dead
    ping_interval: float = 10.0
    ping_timeout: float = 10.0
    #: receive-window auto-tuning (§6.5): how far one stream's window may grow, and how many
    #: bytes of growth all streams of the session may share; 0 turns tuning off
    max_stream_window: int = 16 * 1024 * 1024
    window_growth_budget: int = 256 * 1024 * 1024

    def __post_init__(self) -> None:
        if not self.versions:
            raise ValueError("versions must name at least one protocol version")
        check_seconds(self, "ping_interval", "ping_timeout")
        check_growth_budget(self.window_growth_budget)


class _Stream:
    __slots__ = ("state", "send", "recv")

    def __init__(self, state: S, send_window: int, recv_window: int, now: float) -> None:
        self.state = state
        self.send = SendWindow(send_window)
        self.recv = ReceiveWindow(recv_window, now)


class TunnelConnection:
    """One tunnel session, from either end."""

    def __init__(self, config: ConnectionConfig) -> None:
        self.config = config
        self.role = config.role
        self.local_settings = config.settings
        #: the peer's settings; the defaults apply until its HELLO arrives
        self.peer_settings = Settings()
        self.version: int | None = None
        self.capabilities: frozenset[str] = frozenset()
        self.state = SessionState.AWAITING_HELLO
        #: set once the peer sent GOAWAY: no new stream may be opened on this session
        self.peer_going_away = False
        self.close_code: ErrorCode | None = None
        self.ping_interval = config.ping_interval
        self.ping_timeout = config.ping_timeout
        self._streams: dict[int, _Stream] = {}
        self._next_local_id = 1 if config.role is Role.CLIENT else 2
        self._last_peer_id = 0
        self._local_open = 0
        self._remote_open = 0
        self._pending_opens = 0
        self._session_send = SendWindow(self.peer_settings.session_window)
        self._session_recv = ReceiveWindow(self.local_settings.session_window)
        self._out: deque[bytes] = deque()
        #: PING, PONG and WINDOW go ahead of queued DATA: a keepalive answer or a credit grant
        #: stuck behind megabytes of bulk data would make a healthy peer look dead (§7)
        self._urgent: deque[bytes] = deque()
        self._ping_payload: bytes | None = None
        self._ping_sent_at = 0.0
        self._ping_count = 0
        self._next_ping_at: float | None = None
        self._hello_sent = False
        #: the latest time the driver passed in; the core never reads a clock of its own
        self._now = 0.0
        self._tuner = WindowTuner(
            config.settings.stream_window,
            max(config.max_stream_window, config.settings.stream_window),
            config.window_growth_budget,
        )

    # ------------------------------------------------------------------ driver side

    def initiate(self) -> None:
        """Client: queue the HELLO that starts the session (§4.1). Server: nothing to do."""
        if self.role is Role.CLIENT and not self._hello_sent:
            self._send_hello(self.config.versions, self.config.capabilities)

    def receive_data(self, message: bytes, now: float) -> list[ev.Event]:
        """Process one websocket binary message from the peer; returns what happened."""
        events: list[ev.Event] = []
        if self.state is SessionState.CLOSED:
            return events
        self._now = now
        try:
            if self.state is not SessionState.AWAITING_HELLO:
                # the hot path: a message that is one DATA frame (frames.data_frame_span)
                span = data_frame_span(message)
                if span is not None and len(message) <= self.local_settings.max_message_size:
                    stream_id, start = span
                    self._receive_data_frame(stream_id, message[start:], events)
                    return events
            # every other message: decode_message's own single-DATA check was just made here
            for frame in decode_batch(message, self.local_settings.max_message_size):
                self._receive_frame(frame, now, events)
                if self.closed:
                    break
        except RemoteProtocolError as exc:
            self._terminate(exc.code, str(exc), events)
        return events

    def data_to_send(self, max_bytes: int | None = None) -> bytes:
        """The next websocket message to send, or b"" when nothing is queued.

        Frames are packed into one message up to the peer's max_message_size (or
        ``max_bytes`` if smaller); call again until it returns b"".
        """
        if self._urgent:
            urgent = b"".join(self._urgent)
            self._urgent.clear()
            return urgent
        out = self._out
        if not out:
            return b""
        limit = self.peer_settings.max_message_size
        if max_bytes is not None:
            limit = min(limit, max_bytes)
        first = out.popleft()
        if not out or len(first) + len(out[0]) > limit:
            return first
        parts = [first]
        size = len(first)
        while out and size + len(out[0]) <= limit:
            frame = out.popleft()
            parts.append(frame)
            size += len(frame)
        return b"".join(parts)

    @property
    def wants_write(self) -> bool:
        """Whether :meth:`data_to_send` has something."""
        return bool(self._out or self._urgent)

    def tick(self, now: float) -> list[ev.Event]:
        """Run the keepalive (§7): send a PING when one is due, end a session whose peer
        left one unanswered for ping_timeout."""
        events: list[ev.Event] = []
        if self.state is SessionState.CLOSED or self._next_ping_at is None:
            return events
        self._now = now
        if self._ping_payload is not None:
            if now - self._ping_sent_at >= self.ping_timeout:
                waited = now - self._ping_sent_at
                self._terminate(
                    ErrorCode.PEER_UNRESPONSIVE,
                    f"no PONG within {waited:.1f}s (ping_timeout {self.ping_timeout}s)",
                    events,
                    transition=J.PEER_UNRESPONSIVE,
                )
        elif now >= self._next_ping_at:
            self.ping(now)
        return events

    def next_deadline(self) -> float | None:
        """When :meth:`tick` next has something to do (same clock as ``now``), or None."""
        if self.state is SessionState.CLOSED or self._next_ping_at is None:
            return None
        if self._ping_payload is not None:
            return self._ping_sent_at + self.ping_timeout
        return self._next_ping_at

    def ping(self, now: float) -> None:
        """Send a PING now (unless one is already unanswered); its PONG reports the RTT."""
        if self._ping_payload is not None or self.state not in _STARTED:
            return
        self._ping_count += 1
        self._ping_payload = self._ping_count.to_bytes(8, "big")
        self._ping_sent_at = now
        self._queue_urgent(Ping(self._ping_payload))

    # ------------------------------------------------------------------ application side

    def open_stream(self, metadata: Mapping[str, MetadataValue] | None = None) -> int:
        """Open a stream and return its id (§5.2). DATA may follow before the ACCEPT."""
        self._require_usable("open a stream")
        if self.peer_going_away:
            raise ConnectionClosed(ErrorCode.SHUTTING_DOWN, "the peer sent GOAWAY")
        peer = self.peer_settings
        if self._local_open >= peer.max_streams:
            raise StreamLimitError(
                f"{self._local_open} streams open, the peer allows {peer.max_streams}; "
                "wait for one to close"
            )
        meta = dict(metadata or {})
        size = len(msgpack.packb(meta, use_bin_type=True))
        if size > peer.max_metadata_size:
            raise LocalProtocolError(
                f"stream metadata of {size} bytes exceeds the peer's max_metadata_size "
                f"{peer.max_metadata_size}",
                ErrorCode.METADATA_TOO_LARGE,
            )
        stream_id = self._next_local_id
        if stream_id > MAX_STREAM_ID:
            # say so to the peer too: this session takes no more streams from this side (§5.1)
            self.go_away(ErrorCode.NO_ERROR, "stream ids exhausted")
            raise ConnectionClosed(ErrorCode.NO_ERROR, "stream ids exhausted; open a new session")
        self._next_local_id += 2
        self._streams[stream_id] = _Stream(
            S.SYN_SENT, peer.stream_window, self._recv_size(), self._now
        )
        self._local_open += 1
        self._queue(Open(stream_id, meta))
        return stream_id

    def accept_stream(self, stream_id: int) -> None:
        """Accept a stream the peer opened (§5.3)."""
        self._local_transition(stream_id, I.SEND_ACCEPT)
        self._pending_opens -= 1
        self._queue(Accept(stream_id))

    def send_data(self, stream_id: int, data: bytes | bytearray | memoryview) -> int:
        """Queue as much of ``data`` as the windows allow; returns how many bytes (§6).

        Returns 0 when the stream or the session has no credit: wait for WindowUpdated.
        """
        stream = self._streams.get(stream_id)
        if stream is None or stream.state not in SENDS_DATA:
            state = "closed" if stream is None else stream.state.value
            raise LocalProtocolError(f"cannot send data on stream {stream_id}: it is {state}")
        n = min(len(data), stream.send.available, self._session_send.available)
        if n <= 0:
            return 0
        stream.send.consume(n)
        self._session_send.consume(n)
        # Each chunk is copied into its frame right here, so the caller may reuse its buffer.
        step = self.peer_settings.max_frame_size
        if n <= step and n == len(data):  # one frame: a small write
            self._out.append(encode_data_header(stream_id, n) + data)
            return n
        view = memoryview(data)
        out = self._out
        for offset in range(0, n, step):
            chunk = view[offset : min(offset + step, n)]
            out.append(encode_data_header(stream_id, len(chunk)) + chunk)
        return n

    def sendable(self, stream_id: int) -> int:
        """Bytes :meth:`send_data` would take on this stream now."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.state not in SENDS_DATA:
            return 0
        return min(stream.send.available, self._session_send.available)

    def close_stream(self, stream_id: int) -> None:
        """Half-close: this side sends no more data on the stream (§5.4)."""
        stream = self._local_transition(stream_id, I.SEND_FIN)
        self._queue(Fin(stream_id))
        if stream.state is S.CLOSED:
            self._forget(stream_id)

    def reset_stream(
        self, stream_id: int, code: ErrorCode = ErrorCode.CANCEL, message: str = ""
    ) -> None:
        """Abort the stream in both directions (§5.5); a stream already gone is left alone."""
        stream = self._streams.get(stream_id)
        if stream is None or self.state is SessionState.CLOSED:
            return
        self._queue(Reset(stream_id, code, message))
        self._forget(stream_id)

    def acknowledge(self, stream_id: int, n: int) -> None:
        """The application consumed ``n`` bytes received on the stream: give credit back."""
        stream = self._streams.get(stream_id)
        if stream is None or n == 0:
            return
        increment = stream.recv.acknowledge(n, self._now, self._tuner)
        if increment and stream.state in RECEIVES_DATA:  # credit the peer can still use
            self._queue_urgent(Window(stream_id, increment))

    def go_away(
        self, code: ErrorCode = ErrorCode.NO_ERROR, message: str = "", retry_after_ms: int = 0
    ) -> None:
        """Tell the peer this side takes no new streams (§8).

        NO_ERROR and SHUTTING_DOWN drain: streams already open go on to their end. Any other
        code ends the session now.
        """
        if self.state is SessionState.CLOSED:
            return
        if code in _GRACEFUL:
            self._transition_session(J.SEND_GOAWAY_GRACEFUL)
            self._queue(GoAway(code, self._last_peer_id, retry_after_ms, message))
        else:
            self._terminate(code, message, [], retry_after_ms=retry_after_ms)

    def abort(self, code: ErrorCode, message: str) -> list[ev.Event]:
        """End the session now with GOAWAY(code) (the driver saw the peer stop answering)."""
        events: list[ev.Event] = []
        if self.state is not SessionState.CLOSED:
            self._terminate(code, message, events, transition=J.PEER_UNRESPONSIVE)
        return events

    # ------------------------------------------------------------------ introspection

    @property
    def closed(self) -> bool:
        return self.state is SessionState.CLOSED

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    @property
    def session_send_window(self) -> int:
        return self._session_send.available

    def stream_state(self, stream_id: int) -> S:
        stream = self._streams.get(stream_id)
        return S.CLOSED if stream is None else stream.state

    def is_local_stream(self, stream_id: int) -> bool:
        return (stream_id & 1 == 1) == (self.role is Role.CLIENT)

    # ------------------------------------------------------------------ internals

    def _recv_size(self) -> int:
        return self.local_settings.stream_window

    def _queue(self, frame: Frame) -> None:
        self._out.append(encode(frame))

    def _queue_urgent(self, frame: Ping | Pong | Window) -> None:
        self._urgent.append(encode(frame))

    def _send_hello(self, versions: tuple[int, ...], capabilities: tuple[str, ...]) -> None:
        self._hello_sent = True
        # HELLO goes ahead of everything, the urgent frames included (§4.1)
        hello = Hello(versions, capabilities, self.local_settings, dict(self.config.info))
        self._urgent.append(encode(hello))

    def _require_usable(self, what: str) -> None:
        if self.state is SessionState.AWAITING_HELLO:
            raise LocalProtocolError(f"cannot {what} before the handshake completes")
        if self.state is not SessionState.OPEN:
            raise ConnectionClosed(self.close_code or ErrorCode.NO_ERROR, f"cannot {what}")

    def _transition_session(self, event: J) -> None:
        next_state = session_transition(self.state, event)
        if next_state is None:  # pragma: no cover - callers only ask for allowed inputs
            raise LocalProtocolError(f"session cannot {event.value} in {self.state.value}")
        self.state = next_state

    def _local_transition(self, stream_id: int, event: I) -> _Stream:
        stream = self._streams.get(stream_id)
        if stream is None:
            raise LocalProtocolError(f"cannot {event.value} on stream {stream_id}: it is closed")
        next_state = stream_transition(stream.state, event)
        if next_state is None:
            raise LocalProtocolError(
                f"cannot {event.value} on stream {stream_id} in state {stream.state.value}"
            )
        stream.state = next_state
        return stream

    def _forget(self, stream_id: int) -> None:
        stream = self._streams.pop(stream_id)
        self._tuner.release(stream.recv)
        if stream.state in (S.SYN_RECEIVED, S.SYN_RECEIVED_REMOTE_CLOSED):
            self._pending_opens -= 1
        if self.is_local_stream(stream_id):
            self._local_open -= 1
        else:
            self._remote_open -= 1

    def _terminate(
        self,
        code: ErrorCode,
        message: str,
        events: list[ev.Event],
        *,
        transition: J = J.SEND_GOAWAY_ERROR,
        retry_after_ms: int = 0,
    ) -> None:
        self.state = session_transition(self.state, transition) or SessionState.CLOSED
        self.close_code = code
        # Nothing queued matters to a session that is over: the GOAWAY goes out alone.
        self._out.clear()
        self._urgent.clear()
        self._out.append(encode(GoAway(code, self._last_peer_id, retry_after_ms, message)))
        self._streams.clear()
        self._next_ping_at = None
        events.append(ev.ConnectionTerminated(code, message, remote=False))

    def _remote_stream_violation(self, stream_id: int, state: S, event: I) -> RemoteProtocolError:
        return RemoteProtocolError(
            f"peer sent {event.value.removeprefix('recv-').upper()} on stream {stream_id} "
            f"in state {state.value}",
            remote_violation_code(state, event),
        )

    def _ever_opened(self, stream_id: int) -> bool:
        if self.is_local_stream(stream_id):
            return stream_id < self._next_local_id
        return stream_id <= self._last_peer_id

    def _unknown_stream(self, stream_id: int, what: str) -> None:
        """A frame for a stream not in the table: ignore it if the stream existed once (it
        may have been reset while the frame was in flight), else it is a protocol error."""
        if not self._ever_opened(stream_id):
            raise RemoteProtocolError(f"{what} on stream {stream_id}, which was never opened")

    def _receive_frame(self, frame: Frame, now: float, events: list[ev.Event]) -> None:
        if self.state is SessionState.AWAITING_HELLO:
            if isinstance(frame, Hello):
                self._receive_hello(frame, now, events)
            elif isinstance(frame, GoAway):
                self._receive_goaway(frame, events)
            else:
                raise RemoteProtocolError(
                    f"expected HELLO as the first frame, got {type(frame).__name__.upper()}"
                )
            return
        match frame:
            case Data(stream_id, payload):
                self._receive_data_frame(stream_id, payload, events)
            case Window(stream_id, increment):
                self._receive_window(stream_id, increment, events)
            case Open(stream_id, metadata):
                self._receive_open(stream_id, metadata, events)
            case Accept(stream_id):
                stream = self._stream_for(stream_id, I.RECV_ACCEPT, "ACCEPT")
                if stream is not None:
                    events.append(ev.StreamAccepted(stream_id))
            case Fin(stream_id):
                stream = self._stream_for(stream_id, I.RECV_FIN, "FIN")
                if stream is not None:
                    events.append(ev.StreamEnded(stream_id))
                    if stream.state is S.CLOSED:
                        self._forget(stream_id)
            case Reset(stream_id, code, message):
                # RESET is allowed in every live state (state.py), so only the lookup can fail.
                if stream_id in self._streams:
                    self._forget(stream_id)
                    events.append(ev.StreamReset(stream_id, code, message))
                else:
                    self._unknown_stream(stream_id, "RESET")
            case Ping(payload):
                self._queue_urgent(Pong(payload))
            case Pong(payload):
                if payload == self._ping_payload:
                    self._ping_payload = None
                    self._next_ping_at = now + self.ping_interval
                    rtt = now - self._ping_sent_at
                    # smoothed as TCP does (RFC 6298), for window tuning (§6.5)
                    prior = self._tuner.rtt
                    self._tuner.rtt = rtt if prior is None else 0.875 * prior + 0.125 * rtt
                    events.append(ev.PongReceived(rtt))
            case GoAway():
                self._receive_goaway(frame, events)
            case Hello():
                raise RemoteProtocolError("HELLO after the session started")

    def _stream_for(self, stream_id: int, event: I, what: str) -> _Stream | None:
        stream = self._streams.get(stream_id)
        if stream is None:
            self._unknown_stream(stream_id, what)
            return None
        next_state = stream_transition(stream.state, event)
        if next_state is None:
            raise self._remote_stream_violation(stream_id, stream.state, event)
        stream.state = next_state
        return stream

    def _receive_data_frame(self, stream_id: int, payload: bytes, events: list[ev.Event]) -> None:
        n = len(payload)
        if n > self.local_settings.max_frame_size:
            raise RemoteProtocolError(
                f"DATA payload of {n} bytes exceeds max_frame_size "
                f"{self.local_settings.max_frame_size}",
                ErrorCode.FRAME_TOO_LARGE,
            )
        if stream_id == 0:
            raise RemoteProtocolError("DATA on stream 0")
        # Session credit is charged on arrival and given back at once (§6.3): a stream whose
        # reader stalls holds only its own window, never the session's.
        self._session_recv.receive(n, 0)
        increment = self._session_recv.acknowledge(n)
        if increment:
            self._queue_urgent(Window(0, increment))
        stream = self._streams.get(stream_id)
        if stream is None:
            self._unknown_stream(stream_id, "DATA")
            return
        state = stream.state
        if state not in RECEIVES_DATA:
            raise self._remote_stream_violation(stream_id, state, I.RECV_DATA)
        stream.recv.receive(n, stream_id)
        if n:
            events.append(ev.DataReceived(stream_id, payload))

    def _receive_window(self, stream_id: int, increment: int, events: list[ev.Event]) -> None:
        if stream_id == 0:
            self._session_send.grow(increment)
            events.append(ev.WindowUpdated(0))
            return
        stream = self._stream_for(stream_id, I.RECV_WINDOW, "WINDOW")
        if stream is not None:
            stream.send.grow(increment)
            events.append(ev.WindowUpdated(stream_id))

    def _receive_open(
        self, stream_id: int, metadata: Mapping[str, MetadataValue], events: list[ev.Event]
    ) -> None:
        if self.is_local_stream(stream_id):
            raise RemoteProtocolError(
                f"peer opened stream {stream_id}, an id of this side's parity (§5.1)"
            )
        if stream_id <= self._last_peer_id:
            raise RemoteProtocolError(
                f"peer reused stream id {stream_id} (last opened {self._last_peer_id})"
            )
        self._last_peer_id = stream_id
        local = self.local_settings
        refusal: tuple[ErrorCode, str] | None = None
        if self.state is not SessionState.OPEN:
            refusal = (ErrorCode.REFUSED_STREAM, "session is draining after GOAWAY")
        elif self._remote_open >= local.max_streams:
            refusal = (ErrorCode.REFUSED_STREAM, f"limit of {local.max_streams} open streams")
        elif self._pending_opens >= local.max_pending_opens:
            refusal = (
                ErrorCode.REFUSED_STREAM,
                f"limit of {local.max_pending_opens} streams waiting to be accepted",
            )
        else:
            size = len(msgpack.packb(dict(metadata), use_bin_type=True))
            if size > local.max_metadata_size:
                refusal = (
                    ErrorCode.METADATA_TOO_LARGE,
                    f"metadata of {size} bytes exceeds {local.max_metadata_size}",
                )
        if refusal is not None:
            self._queue(Reset(stream_id, *refusal))
            return
        self._streams[stream_id] = _Stream(
            S.SYN_RECEIVED, self.peer_settings.stream_window, self._recv_size(), self._now
        )
        self._remote_open += 1
        self._pending_opens += 1
        events.append(ev.StreamOpened(stream_id, metadata))

    def _receive_hello(self, hello: Hello, now: float, events: list[ev.Event]) -> None:
        if self.role is Role.SERVER:
            common = set(hello.versions) & set(self.config.versions)
            if not common:
                raise RemoteProtocolError(
                    f"peer offered protocol versions {sorted(hello.versions)}; this side "
                    f"speaks {sorted(self.config.versions)}",
                    ErrorCode.UNSUPPORTED_VERSION,
                )
            version = max(common)
            capabilities = tuple(c for c in self.config.capabilities if c in hello.capabilities)
            self._send_hello((version,), capabilities)
        else:
            if len(hello.versions) != 1 or hello.versions[0] not in self.config.versions:
                raise RemoteProtocolError(
                    f"server chose protocol versions {list(hello.versions)}; this side "
                    f"offered {sorted(self.config.versions)}",
                    ErrorCode.UNSUPPORTED_VERSION,
                )
            version = hello.versions[0]
            capabilities = tuple(c for c in hello.capabilities if c in self.config.capabilities)
        self.version = version
        self.capabilities = frozenset(capabilities)
        self.peer_settings = hello.settings
        # The session window starts at the peer's announced size (§6.2); nothing was sent yet.
        self._session_send = SendWindow(hello.settings.session_window)
        self._transition_session(J.RECV_HELLO)
        self._next_ping_at = now + self.ping_interval
        self._now = now
        # a first PING at once: the round-trip time it measures drives window tuning (§6.5)
        self.ping(now)
        events.append(
            ev.HandshakeComplete(version, self.capabilities, hello.settings, dict(hello.info))
        )

    def _receive_goaway(self, frame: GoAway, events: list[ev.Event]) -> None:
        self.peer_going_away = True
        events.append(
            ev.GoAwayReceived(frame.code, frame.last_stream_id, frame.retry_after_ms, frame.message)
        )
        if frame.code in _GRACEFUL and self.state is not SessionState.AWAITING_HELLO:
            self._transition_session(J.RECV_GOAWAY_GRACEFUL)
            # Streams this side opened above last_stream_id never reached the peer's
            # application: they are refused, and safe to retry on another session (§8.2).
            for stream_id in [
                s for s in self._streams if self.is_local_stream(s) and s > frame.last_stream_id
            ]:
                self._forget(stream_id)
                events.append(
                    ev.StreamReset(
                        stream_id, ErrorCode.REFUSED_STREAM, "peer went away before seeing it"
                    )
                )
            return
        # An error GOAWAY, or any GOAWAY before the handshake: the session is over.
        graceful = frame.code in _GRACEFUL
        self._transition_session(J.RECV_GOAWAY_GRACEFUL if graceful else J.RECV_GOAWAY_ERROR)
        self.close_code = frame.code
        self._streams.clear()
        self._next_ping_at = None
        events.append(ev.ConnectionTerminated(frame.code, frame.message, remote=True))
