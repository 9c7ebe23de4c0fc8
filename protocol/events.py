"""What :class:`~protocol.connection.TunnelConnection` tells its driver (PROTOCOL.md §5-§8)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

from protocol.codes import ErrorCode
from protocol.frames import MetadataValue, Settings


@dataclass(frozen=True, slots=True)
class HandshakeComplete:
    """Both HELLOs were exchanged; streams may be opened from now on."""

    version: int
    capabilities: frozenset[str]
    peer_settings: Settings
    peer_info: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The peer opened a stream; accept it or reset it."""

    stream_id: int
    metadata: Mapping[str, MetadataValue]


@dataclass(frozen=True, slots=True)
class StreamAccepted:
    """The peer accepted a stream this side opened."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class DataReceived:
    """Bytes arrived on a stream; call ``acknowledge`` once the application has consumed them."""

    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The peer half-closed the stream: it will send no more data on it."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    """The peer reset the stream, or the connection reset it on the peer's behalf."""

    stream_id: int
    code: ErrorCode
    message: str = ""


@dataclass(frozen=True, slots=True)
class WindowUpdated:
    """More credit to send: on one stream, or on the session when stream_id is 0."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class PongReceived:
    """The answer to our PING; ``rtt`` is in the clock units the driver passes in."""

    rtt: float


@dataclass(frozen=True, slots=True)
class GoAwayReceived:
    """The peer will accept no stream above ``last_stream_id``; open no new streams."""

    code: ErrorCode
    last_stream_id: int
    retry_after_ms: int
    message: str


@dataclass(frozen=True, slots=True)
class ConnectionTerminated:
    """The session is over; send what ``data_to_send`` holds, then close the transport.

    ``remote`` is true when the peer ended it (its GOAWAY carried an error), false when this
    side did (the peer broke the protocol, stopped answering pings, or the application asked).
    """

    code: ErrorCode
    message: str
    remote: bool


Event: TypeAlias = (
    HandshakeComplete
    | StreamOpened
    | StreamAccepted
    | DataReceived
    | StreamEnded
    | StreamReset
    | WindowUpdated
    | PongReceived
    | GoAwayReceived
    | ConnectionTerminated
)
