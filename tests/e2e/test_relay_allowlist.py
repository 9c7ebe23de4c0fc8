"""Deny by default: relays to 127.0.0.1:22 and 169.254.169.254:80 are refused and nothing
connects. Runs in a network namespace of the test's own, so that the link-local address is a
listener the test made, never a real metadata service."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.netns import namespace, netns_unavailable

ROOT = Path(__file__).resolve().parents[2]


def test_refused_destinations_are_reset_and_never_connected(tmp_path: Path) -> None:
    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)
    with namespace(("169.254.169.254/32",)) as ns:
        probe = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "tests.support.relay_probe",
             str(tmp_path)],
            capture_output=True, text=True, timeout=120, cwd=ROOT,
        )  # fmt: skip
    assert probe.returncode == 0, probe.stderr[-3000:]
    report = json.loads(probe.stdout.strip().splitlines()[-1])
    for target in ("127.0.0.1:22", "169.254.169.254:80"):
        assert report[target].startswith("403 DESTINATION_NOT_ALLOWED"), report[target]
        assert "not on this gateway's relay allowlist" in report[target]
        assert report["accepted"][target] == 0, f"something connected to {target}"
        assert "relay refused stream=" in report["agent_log"]
        assert f"destination={target} reason=not-on-allowlist" in report["agent_log"]
    assert report["allowed"] == "ok"
