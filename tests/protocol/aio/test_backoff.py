"""Reconnect backoff: full jitter between a floor and an exponential, capped ceiling."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.aio.backoff import Backoff, BackoffPolicy


@given(
    base=st.floats(0.01, 5),
    factor=st.floats(1, 100),
    failures=st.integers(0, 200),
    seed=st.integers(0, 2**32),
)
def test_every_delay_is_between_base_and_the_capped_exponential(
    base: float, factor: float, failures: int, seed: int
) -> None:
    policy = BackoffPolicy(base=base, cap=base * factor)
    backoff = Backoff(policy, random.Random(seed))
    for n in range(failures):
        delay = backoff.next_delay()
        assert base <= delay <= min(policy.cap, base * 2**n) + 1e-9


def test_delays_grow_then_reset_after_a_long_connection() -> None:
    backoff = Backoff(BackoffPolicy(base=1, cap=64, reset_after=30), random.Random(7))
    ceilings = []
    for _ in range(8):
        backoff.next_delay()
        ceilings.append(min(64, 2 ** (backoff.failures - 1)))
    assert ceilings == [1, 2, 4, 8, 16, 32, 64, 64]
    backoff.connection_lasted(5)  # short: still backing off
    assert backoff.failures == 8
    backoff.connection_lasted(30)
    assert backoff.failures == 0 and backoff.next_delay() == 1


def test_retry_after_is_a_lower_bound() -> None:
    backoff = Backoff(BackoffPolicy(base=0.1, cap=0.2))
    assert backoff.next_delay(retry_after=5.0) == 5.0


def test_full_jitter_spreads_a_fleet() -> None:
    delays = [Backoff(BackoffPolicy(1, 60), random.Random(i)) for i in range(200)]
    for backoff in delays:
        for _ in range(6):
            last = backoff.next_delay()
    spread = {round(b.next_delay(), 1) for b in delays}
    assert len(spread) > 100, "200 agents must not reconnect in lock-step"
    assert last > 0


def test_invalid_policies_say_what_to_fix() -> None:
    with pytest.raises(ValueError, match="base=5 cap=1"):
        BackoffPolicy(base=5, cap=1)
    assert BackoffPolicy(0.5, 10).max_attempts(5.0) == 11
