"""Every state transition of the protocol, in one place (PROTOCOL.md §5 and §4).

Two tables: one for a stream, one for the session. Each maps ``(state, input) -> next state``;
an input with no entry for the current state is forbidden. For the local side that is a bug in
the caller (:class:`~protocol.exceptions.LocalProtocolError`); for the remote side it is a
protocol error whose code :func:`remote_violation_code` gives.

Stream states, named from this side's point of view::

    opener: open_stream() -> SYN_SENT     acceptor: OPEN received -> SYN_RECEIVED
    (SYN_RECV_R_CLOSED below is SYN_RECEIVED_REMOTE_CLOSED)

      SYN_SENT --send FIN--> SYN_SENT_LOCAL_CLOSED     SYN_RECEIVED --recv FIN--> SYN_RECV_R_CLOSED
         | recv ACCEPT          | recv ACCEPT             | send ACCEPT            | send ACCEPT
         v                      v                         v                        v
       OPEN                 LOCAL_CLOSED                OPEN                   REMOTE_CLOSED

    OPEN --send FIN--> LOCAL_CLOSED --recv FIN--> CLOSED
    OPEN --recv FIN--> REMOTE_CLOSED --send FIN--> CLOSED
    any live state --send or recv RESET--> CLOSED

A stream in CLOSED is forgotten by the connection.
"""

from __future__ import annotations

from enum import Enum

from protocol.codes import ErrorCode


class StreamState(Enum):
    # members are singletons: identity hashing is correct and skips Enum's Python __hash__
    __hash__ = object.__hash__

    SYN_SENT = "syn-sent"
    SYN_SENT_LOCAL_CLOSED = "syn-sent-local-closed"
    SYN_RECEIVED = "syn-received"
    SYN_RECEIVED_REMOTE_CLOSED = "syn-received-remote-closed"
    OPEN = "open"
    LOCAL_CLOSED = "local-closed"
    REMOTE_CLOSED = "remote-closed"
    CLOSED = "closed"


class StreamInput(Enum):
    # members are singletons: identity hashing is correct and skips Enum's Python __hash__
    __hash__ = object.__hash__

    SEND_OPEN = "send-open"
    RECV_OPEN = "recv-open"
    SEND_ACCEPT = "send-accept"
    RECV_ACCEPT = "recv-accept"
    SEND_DATA = "send-data"
    RECV_DATA = "recv-data"
    SEND_FIN = "send-fin"
    RECV_FIN = "recv-fin"
    SEND_RESET = "send-reset"
    RECV_RESET = "recv-reset"
    SEND_WINDOW = "send-window"
    RECV_WINDOW = "recv-window"


S = StreamState
I = StreamInput  # noqa: E741 - a table reads better with one-letter names

#: (state, input) -> next state. Everything not listed is forbidden.
STREAM_TRANSITIONS: dict[tuple[StreamState, StreamInput], StreamState] = {
    # A stream is born from an OPEN, sent or received (the "state" before it is None).
    # The opener may send DATA and FIN before the ACCEPT arrives (§5.2).
    (S.SYN_SENT, I.SEND_DATA): S.SYN_SENT,
    (S.SYN_SENT, I.SEND_FIN): S.SYN_SENT_LOCAL_CLOSED,
    (S.SYN_SENT, I.RECV_ACCEPT): S.OPEN,
    (S.SYN_SENT, I.RECV_WINDOW): S.SYN_SENT,
    (S.SYN_SENT_LOCAL_CLOSED, I.RECV_ACCEPT): S.LOCAL_CLOSED,
    (S.SYN_SENT_LOCAL_CLOSED, I.RECV_WINDOW): S.SYN_SENT_LOCAL_CLOSED,
    # The acceptor receives early DATA and FIN, but sends nothing but ACCEPT or RESET first.
    (S.SYN_RECEIVED, I.RECV_DATA): S.SYN_RECEIVED,
    (S.SYN_RECEIVED, I.RECV_FIN): S.SYN_RECEIVED_REMOTE_CLOSED,
    (S.SYN_RECEIVED, I.SEND_ACCEPT): S.OPEN,
    (S.SYN_RECEIVED, I.SEND_WINDOW): S.SYN_RECEIVED,
    (S.SYN_RECEIVED_REMOTE_CLOSED, I.SEND_ACCEPT): S.REMOTE_CLOSED,
    (S.OPEN, I.SEND_DATA): S.OPEN,
    (S.OPEN, I.RECV_DATA): S.OPEN,
    (S.OPEN, I.SEND_FIN): S.LOCAL_CLOSED,
    (S.OPEN, I.RECV_FIN): S.REMOTE_CLOSED,
    (S.OPEN, I.SEND_WINDOW): S.OPEN,
    (S.OPEN, I.RECV_WINDOW): S.OPEN,
    (S.LOCAL_CLOSED, I.RECV_DATA): S.LOCAL_CLOSED,
    (S.LOCAL_CLOSED, I.RECV_FIN): S.CLOSED,
    (S.LOCAL_CLOSED, I.SEND_WINDOW): S.LOCAL_CLOSED,
    (S.LOCAL_CLOSED, I.RECV_WINDOW): S.LOCAL_CLOSED,
    (S.REMOTE_CLOSED, I.SEND_DATA): S.REMOTE_CLOSED,
    (S.REMOTE_CLOSED, I.SEND_FIN): S.CLOSED,
    (S.REMOTE_CLOSED, I.RECV_WINDOW): S.REMOTE_CLOSED,
}
# RESET, sent or received, ends a stream from any live state (§5.5).
for _state in StreamState:
    if _state is not S.CLOSED:
        STREAM_TRANSITIONS[(_state, I.SEND_RESET)] = S.CLOSED
        STREAM_TRANSITIONS[(_state, I.RECV_RESET)] = S.CLOSED

