"""bench/protocol_core.py runs and reports every figure (a smoke test, not a timed test)."""

from __future__ import annotations

from .support import assert_positive, parse, run_quick

BULK_KEYS = {
    "frame_size",
    "frames",
    "core_frames_per_s",
    "core_mb_per_s",
    "raw_frames_per_s",
    "raw_mb_per_s",
    "ratio_core_to_raw",
}
CONTROL_KEYS = {
    "in_flight",
    "streams",
    "core_streams_per_s",
    "core_frames_per_s",
    "raw_streams_per_s",
    "raw_frames_per_s",
    "ratio_core_to_raw",
}
IDLE_KEYS = {
    "streams_per_side",
    "client_bytes_per_stream",
    "server_bytes_per_stream",
    "both_sides_bytes_per_stream",
    "rss_delta_both_sides_bytes_per_stream",
}


def test_quick_run_reports_every_figure() -> None:
    result = parse(run_quick("protocol_core.py", timeout=120))

    assert result["mode"] == "quick"
    sizes = [row["frame_size"] for row in result["bulk"]]
    assert sizes == [1024, 16 * 1024, 64 * 1024]
    for row in result["bulk"]:
        assert_positive(row, BULK_KEYS)
    assert [row["in_flight"] for row in result["control"]] == [1, 100]
    for row in result["control"]:
        assert_positive(row, CONTROL_KEYS)

    idle = result["idle_streams"]
    assert_positive(idle, IDLE_KEYS - {"rss_delta_both_sides_bytes_per_stream"})
    assert idle["streams_per_side"] == 10_000
    # VmRSS is a cross-check only: absent without /proc, and pymalloc may reuse freed arenas.
    rss = idle["rss_delta_both_sides_bytes_per_stream"]
    assert rss is None or isinstance(rss, int | float)

    assert result["idle_stream_bytes_target"] == 4096
    assert idle["client_bytes_per_stream"] <= 4096
    assert idle["server_bytes_per_stream"] <= 4096
    assert result["idle_stream_ok"] is True
