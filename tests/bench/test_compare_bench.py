"""bench/compare.py runs and reports every figure (a smoke test: it checks that the script runs
end to end with a real hub and agent and a real sshd and ``ssh -R``, not that the targets are
met)."""

from __future__ import annotations

import pytest

from .support import assert_finite, assert_positive, parse, run_quick

#: bench/compare.py exits with this when sshd or ssh is missing, saying why on stderr
EXIT_NO_OPENSSH = 77
PATHS = ("direct", "tunnel", "ssh")
LATENCY_KEYS = {"n", "p50_ms", "p99_ms", "mean_ms", "requests_per_s"}


@pytest.mark.timeout(90)
def test_quick_run_reports_every_figure() -> None:
    completed = run_quick("compare.py", timeout=80)
    if completed.returncode == EXIT_NO_OPENSSH:
        pytest.skip(completed.stderr.strip() or "OpenSSH (sshd, ssh) is not usable here")
    result = parse(completed)

    assert result["benchmark"] == "compare"
    assert result["mode"] == "quick"
    assert result["targets"] == {"bulk_vs_ssh_min": 0.5, "p50_vs_ssh_max": 1.5}
    assert set(result["ok"]) == {"bulk_vs_ssh", "p50_vs_ssh", "all"}
    assert all(isinstance(v, bool) for v in result["ok"].values())
    assert_positive(result["checks"], ("bulk_vs_ssh", "p50_vs_ssh", "p50_vs_ssh_c100"))
    assert isinstance(result["checks"]["bulk_goal_1x_met"], bool)
    assert result["bench_loop"] in ("uvloop", "asyncio")
    assert result["hub_agent_loop"] in ("uvloop", "asyncio")
    assert result["openssh"]["cipher"]  # what the SSH connection negotiated
    assert result["openssh"]["compression"] == "none"

    bulk = result["bulk"]
    assert_positive(bulk, ("bytes", "rounds"))
    for direction in ("download", "upload"):
        row = bulk[direction]
        assert_positive(row, tuple(f"{p}_mb_per_s" for p in PATHS))
        assert_positive(row, ("tunnel_to_ssh", "tunnel_to_direct", "ssh_to_direct"))
        for value in row["relay_cpu_s_per_gb"].values():  # /proc clock ticks: may be 0
            assert_finite(value)
            assert value >= 0

    latency = result["latency"]
    for mode in ("keepalive", "new_connection"):
        for concurrency in ("c1", "c100"):
            row = latency[mode][concurrency]
            for path in PATHS:
                assert_positive(row[path], LATENCY_KEYS)
            assert_positive(row, ("tunnel_to_ssh_p50", "tunnel_to_ssh_p99"))
            assert_positive(row, ("tunnel_to_ssh_requests_per_s",))
            assert_finite(row["tunnel_added_p50_ms"])  # may be negative on a noisy machine
            assert_finite(row["ssh_added_p50_ms"])
            assert set(row["relay_cpu_us_per_request"]) == {"tunnel", "ssh"}
    assert_positive(
        latency["requests_per_s_c100"],
        (*PATHS, "tunnel_to_ssh", "tunnel_to_direct", "ssh_to_direct"),
    )
