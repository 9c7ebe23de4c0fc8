"""Credit-based flow control, pure (PROTOCOL.md §6).

A sender keeps a :class:`SendWindow` per stream plus one for the session and may send
``min(stream.available, session.available)`` bytes. A receiver keeps a :class:`ReceiveWindow`
per stream plus one for the session; it charges every DATA payload against both, and gives
credit back with WINDOW frames once the bytes are acknowledged: by the application for a
stream, on arrival for the session. Only DATA payload bytes count.
"""

from __future__ import annotations

from typing import ClassVar

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

    __slots__ = ("size", "remaining", "unacknowledged", "ungranted", "last_grant")

    def __init__(self, size: int, now: float = 0.0) -> None:
        self.size = size
        self.remaining = size  # what the peer may still send
        self.unacknowledged = 0  # received, not yet consumed by the application
        self.ungranted = 0  # consumed, not yet given back in a WINDOW frame
        self.last_grant = now  # when credit was last given back (the driver's clock)

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

    def acknowledge(self, n: int, now: float = 0.0, tuner: WindowTuner | None = None) -> int:
        """Mark ``n`` received bytes consumed; returns the WINDOW increment to send now, or 0.

        Credit goes back in batches of at least a quarter window, so that one WINDOW frame
        answers many DATA frames while the sender never runs dry with a consumer keeping up.
        With a ``tuner``, a window whose grants come faster than the round trip grows first.
        """
        if not 0 <= n <= self.unacknowledged:
            raise LocalProtocolError(
                f"acknowledging {n} bytes but only {self.unacknowledged} are unacknowledged"
            )
        self.unacknowledged -= n
        self.ungranted += n
        if self.ungranted >= self.size // 4:
            if tuner is not None:
                tuner.maybe_grow(self, now)
            self.last_grant = now
            return self.grant()
        return 0

    def grant(self) -> int:
        increment = self.ungranted
        self.remaining += increment
        self.ungranted = 0
        return increment


class WindowTuner:
    """Grows the receive windows of streams that are limited by them (PROTOCOL.md §6.5).

    A stream whose credit is given back twice within two round trips is moving data as fast
    as its window lets it, and its consumer keeps up: its window doubles, up to ``max_size``.
    Windows of streams whose reader stalls never grow (they give no credit back), and all the
    growth of one session comes out of one ``budget``, so the bytes a peer can make this side
    buffer stay bounded: base windows plus the budget.
    """

    __slots__ = ("rtt", "max_size", "budget", "base_size")

    def __init__(self, base_size: int, max_size: int, budget: int) -> None:
        self.rtt: float | None = None
        self.base_size = base_size
        self.max_size = max_size
        self.budget = budget

    #: round-trip times below this are taken as this: a clock or a link that fast says nothing
    #: useful about whether a window is the limit
    MIN_RTT: ClassVar[float] = 0.001

    def maybe_grow(self, window: ReceiveWindow, now: float) -> None:
        if self.rtt is None:
            return
        if now - window.last_grant >= 2 * max(self.rtt, self.MIN_RTT):
            return
        extra = min(window.size, self.max_size - window.size, self.budget)
        if extra <= 0:
            return
        self.budget -= extra
        window.size += extra
        window.ungranted += extra  # granted with the next WINDOW frame

    def release(self, window: ReceiveWindow) -> None:
        """A stream ended: its growth goes back to the session's budget."""
        self.budget += max(0, window.size - self.base_size)
