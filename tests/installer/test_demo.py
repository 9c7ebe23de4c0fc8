"""`make demo` runs to its summary on the built-in simulators, and stops everything it started."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if text.encode() in cmdline:
                found.append(cmdline.decode(errors="replace"))
    return found


@pytest.mark.timeout(120)
def test_demo_installs_a_gateway_and_a_tenant_cluster() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PCG_")}
    result = subprocess.run(
        [sys.executable, "-m", "installer.demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "pcg demo: OK" in out
    assert "Gateway demo-pcg is Running." in out  # the installer's own summary
    summary = out.split("\nSummary\n", 1)[1]
    assert re.search(r"gateway\s+demo-pcg Running", summary)
    assert len(re.findall(r"\n\s+node\s+\S+ \S+ 10\.20\.0\.\d+ Deployed", summary)) == 3
    assert "MAAS cloud account" in summary
    assert re.search(r"tenant cluster\s+tenant-1 Running", summary)
    assert len(re.findall(r"machine\s+\S+ \S+ pool=", summary)) == 3
    seconds = float(re.search(r"elapsed\s+([\d.]+) s", summary).group(1))  # type: ignore[union-attr]
    assert seconds < 60
    workdir = re.search(r"logs in (\S+)\)", out).group(1)  # type: ignore[union-attr]
    # nothing it started is left running (simulators, booted agents)
    assert _processes_mentioning(workdir) == []
    # the MAAS key and the sealed secrets never reach the screen
    key = (Path(workdir) / "maas.key").read_text().strip()
    assert key not in out and key.split(":")[2] not in out
