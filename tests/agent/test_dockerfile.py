"""Dockerfile.agent, read (no Docker engine runs here): the image's data path is compiled in its
build stage, and the image itself carries no compiler."""

from __future__ import annotations

from pathlib import Path

from tests.support.dockerfile import final_stage, instructions

ROOT = Path(__file__).resolve().parents[2]


def test_the_build_stage_compiles_and_the_image_runs_the_agent_unprivileged() -> None:
    parsed = instructions((ROOT / "Dockerfile.agent").read_text())
    stage = final_stage(parsed)
    build = parsed[: len(parsed) - len(stage)]
    runs = " ".join(args for keyword, args in build if keyword == "RUN")
    assert "gcc" in runs and "PCG_NATIVE=1 pip wheel" in runs
    copied = [args.split()[:-1] for keyword, args in build if keyword == "COPY"]
    assert ["pyproject.toml", "setup.py", "README.md"] in copied  # setup.py has the build hook
    for sources in copied:
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    image = " ".join(args for keyword, args in stage if keyword == "RUN")
    assert "gcc" not in image and "apt-get" not in image
    users = [args for keyword, args in stage if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert [args for keyword, args in stage if keyword == "ENTRYPOINT"][-1] == '["pcg-agent"]'
