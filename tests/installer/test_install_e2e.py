"""Full installs against the simulators: `pcg-installer -s true` as a subprocess, the MAAS
simulator booting each deployed node's agent as a real `pcg-agent` subprocess, registration
with the Palette simulator over the tunnel, until Palette shows the gateway Running."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from protocol.maas.models import NodeStatus
from protocol.simulator.maas import MaasSimulator, Timings
from protocol.simulator.palette import PaletteSimulator
from tests.support.tls import Pki

from .conftest import (
    ADMIN,
    BIN,
    FAST,
    config_for,
    installer_env,
    run_installer,
    write_config,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def booting_maas(tmp_path: Path) -> AsyncIterator[MaasSimulator]:
    sim = MaasSimulator(timings=Timings(deploy=0.3, release=0.05), boot_agents=True,
                        boot_dir=tmp_path / "machines")  # fmt: skip
    await sim.start("127.0.0.1", 0)
    yield sim
    await sim.stop()


@pytest.mark.parametrize("nodes", [1, 3])
async def test_silent_install_ends_running_with_agents_as_subprocesses(
    nodes: int, palette: PaletteSimulator, booting_maas: MaasSimulator, pki: Pki, workdir: Path
) -> None:
    config = config_for(palette, booting_maas, pki, node_count=nodes, name=f"gw-{nodes}")
    path = write_config(workdir / "pcg.yaml", config)
    done = await run_installer("-s", "true", "-c", str(path), *FAST, "--output", "json")
    assert done.code == 0, done.output
    outcome = json.loads(done.stdout)
    assert outcome["ok"] is True
    install = outcome["install"]
    assert install["state"] == "Running"
    assert len(install["nodes"]) == nodes
    # Palette: the gateway Running, with its MAAS cloud account
    (overlord,) = [o for o in palette.overlords() if o["metadata"]["name"] == f"gw-{nodes}"]
    assert overlord["status"]["state"] == "Running"
    assert overlord["metadata"]["annotations"]["installId"] == install["installId"]
    (account,) = palette.cloud_accounts()
    assert account["metadata"]["annotations"]["overlordUid"] == overlord["metadata"]["uid"]
    assert account["spec"]["apiEndpoint"] == booting_maas.url
    # MAAS: the nodes are Deployed, owned by the gateway, each running a real agent process
    booter = booting_maas.booter
    assert booter is not None
    node_ids = {n["systemId"] for n in install["nodes"]}
    for system_id in node_ids:
        machine = booting_maas.machine(system_id)
        assert machine.status is NodeStatus.DEPLOYED
        assert machine.agent_name == f"pcg-gw:gw-{nodes}"
        agent = booter.agents[system_id]
        assert agent.process.poll() is None, agent.log_path.read_text()
        user_data = booting_maas.user_data(system_id) or ""
        assert ADMIN.password not in user_data  # the admin password never leaves the installer
    # nothing secret in what the installer printed or logged
    log = (workdir / "pcg-installer.log").read_text()
    for secret in (ADMIN.password, booting_maas.api_key.reveal(), config.pairing_code,
                   booting_maas.api_key.parts()[2]):  # fmt: skip
        assert secret not in done.output
        assert secret not in log


def _held(maas: MaasSimulator) -> list[str]:
    """Machines not back to Ready (or on their way there)."""
    settled = (NodeStatus.READY, NodeStatus.RELEASING)
    return [f"{m.hostname}:{m.status.label}" for m in maas.machines if m.status not in settled]


async def test_sigint_after_allocation_releases_every_machine(
    palette: PaletteSimulator, pki: Pki, workdir: Path, tmp_path: Path
) -> None:
    # deployments that take a minute: the installer is caught waiting for them
    async with MaasSimulator(timings=Timings(deploy=60, release=0.05), boot_agents=True,
                             boot_dir=tmp_path / "machines") as maas:  # fmt: skip
        config = config_for(palette, maas, pki, node_count=3)
        path = write_config(workdir / "pcg.yaml", config)
        process = await asyncio.create_subprocess_exec(
            str(BIN / "pcg-installer"), "-s", "true", "-c", str(path), *FAST,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env=installer_env(),
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while sum(m.status is NodeStatus.DEPLOYING for m in maas.machines) < 3:
            assert time.monotonic() < deadline, "the installer never deployed 3 machines"
            assert process.returncode is None
            await asyncio.sleep(0.05)
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            output = (await process.communicate())[0].decode()
        assert process.returncode == 130, output
        assert "Interrupted" in output and "Released the machine(s) this run allocated" in output
        assert "Rerun: pcg-installer -s true -c" in output
        assert _held(maas) == [], output
        assert path.exists()  # the configuration is kept for the rerun


async def test_failed_deployment_releases_every_machine_and_says_what_to_fix(
    palette: PaletteSimulator, booting_maas: MaasSimulator, pki: Pki, workdir: Path
) -> None:
    booting_maas.faults.fail_deployment("node-02")
    config = config_for(palette, booting_maas, pki, node_count=3)
    path = write_config(workdir / "pcg.yaml", config)
    done = await run_installer("-s", "true", "-c", str(path), *FAST)
    assert done.code == 1, done.output
    assert "node-02" in done.output and "Failed deployment" in done.output
    assert "Look at its events in MAAS" in done.output
    assert "Released the machine(s) this run allocated" in done.output
    await asyncio.sleep(0.3)  # the release takes 0.05 s in this simulator
    assert _held(booting_maas) == []
    booter = booting_maas.booter
    assert booter is not None and booter.agents == {}  # the booted agents were stopped too


async def test_a_second_gateway_of_the_same_name_is_refused(
    palette: PaletteSimulator, booting_maas: MaasSimulator, pki: Pki, workdir: Path
) -> None:
    config = config_for(palette, booting_maas, pki)
    path = write_config(workdir / "pcg.yaml", config)
    done = await run_installer("-s", "true", "-c", str(path), *FAST)
    assert done.code == 0, done.output
    again = write_config(workdir / "again.yaml", config.replace(
        pairing_code=palette.issue_pairing_code()))  # fmt: skip
    done = await run_installer("-s", "true", "-c", str(again), "--inspect-only", "--output", "json")
    assert done.code == 1
    checks = {c["id"]: c for c in json.loads(done.stdout)["preflight"]["checks"]}
    assert checks["palette.gatewayName"]["status"] == "failed"
    assert "already exists in Palette (state Running)" in checks["palette.gatewayName"]["message"]
