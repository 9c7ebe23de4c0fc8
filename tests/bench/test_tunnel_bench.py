"""bench/tunnel.py runs and reports every figure (a smoke test: it checks that the script runs
end to end with a real hub and agent, not that the targets are met)."""

from __future__ import annotations

import math

import pytest

from .support import assert_finite, assert_positive, parse, run_quick

BULK_KEYS = {
    "tunnel_mb_per_s",
    "direct_asyncio_mb_per_s",
    "ratio_tunnel_to_raw",
}
LATENCY_KEYS = {"n", "p50_ms", "p99_ms", "mean_ms"}


@pytest.mark.timeout(60)
def test_quick_run_reports_every_figure() -> None:
    result = parse(run_quick("tunnel.py", timeout=55))

    assert result["benchmark"] == "tunnel"
    assert result["mode"] == "quick"
    assert result["targets"] == {
        "bulk_ratio_min": 0.05,
        "p50_added_ms_max": 0.3,
        "idle_stream_bytes_max": 8192,
    }
    assert set(result["ok"]) >= {"bulk_ratio", "p50_added", "idle_stream", "all"}
    assert all(isinstance(v, bool) for v in result["ok"].values())

    loops = result["loops"]
    assert "asyncio" in loops
    if result["uvloop"] is not None:
        assert set(loops) == {"uvloop", "asyncio"}
    for loop in loops.values():
        bulk = loop["bulk"]
        assert_positive(bulk, {"bytes", "raw_copy_mb_per_s"})
        for direction in ("download", "upload"):
            assert_positive(bulk[direction], BULK_KEYS)
        latency = loop["latency"]
        for mode in ("keepalive", "new_stream"):
            for concurrency in ("c1", "c100"):
                row = latency[mode][concurrency]
                assert_positive(row["direct"], LATENCY_KEYS)
                assert_positive(row["tunnel"], LATENCY_KEYS)
                assert_positive(row, {"direct_requests_per_s", "tunnel_requests_per_s"})
                assert_finite(row["added_p50_ms"])  # may be negative on a noisy machine
                assert_finite(row["added_p99_ms"])
        assert_positive(loop["requests_per_s_c100"], {"direct", "tunnel", "ratio_tunnel_to_direct"})
        checks = loop["checks"]
        assert_positive(checks, {"bulk_ratio"})
        assert_finite(checks["p50_added_ms"])
        assert isinstance(checks["bulk_ratio_ok"], bool)
        assert isinstance(checks["p50_added_ok"], bool)

    idle = result["idle_streams"]["tunnel_only"]
    assert idle["streams"] > 0
    for end in ("server_end", "client_end"):
        assert idle[end]["open_streams"] >= idle["streams"]
        assert_positive(idle[end], {"bytes_per_stream"})
        rss = idle[end]["rss_bytes_per_stream"]  # a cross-check; None without /proc
        assert rss is None or isinstance(rss, int | float)
    assert isinstance(idle["ok"], bool)

    relay = result["idle_streams"]["relay"]
    assert relay["streams"] > 0
    assert relay["open_streams_at_hub"] in (relay["streams"], -1)
    for key in ("hub_rss_bytes_per_stream", "agent_rss_bytes_per_stream"):
        value = relay[key]
        assert value is None or (isinstance(value, int | float) and math.isfinite(value))
