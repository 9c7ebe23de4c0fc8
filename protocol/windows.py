"""Credit-based flow control, pure (PROTOCOL.md §6).

A sender keeps a :class:`SendWindow` per stream plus one for the session and may send
``min(stream.available, session.available)`` bytes. A receiver keeps a :class:`ReceiveWindow`
per stream plus one for the session; it charges every DATA payload against both, and gives
credit back with WINDOW frames once the bytes are acknowledged: by the application for a
stream, on arrival for the session. Only DATA payload bytes count.
"""

from __future__ import annotations

from protocol.codes import ErrorCode
from protocol.exceptions import LocalProtocolError, RemoteProtocolError
from protocol.frames import MAX_WINDOW


class SendWindow:
    """How many more payload bytes this side may send before the peer grants more."""

    __slots__ = ("available",)

    def __init__(self, initial: int) -> None:
        self.available = initial

    def consume(self, n: int) -> None:
        if n > self.available:
            raise LocalProtocolError(f"sending {n} bytes with only {self.available} of credit")
        self.available -= n

    def grow(self, increment: int) -> None:
        """Apply the peer's WINDOW frame; credit beyond 2**31-1 is a flow-control error."""
        if increment == 0:
            raise RemoteProtocolError("WINDOW increment of 0", ErrorCode.PROTOCOL_ERROR)
        if self.available + increment > MAX_WINDOW:
            raise RemoteProtocolError(
                f"WINDOW increment {increment} would raise credit to "
                f"{self.available + increment}, above {MAX_WINDOW}",
                ErrorCode.FLOW_CONTROL_ERROR,
            )
        self.available += increment


class ReceiveWindow:
    """The peer's credit as this side sees it, and the acknowledgements not yet granted back.

    Invariant: ``remaining + unacknowledged + ungranted == size``.
    """

    __slots__ = ("size", "remaining", "unacknowledged", "ungranted")

    def __init__(self, size: int) -> None:
        self.size = size
        self.remaining = size  # what the peer may still send
        self.unacknowledged = 0  # received, not yet consumed by the application
        self.ungranted = 0  # consumed, not yet given back in a WINDOW frame

    def receive(self, n: int, stream_id: int) -> None:
        """Charge ``n`` arriving bytes (stream_id 0: the session window)."""
        if n > self.remaining:
            what = "session" if stream_id == 0 else f"stream {stream_id}"
            raise RemoteProtocolError(
                f"{what}: peer sent {n} bytes with only {self.remaining} of credit",
                ErrorCode.FLOW_CONTROL_ERROR,
            )
        self.remaining -= n
        self.unacknowledged += n

    def acknowledge(self, n: int) -> int:
        """Mark ``n`` received bytes consumed; returns the WINDOW increment to send now, or 0.

        Credit goes back in batches of at least a quarter window, so that one WINDOW frame
        answers many DATA frames while the sender never runs dry with a consumer keeping up.
        """
        if not 0 <= n <= self.unacknowledged:
            raise LocalProtocolError(
                f"acknowledging {n} bytes but only {self.unacknowledged} are unacknowledged"
            )
        self.unacknowledged -= n
        self.ungranted += n
        if self.ungranted >= self.size // 4:
            return self.grant()
        return 0

    def grant(self) -> int:
        increment = self.ungranted
        self.remaining += increment
        self.ungranted = 0
        return increment
