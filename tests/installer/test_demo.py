"""`make demo` runs to its summary on the built-in simulators."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_to_ok() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "installer.demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pcg demo: OK" in result.stdout
    assert "MAAS API through the tunnel" in result.stdout
