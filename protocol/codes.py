"""Wire codes: frame types and error codes (PROTOCOL.md §3 and §10).

They live apart from :mod:`protocol.frames` so that :mod:`protocol.exceptions` can carry them
without an import cycle; :mod:`protocol.frames` re-exports both.
"""

from __future__ import annotations

from enum import IntEnum


class FrameType(IntEnum):
    """The first element of every frame (PROTOCOL.md §3)."""

    HELLO = 0
    OPEN = 1
    ACCEPT = 2
    DATA = 3
    FIN = 4
    RESET = 5
    WINDOW = 6
    PING = 7
    PONG = 8
    GOAWAY = 9


class ErrorCode(IntEnum):
    """Reasons carried by RESET (one stream) and GOAWAY (the session), PROTOCOL.md §10."""

    NO_ERROR = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2
    FLOW_CONTROL_ERROR = 3
    FRAME_TOO_LARGE = 4
    UNSUPPORTED_VERSION = 5
    STREAM_CLOSED = 6
    REFUSED_STREAM = 7
    CANCEL = 8
    DESTINATION_NOT_ALLOWED = 9
    CONNECT_FAILED = 10
    DEADLINE_EXCEEDED = 11
    UNAUTHORIZED = 12
    SHUTTING_DOWN = 13
    PEER_UNRESPONSIVE = 14
    METADATA_TOO_LARGE = 15

    @classmethod
    def from_wire(cls, value: int) -> ErrorCode:
        """An unknown code is read as INTERNAL_ERROR, never as a protocol error (§10)."""
        try:
            return cls(value)
        except ValueError:
            return cls.INTERNAL_ERROR
