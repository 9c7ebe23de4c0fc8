"""Dockerfile.installer, read (no Docker engine runs here): base image, non-root user,
entrypoint, volume path; and the entry point it names is installed and runs."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from tests.support.dockerfile import final_stage, instructions

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_image_shape() -> None:
    parsed = instructions((ROOT / "Dockerfile.installer").read_text())
    stage = final_stage(parsed)
    base = stage[0][1]
    assert base.startswith("python:3.11"), base  # the project's Python
    assert "slim" in base
    users = [args for keyword, args in stage if keyword == "USER"]
    assert users and users[-1] not in ("root", "0"), "the installer must not run as root"
    entrypoints = [args for keyword, args in stage if keyword == "ENTRYPOINT"]
    assert entrypoints[-1] == '["pcg-installer"]'  # exec form: signals reach the installer
    volumes = " ".join(args for keyword, args in stage if keyword == "VOLUME")
    assert "/opt/spectrocloud" in volumes
    workdirs = [args for keyword, args in stage if keyword == "WORKDIR"]
    assert workdirs[-1] == "/opt/spectrocloud"
    # what the build copies exists in the repository
    for keyword, args in parsed:
        if keyword == "COPY" and "--from" not in args:
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_entry_point_is_declared_and_installed() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["pcg-installer"] == "installer.main:main"
    from installer.main import main

    assert callable(main)
    result = subprocess.run(
        [str(BIN / "pcg-installer"), "--help"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    flags = (
        "--silent", "--config", "--config-only", "--inspect-only", "--update-passwords",
        "--encryption-passphrase", "--https_proxy", "--svc_ip_range", "--workdir",
    )  # fmt: skip
    for flag in flags:
        assert flag in result.stdout
