"""Full installs against the simulators: `pcg-installer -s true` as a subprocess, the MAAS
simulator booting each deployed node's agent as a real `pcg-agent` subprocess, registration
with the Palette simulator over the tunnel, until Palette shows the gateway Running."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from protocol.maas.models import NodeStatus
from protocol.simulator.maas import MaasSimulator, Timings
from protocol.simulator.palette import PaletteSimulator
from tests.support.tls import Pki

from .conftest import ADMIN, FAST, config_for, run_installer, write_config

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
