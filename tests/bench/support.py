"""What the bench smoke tests share: run a script in --quick --json mode, check its figures."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_quick(script: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / script), "--quick", "--json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def parse(completed: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout)  # exactly one JSON object, nothing else
    assert isinstance(result, dict)
    return result


def assert_finite(value: Any) -> None:
    assert isinstance(value, int | float) and not isinstance(value, bool), value
    assert math.isfinite(value), value


def assert_positive(row: dict[str, Any], keys: Iterable[str]) -> None:
    wanted = set(keys)
    missing = wanted - row.keys()
    assert not missing, f"missing keys {sorted(missing)} in {row}"
    for key in wanted:
        assert_finite(row[key])
        assert row[key] > 0, (key, row[key])
