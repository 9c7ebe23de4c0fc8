"""bench/protocol_core.py runs and reports every figure (a smoke test, not a timed test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "bench" / "protocol_core.py"

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


def run_quick() -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)  # exactly one JSON object, nothing else
    assert isinstance(result, dict)
    return result


def assert_positive(row: dict[str, Any], keys: set[str]) -> None:
    missing = keys - row.keys()
    assert not missing, f"missing keys {sorted(missing)} in {row}"
    for key in keys:
        value = row[key]
        assert isinstance(value, int | float) and not isinstance(value, bool), (key, value)
        assert value > 0, (key, value)


def test_quick_run_reports_every_figure() -> None:
    result = run_quick()

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