#: States in which DATA may be sent, and received (neither changes the state), read off the
#: table above: the checks of every DATA frame.
SENDS_DATA = frozenset(state for state, event in STREAM_TRANSITIONS if event is I.SEND_DATA)
RECEIVES_DATA = frozenset(state for state, event in STREAM_TRANSITIONS if event is I.RECV_DATA)
assert all(STREAM_TRANSITIONS[(s, I.SEND_DATA)] is s for s in SENDS_DATA)
assert all(STREAM_TRANSITIONS[(s, I.RECV_DATA)] is s for s in RECEIVES_DATA)

#: States in which the peer has said it sends no more DATA: DATA or FIN there is STREAM_CLOSED.
_REMOTE_FINISHED = frozenset({S.SYN_RECEIVED_REMOTE_CLOSED, S.REMOTE_CLOSED})


def stream_transition(state: StreamState, event: StreamInput) -> StreamState | None:
    """The next state, or None when ``event`` is forbidden in ``state``."""
    return STREAM_TRANSITIONS.get((state, event))


def remote_violation_code(state: StreamState, event: StreamInput) -> ErrorCode:
    """The GOAWAY code for a frame the peer was not allowed to send in ``state`` (§5.6)."""
    if state in _REMOTE_FINISHED and event in (I.RECV_DATA, I.RECV_FIN):
        return ErrorCode.STREAM_CLOSED
    return ErrorCode.PROTOCOL_ERROR


class SessionState(Enum):
    # members are singletons: identity hashing is correct and skips Enum's Python __hash__
    __hash__ = object.__hash__

    #: waiting for the peer's HELLO (client: after sending its own; server: before answering)
    AWAITING_HELLO = "awaiting-hello"
    OPEN = "open"
    #: this side sent a graceful GOAWAY: existing streams finish, no new ones are accepted
    DRAINING = "draining"
    CLOSED = "closed"


class SessionInput(Enum):
    # members are singletons: identity hashing is correct and skips Enum's Python __hash__
    __hash__ = object.__hash__

    RECV_HELLO = "recv-hello"
    RECV_STREAM_FRAME = "recv-stream-frame"  # OPEN ACCEPT DATA FIN RESET WINDOW
    RECV_PING = "recv-ping"
    RECV_GOAWAY_GRACEFUL = "recv-goaway-graceful"
    RECV_GOAWAY_ERROR = "recv-goaway-error"
    SEND_GOAWAY_GRACEFUL = "send-goaway-graceful"
    SEND_GOAWAY_ERROR = "send-goaway-error"
    PEER_UNRESPONSIVE = "peer-unresponsive"


Q = SessionState
J = SessionInput

SESSION_TRANSITIONS: dict[tuple[SessionState, SessionInput], SessionState] = {
    (Q.AWAITING_HELLO, J.RECV_HELLO): Q.OPEN,
    (Q.AWAITING_HELLO, J.RECV_GOAWAY_GRACEFUL): Q.CLOSED,  # refused before it began
    (Q.AWAITING_HELLO, J.RECV_GOAWAY_ERROR): Q.CLOSED,
    (Q.AWAITING_HELLO, J.SEND_GOAWAY_ERROR): Q.CLOSED,
    (Q.AWAITING_HELLO, J.SEND_GOAWAY_GRACEFUL): Q.CLOSED,
    (Q.AWAITING_HELLO, J.PEER_UNRESPONSIVE): Q.CLOSED,
    (Q.OPEN, J.RECV_STREAM_FRAME): Q.OPEN,
    (Q.OPEN, J.RECV_PING): Q.OPEN,
    (Q.OPEN, J.RECV_GOAWAY_GRACEFUL): Q.OPEN,  # we may not open streams; theirs go on
    (Q.OPEN, J.RECV_GOAWAY_ERROR): Q.CLOSED,
    (Q.OPEN, J.SEND_GOAWAY_GRACEFUL): Q.DRAINING,
    (Q.OPEN, J.SEND_GOAWAY_ERROR): Q.CLOSED,
    (Q.OPEN, J.PEER_UNRESPONSIVE): Q.CLOSED,
    (Q.DRAINING, J.RECV_STREAM_FRAME): Q.DRAINING,
    (Q.DRAINING, J.RECV_PING): Q.DRAINING,
    (Q.DRAINING, J.RECV_GOAWAY_GRACEFUL): Q.DRAINING,
    (Q.DRAINING, J.RECV_GOAWAY_ERROR): Q.CLOSED,
    (Q.DRAINING, J.SEND_GOAWAY_GRACEFUL): Q.DRAINING,
    (Q.DRAINING, J.SEND_GOAWAY_ERROR): Q.CLOSED,
    (Q.DRAINING, J.PEER_UNRESPONSIVE): Q.CLOSED,
}


def session_transition(state: SessionState, event: SessionInput) -> SessionState | None:
    """The next session state, or None when ``event`` is forbidden in ``state``."""
    return SESSION_TRANSITIONS.get((state, event))
