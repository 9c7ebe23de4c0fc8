"""bench/placement.py runs and reports every placement (a smoke test: it checks that the script
pins and measures end to end with a real hub and agent, not what the figures are)."""

from __future__ import annotations

import os

import pytest

from .support import assert_positive, parse, run_quick


@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="placement.py pins processes to 2 CPUs: needs sched_setaffinity and 2 CPUs",
)
@pytest.mark.timeout(60)
def test_quick_run_reports_every_placement() -> None:
    result = parse(run_quick("placement.py", timeout=55))

    assert result["benchmark"] == "placement" and result["mode"] == "quick"
    assert result["cpus"] >= 2
    assert set(result["placements"]) == {
        "free",
        "hub | agent, bench free",
        "hub | agent, bench with hub",
        "hub | agent, bench with agent",
        "hub + agent | bench",
    }
    for row in result["placements"].values():
        assert_positive(row, ["continuous_p50_ms", "rounds_p50_ms"])
        assert row["continuous_p50_ms"] < 100 and row["rounds_p50_ms"] < 100, row
