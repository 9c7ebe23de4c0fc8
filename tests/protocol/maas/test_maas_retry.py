"""Backoff and Retry-After parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from protocol.maas import RetryPolicy
from protocol.maas.retry import is_retryable_status, parse_retry_after


def test_backoff_doubles_and_is_capped() -> None:
    policy = RetryPolicy(attempts=10, base_delay=0.5, max_delay=3.0, jitter=False)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_retry_after_is_a_floor_but_still_capped() -> None:
    policy = RetryPolicy(base_delay=0.1, max_delay=5.0, jitter=False)
    assert policy.delay(1, retry_after=2.0) == 2.0
    assert policy.delay(1, retry_after=3600.0) == 5.0


def test_jitter_stays_within_half_to_full_backoff() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=10.0, jitter=True)
    delays = [policy.delay(3) for _ in range(50)]
    assert all(2.0 <= delay <= 4.0 for delay in delays)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("5", 5.0), (" 10 ", 10.0), ("0", 0.0), ("-3", 0.0), ("", None), (None, None), ("soon", None)],
)
def test_parse_retry_after_seconds(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds


def test_parse_retry_after_http_date() -> None:
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(later, now=now) == 30.0


def test_which_statuses_are_retried() -> None:
    assert is_retryable_status(503, None)
    assert is_retryable_status(409, 5.0)
    assert not is_retryable_status(409, None)
    assert not is_retryable_status(500, 5.0)


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="attempts must be >= 1"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="delays must be >= 0"):
        RetryPolicy(base_delay=-1)
