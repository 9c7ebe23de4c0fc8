"""bench/placement.py runs and reports every placement for both paths (a smoke test: it checks
that the script pins and measures end to end with a real hub and agent and, where OpenSSH is
usable, a real sshd and ``ssh -R``; not what the figures are)."""

from __future__ import annotations

import os

import pytest

from .support import assert_positive, parse, run_quick

PLACEMENTS = {
    "free",
    "A | B, bench free",
    "A | B, bench with A",
    "A | B, bench with B",
    "A + B | bench",
    "all on one CPU",
}
FIGURES = ["continuous_p50_ms", "rounds_p50_ms"]


@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="placement.py pins processes to 2 CPUs: needs sched_setaffinity and 2 CPUs",
)
@pytest.mark.timeout(90)
def test_quick_run_reports_every_placement_for_both_paths() -> None:
    result = parse(run_quick("placement.py", timeout=85))

    assert result["benchmark"] == "placement" and result["mode"] == "quick"
    assert result["cpus"] >= 2
    assert set(result["placements"]) == PLACEMENTS
    # ssh -R is left out only when OpenSSH cannot be used here, and the result says why
    why = result["ssh_unavailable"]
    with_ssh = why is None
    assert with_ssh or "OpenSSH" in why or "sshd" in why, why
    paths = ("tunnel", "ssh") if with_ssh else ("tunnel",)
    for row in result["placements"].values():
        for path in paths:
            assert_positive(row[path], FIGURES)
            assert row[path]["continuous_p50_ms"] < 100 and row[path]["rounds_p50_ms"] < 100
            assert row[path]["relay_cpu_us_per_request"] >= 0  # /proc clock ticks: may be 0
        if not with_ssh:
            assert set(row) == {"tunnel"}
        if with_ssh:
            assert set(row) == {*paths, "tunnel_to_ssh_continuous_p50", "tunnel_to_ssh_rounds_p50"}
            assert_positive(row, ["tunnel_to_ssh_continuous_p50", "tunnel_to_ssh_rounds_p50"])
