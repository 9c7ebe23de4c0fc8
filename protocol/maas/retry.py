"""When to try a MAAS request again, and how long to wait first.

MAAS says "come back later" two ways: 503 (the region is starting, or out of a resource) and
409 with a ``Retry-After`` header (a database serialization conflict it wants the client to
repeat). Both are retried here with capped exponential backoff; when MAAS names a delay we wait
at least that long, still capped, so a confused server cannot park a client for an hour.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["RetryPolicy", "is_retryable_status", "parse_retry_after"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``attempts`` counts every request, the first included; delays are in seconds."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be >= 1, got {self.attempts}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError(
                "RetryPolicy delays must be >= 0, got "
                f"base_delay={self.base_delay} max_delay={self.max_delay}"
            )

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to sleep after failed attempt number ``attempt`` (1-based)."""
        backoff = min(self.max_delay, self.base_delay * (2.0 ** (attempt - 1)))
        if self.jitter:
            backoff *= random.uniform(0.5, 1.0)
        if retry_after is not None:
            backoff = max(backoff, retry_after)
        return min(self.max_delay, backoff)


def is_retryable_status(status: int, retry_after: float | None) -> bool:
    """503 always; 409 only when MAAS sent Retry-After (otherwise it is a real conflict)."""
    return status == 503 or (status == 409 and retry_after is not None)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now or datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())
