"""bench/native.py runs a compiled and a pure-Python tunnel side by side and reports every
figure for both (a smoke test: that both builds really run and are measured end to end; not
what the figures are)."""

from __future__ import annotations

import pytest

import protocol

from .support import assert_positive, parse, run_quick

SECTIONS = {
    "c1_free": ["p50_ms"],
    "c1_one_cpu": ["p50_ms"],
    "c100": ["requests_per_s"],
    "bulk_download": ["mb_per_s"],
    "bulk_upload": ["mb_per_s"],
}


@pytest.mark.skipif(
    not protocol.NATIVE.compiled,
    reason=f"needs the compiled build (make native); {protocol.NATIVE}",
)
@pytest.mark.timeout(120)
def test_quick_run_measures_both_builds() -> None:
    result = parse(run_quick("native.py", timeout=110))

    assert result["benchmark"] == "native" and result["mode"] == "quick"
    expected = set(SECTIONS) if result["one_cpu_measured"] else set(SECTIONS) - {"c1_one_cpu"}
    assert {key for key in result if key in SECTIONS} == expected
    for section in expected:
        row = result[section]
        assert set(row) == {"compiled", "pure", "compiled_to_pure"}
        for build in ("compiled", "pure"):
            assert_positive(row[build], SECTIONS[section])
        assert_positive(row["compiled_to_pure"], SECTIONS[section])
