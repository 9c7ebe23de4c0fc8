"""State saved to a file survives a restart of the simulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from protocol.maas import NodeStatus
from protocol.simulator.maas import MaasSimulator, Timings
from protocol.simulator.maas.testing import client_for, running_simulator

FAST = {"poll_interval": 0.02, "max_wait": 5.0}


async def test_restarted_simulator_keeps_its_machines(tmp_path: Path) -> None:
    state_file = tmp_path / "maas-state.json"
    async with running_simulator(state_file=state_file) as sim:
        key = sim.api_key
        async with client_for(sim) as maas:
            allocated = await maas.allocate(hostname="node-01", agent_name="pcg")
            deployed = await maas.allocate(hostname="node-02")
            await maas.deploy(
                deployed.system_id, user_data="#cloud-config\n", distro_series="noble"
            )
            deployed = await maas.wait_for_status(deployed.system_id, NodeStatus.DEPLOYED, **FAST)
    saved = json.loads(state_file.read_text())
    assert saved["format"] == 1 and len(saved["machines"]) == 12

    async with running_simulator(state_file=state_file, api_key=key) as again:
        async with client_for(again) as maas:
            one = await maas.get_machine(allocated.system_id)
            two = await maas.get_machine(deployed.system_id)
            assert one.status is NodeStatus.ALLOCATED and one.owner == "admin"
            assert two.status is NodeStatus.DEPLOYED
            assert two.ip_addresses == deployed.ip_addresses
            assert two.distro_series == "noble"
            assert again.user_data("node-02") == "#cloud-config\n"
            assert [m.system_id for m in await maas.list_machines(agent_name="pcg")] == [
                allocated.system_id
            ]
            # a new deployment does not reuse the restored machine's address
            other = await maas.allocate(hostname="node-03")
            await maas.deploy(other.system_id)
            other = await maas.wait_for_status(other.system_id, NodeStatus.DEPLOYED, **FAST)
            assert other.ip_addresses != two.ip_addresses


async def test_transitions_in_flight_resume_after_restart(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    slow = MaasSimulator(timings=Timings(deploy=60.0), state_file=state_file)
    await slow.start("127.0.0.1", 0)
    try:
        async with client_for(slow) as maas:
            machine = await maas.allocate(cpu_count=4)
            await maas.deploy(machine.system_id)
    finally:
        await slow.stop()
    assert slow.machine(machine.system_id).status is NodeStatus.DEPLOYING

    async with running_simulator(state_file=state_file, api_key=slow.api_key) as again:
        async with client_for(again) as maas:
            done = await maas.wait_for_status(machine.system_id, NodeStatus.DEPLOYED, **FAST)
    assert done.ip_addresses


async def test_save_on_request(tmp_path: Path, maas_sim: MaasSimulator) -> None:
    target = maas_sim.save_state(tmp_path / "snapshot.json")
    assert json.loads(target.read_text())["machines"][0]["status"] == int(NodeStatus.READY)
    with pytest.raises(ValueError, match="no state file configured"):
        maas_sim.save_state()


async def test_incompatible_state_file_is_refused(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps({"format": 99, "machines": []}))
    with pytest.raises(ValueError, match="delete it to start from the inventory again"):
        MaasSimulator(state_file=state_file)
