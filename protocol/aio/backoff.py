"""Reconnect pacing: capped exponential backoff with full jitter, and a floor.

Each failed attempt ``n`` (from 0) waits ``uniform(floor, min(cap, base * 2**n))`` seconds.
Full jitter spreads a fleet of agents that lost the same hub (no reconnect storm); the floor
(``base``) bounds how often one agent can knock. A connection that stayed up for
``reset_after`` seconds resets the sequence. A GOAWAY's retry-after is a lower bound.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    base: float = 0.5
    cap: float = 10.0
    reset_after: float = 30.0

    def __post_init__(self) -> None:
        if not 0 < self.base <= self.cap:
            raise ValueError(
                f"backoff needs 0 < base <= cap, got base={self.base} cap={self.cap}; "
                "set backoff_base and backoff_cap accordingly"
            )
        if self.reset_after < 0:
            raise ValueError(f"backoff reset_after={self.reset_after} must be >= 0")

    def max_attempts(self, window: float) -> int:
        """The most attempts this policy can make in ``window`` seconds (every wait >= base)."""
        return int(window // self.base) + 1


class Backoff:
    """The delays of one agent's reconnect loop."""

    def __init__(self, policy: BackoffPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self, retry_after: float = 0.0) -> float:
        """Seconds to wait before the next attempt, after a failed or ended connection."""
        policy = self.policy
        ceiling = min(policy.cap, policy.base * 2 ** min(self.failures, 62))
        self.failures += 1
        return max(retry_after, self._rng.uniform(policy.base, ceiling))

    def connection_lasted(self, seconds: float) -> None:
        """A session ended after ``seconds``: a long one means the path is healthy again."""
        if seconds >= self.policy.reset_after:
            self.failures = 0
