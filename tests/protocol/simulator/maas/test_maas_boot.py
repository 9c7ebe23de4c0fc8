"""The MAAS simulator's boot-agents option: a deployed machine runs the agent of its cloud-init
user_data as a real ``pcg-agent`` subprocess, stopped on release and on simulator stop."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.cloudinit import AGENT_CONFIG_PATH as AGENT_SIDE_PATH
from agent.cloudinit import render_gateway_user_data
from protocol.maas.models import NodeStatus
from protocol.simulator.maas import MaasSimulator, Timings
from protocol.simulator.maas.boot import AGENT_CONFIG_PATH, BootError, plan_boot
from protocol.simulator.maas.testing import client_for
from tests.support.net import free_port

pytestmark = pytest.mark.timeout(60)

CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def agent_config(**extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "gateway_name": "gw-boot",
        # nothing listens there: the agent keeps redialing, which is all this test needs
        "hub_url": f"ws://127.0.0.1:{free_port()}/v1/tunnel",
        "pairing_code": "A1B2C3",
        "install_id": "0" * 32,
        "maas_api_endpoint": "http://127.0.0.1:9/MAAS",
        "node_count": 1,
        "backoff_base": 0.2,
        "backoff_cap": 0.5,
        "use_uvloop": False,
    }
    config.update(extra)
    return config


def with_ca(user_data: str) -> str:
    document = yaml.safe_load(user_data)
    document["write_files"].append({"path": "/etc/pcg/ca.pem", "content": CA_PEM})
    return "#cloud-config\n" + yaml.safe_dump(document, sort_keys=False)


async def wait_for(predicate: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_config_path_matches_the_agent_side() -> None:
    assert AGENT_CONFIG_PATH == AGENT_SIDE_PATH


def test_plan_reads_the_rendered_user_data() -> None:
    plan = plan_boot(with_ca(render_gateway_user_data(agent_config(ca_bundle="/etc/pcg/ca.pem"))))
    assert plan is not None
    assert plan.agent_config["gateway_name"] == "gw-boot"
    assert plan.agent_config["ca_bundle"] == "/etc/pcg/ca.pem"
    paths = {f.path: f for f in plan.files}
    assert paths[AGENT_CONFIG_PATH].mode == 0o600
    assert paths["/etc/pcg/ca.pem"].content.decode() == CA_PEM


def test_plan_without_agent_config_boots_nothing() -> None:
    assert plan_boot(None) is None
    assert plan_boot("#!/bin/sh\necho tenant machine\n") is None
    assert plan_boot("#cloud-config\npackages: [htop]\n") is None


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("#cloud-config\nwrite_files: [{content: x}]\n", "has no path"),
        ("#cloud-config\nwrite_files: [{path: ../../etc/passwd, content: x}]\n", None),
        ("#cloud-config\nwrite_files: [{path: /etc/pcg/agent.yaml, content: '- a'}]\n",
         "not a map"),
        ("#cloud-config\nwrite_files: [{path: /x, content: x, permissions: '9z'}]\n", "octal"),
        ("#cloud-config\nwrite_files: [{path: /x, content: '!!', encoding: b64}]\n", "base64"),
    ],
)  # fmt: skip
def test_plan_refuses_broken_user_data(document: str, message: str | None) -> None:
    if message is None:  # a relative path is caught when writing, see the traversal test
        assert plan_boot(document) is None
        return
    with pytest.raises(BootError, match=message):
        plan_boot(document)


async def test_deployed_machine_runs_its_agent_until_released(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    boot_dir = tmp_path / "boot"
    monkeypatch.setenv("PCG_HUB_URL", "ws://must-not-reach-the-agent.invalid/v1/tunnel")
    sim = MaasSimulator(timings=Timings(deploy=0.05, release=0.05), boot_agents=True,
                        boot_dir=boot_dir)  # fmt: skip
    try:
        await sim.start("127.0.0.1", 0)
        user_data = with_ca(render_gateway_user_data(agent_config(ca_bundle="/etc/pcg/ca.pem")))
        async with client_for(sim) as maas:
            machine = await maas.allocate(cpu_count=4, agent_name="pcg-gw:gw-boot")
            await maas.deploy(machine.system_id, user_data=user_data)
            await maas.wait_for_status(machine.system_id, NodeStatus.DEPLOYED, poll_interval=0.05)
            booter = sim.booter
            assert booter is not None
            agent = booter.agents[machine.system_id]
            log_path = boot_dir / machine.hostname / "agent.log"
            assert agent.log_path == log_path
            await wait_for(lambda: "dialing hub" in log_path.read_text(), "the agent to dial")
            assert agent.process.poll() is None
            # the config was rewritten for this host: own state dir, CA file inside the rootfs
            rootfs = boot_dir / machine.hostname / "rootfs"
            config = yaml.safe_load((rootfs / "etc/pcg/agent.yaml").read_text())
            assert config["state_dir"] == str(boot_dir / machine.hostname / "state")
            assert config["ca_bundle"] == str(rootfs / "etc/pcg/ca.pem")
            assert (rootfs / "etc/pcg/ca.pem").read_text() == CA_PEM
            assert stat.S_IMODE(os.stat(rootfs / "etc/pcg/agent.yaml").st_mode) == 0o600
            # PCG_* variables of the simulator's environment do not reach the agent
            assert "must-not-reach" not in log_path.read_text()
            await maas.release([machine.system_id])
            await wait_for(lambda: agent.process.poll() is not None, "the agent to stop")
            assert machine.system_id not in booter.agents
            assert agent.process.returncode == 0  # SIGTERM: a graceful stop
    finally:
        await sim.stop()
    assert log_path.exists()  # a given boot dir is kept


async def test_simulator_stop_stops_every_agent(tmp_path: Path) -> None:
    sim = MaasSimulator(timings=Timings(deploy=0.05, release=0.05), boot_agents=True)
    await sim.start("127.0.0.1", 0)
    user_data = render_gateway_user_data(agent_config())
    async with client_for(sim) as maas:
        ids = []
        for _ in range(2):
            machine = await maas.allocate(cpu_count=4)
            await maas.deploy(machine.system_id, user_data=user_data)
            ids.append(machine.system_id)
        for system_id in ids:
            await maas.wait_for_status(system_id, NodeStatus.DEPLOYED, poll_interval=0.05)
    booter = sim.booter
    assert booter is not None
    processes = [booter.agents[i].process for i in ids]
    root = booter.root
    assert all(p.poll() is None for p in processes)
    await sim.stop()
    assert all(p.poll() is not None for p in processes)
    assert not root.exists()  # the temporary boot dir is removed


async def test_user_data_without_agent_boots_nothing_and_traversal_is_refused(
    tmp_path: Path,
) -> None:
    sim = MaasSimulator(timings=Timings(deploy=0.05, release=0.05), boot_agents=True,
                        boot_dir=tmp_path)  # fmt: skip
    await sim.start("127.0.0.1", 0)
    escaping = (
        "#cloud-config\nwrite_files:\n"
        "  - {path: /etc/pcg/../../../escape.txt, content: x}\n"
        f"  - {{path: {AGENT_CONFIG_PATH}, content: 'gateway_name: x'}}\n"
    )
    try:
        async with client_for(sim) as maas:
            plain = await maas.allocate(cpu_count=4)
            await maas.deploy(plain.system_id, user_data="#!/bin/sh\ntrue\n")
            bad = await maas.allocate(cpu_count=4)
            await maas.deploy(bad.system_id, user_data=escaping)
            for system_id in (plain.system_id, bad.system_id):
                await maas.wait_for_status(system_id, NodeStatus.DEPLOYED, poll_interval=0.05)
        assert sim.booter is not None and sim.booter.agents == {}
        assert not (tmp_path.parent / "escape.txt").exists()
    finally:
        await sim.stop()
