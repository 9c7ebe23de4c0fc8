"""The lifecycle table, the deploy/release timers, the on_deployed hook and fault injection."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from protocol.maas import MaasUnreachable, NodeStatus, PowerState, Retryable, RetryPolicy
from protocol.simulator.maas import MaasSimulator, SimMachine, Timings
from protocol.simulator.maas.faults import Faults
from protocol.simulator.maas.state import TRANSITIONS, Event, IllegalTransition, transition
from protocol.simulator.maas.testing import client_for

S = NodeStatus
FAST = {"poll_interval": 0.02, "max_wait": 5.0}


def test_transition_table() -> None:
    assert transition(S.READY, Event.ALLOCATE) is S.ALLOCATED
    assert transition(S.ALLOCATED, Event.DEPLOY) is S.DEPLOYING
    assert transition(S.READY, Event.DEPLOY) is S.DEPLOYING
    assert transition(S.DEPLOYING, Event.DEPLOYED) is S.DEPLOYED
    assert transition(S.DEPLOYING, Event.DEPLOY_FAILED) is S.FAILED_DEPLOYMENT
    assert transition(S.DEPLOYED, Event.RELEASE) is S.RELEASING
    assert transition(S.RELEASING, Event.RELEASED) is S.READY
    for status in S:
        for event in Event:
            if (status, event) not in TRANSITIONS:
                with pytest.raises(IllegalTransition):
                    transition(status, event)
    with pytest.raises(
        IllegalTransition, match=r"^Can't deploy a machine that is in the 'Deployed'"
    ):
        transition(S.DEPLOYED, Event.DEPLOY)
    with pytest.raises(IllegalTransition, match=r"released in its current state \('New'\)\.$"):
        transition(S.NEW, Event.RELEASE)


async def test_full_cycle_with_hooks(maas_sim: MaasSimulator) -> None:
    deployed: list[tuple[str, str | None, str | None, NodeStatus]] = []
    released: list[str] = []
    hook_done = asyncio.Event()

    async def on_deployed(machine: SimMachine, user_data: str | None) -> None:
        deployed.append((machine.hostname, user_data, machine.ip_address, machine.status))
        hook_done.set()

    maas_sim.on_deployed = on_deployed
    maas_sim.on_released = lambda machine: released.append(machine.hostname)
    async with client_for(maas_sim) as maas:
        machine = await maas.allocate(hostname="node-03")
        await maas.deploy(machine.system_id, user_data=b"#cloud-config\nbootcmd: [true]\n")
        await asyncio.wait_for(hook_done.wait(), 5)
        sim_machine = maas_sim.machine("node-03")
        assert sim_machine.power_state is PowerState.ON
        assert deployed == [
            ("node-03", "#cloud-config\nbootcmd: [true]\n", sim_machine.ip_address, S.DEPLOYED)
        ]
        assert maas_sim.user_data("node-03.maas") == "#cloud-config\nbootcmd: [true]\n"
        await maas.release([machine.system_id])
        await maas.wait_for_status(machine.system_id, S.READY, **FAST)
    assert released == ["node-03"]
    assert sim_machine.ip_address is None and sim_machine.power_state is PowerState.OFF
    assert sim_machine.deployments == 1


async def test_failing_hook_does_not_break_the_simulator(
    maas_sim: MaasSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(machine: SimMachine, user_data: str | None) -> None:
        raise RuntimeError("agent would not start")

    maas_sim.on_deployed = broken
    async with client_for(maas_sim) as maas:
        machine = await maas.allocate(cpu_count=4)
        await maas.deploy(machine.system_id)
        done = await maas.wait_for_status(machine.system_id, S.DEPLOYED, **FAST)
    assert done.status is S.DEPLOYED
    assert "hook-failed hook=on_deployed" in caplog.text


async def test_deploy_from_ready_allocates_and_addresses_are_unique(
    maas_sim: MaasSimulator,
) -> None:
    async with client_for(maas_sim) as maas:
        ids = [m.system_id for m in await maas.list_machines(zone="default")][:4]
        for system_id in ids:
            await maas.deploy(system_id)
        machines = [await maas.wait_for_status(i, S.DEPLOYED, **FAST) for i in ids]
    addresses = [m.ip_addresses[0] for m in machines]
    assert len(set(addresses)) == 4
    assert all(m.owner == "admin" for m in machines)


async def test_fault_switches_from_python(maas_sim: MaasSimulator) -> None:
    maas_sim.faults.fail_deployment("node-06")
    async with client_for(maas_sim) as maas:
        machine = await maas.allocate(hostname="node-06")
        await maas.deploy(machine.system_id)
        failed = await maas.wait_for_status(
            machine.system_id, {S.DEPLOYED, S.FAILED_DEPLOYMENT}, **FAST
        )
        assert failed.status is S.FAILED_DEPLOYMENT
        assert "simulated fault" in failed.status_message

        maas_sim.faults.set_latency(0.2)
        started = time.monotonic()
        await maas.list_zones()
        assert time.monotonic() - started >= 0.2
        maas_sim.faults.set_latency(0)

        maas_sim.faults.unavailable(None, retry_after=0, match="zones")
        with pytest.raises(Retryable):
            await maas.list_zones()
        assert await maas.list_domains(), "the rule only matches zones"
        maas_sim.faults.clear()
        assert await maas.list_zones()


async def test_faults_over_the_control_endpoint(
    maas_sim: MaasSimulator, http: aiohttp.ClientSession
) -> None:
    control = maas_sim.control_url
    payload = {
        "fail_deploy": ["node-01"],
        "unavailable": {"count": 1, "retry_after": 7},
        "drop": {"count": 1, "match": "op=allocate"},
    }
    async with http.post(control + "faults", json=payload) as response:
        assert response.status == 200
        state = await response.json()
    assert state["fail_deploy"] == ["node-01"]
    assert [rule["kind"] for rule in state["rules"]] == ["unavailable", "drop"]

    async with http.get(maas_sim.url + "/api/2.0/version/") as response:
        assert response.status == 503
        assert response.headers["Retry-After"] == "7"
    async with client_for(maas_sim, retry=RetryPolicy(attempts=1)) as maas:
        with pytest.raises(MaasUnreachable):
            await maas.allocate()
        assert (await maas.allocate()).status is S.ALLOCATED

    async with http.post(control + "faults", json={"latency": -1}) as response:
        assert response.status == 400
        assert "latency must be >= 0" in await response.text()
    async with http.post(control + "faults", json={"bogus": 1}) as response:
        assert response.status == 400
    async with http.delete(control + "faults") as response:
        assert (await response.json()) == {"fail_deploy": [], "latency": 0.0, "rules": []}
    async with http.put(control + "timings", json={"deploy": 0.01}) as response:
        assert (await response.json())["deploy"] == 0.01
    async with http.get(control) as response:
        overview = await response.json()
    assert len(overview["machines"]) == len(maas_sim.machines)
    assert sum(m["status_name"] == "Allocated" for m in overview["machines"]) == 1


async def test_user_data_over_the_control_endpoint(
    maas_sim: MaasSimulator, http: aiohttp.ClientSession
) -> None:
    async with client_for(maas_sim) as maas:
        machine = await maas.allocate(hostname="node-02")
        await maas.deploy(machine.system_id, user_data="#cloud-config\nhostname: gw-1\n")
    url = f"{maas_sim.control_url}machines/node-02/user-data"
    async with http.get(url) as response:
        assert response.status == 200
        assert await response.text() == "#cloud-config\nhostname: gw-1\n"
    async with http.get(f"{maas_sim.control_url}machines/node-01/user-data") as response:
        assert response.status == 404


def test_faults_document_round_trip() -> None:
    faults = Faults()
    faults.update({"busy": 2, "latency": 0.5, "fail_deploy": ["a"]})
    assert faults.to_json() == {
        "fail_deploy": ["a"],
        "latency": 0.5,
        "rules": [{"kind": "busy", "remaining": 2, "retry_after": 1, "match": None}],
    }
    assert faults.take("GET /x") is not None and faults.take("GET /x") is not None
    assert faults.take("GET /x") is None, "a counted rule is used up"
    with pytest.raises(ValueError, match="fail_deploy must be a list"):
        faults.update({"fail_deploy": "a"})
    faults.update({"clear": True})
    assert faults.to_json()["rules"] == []


async def test_timings_are_configurable(maas_sim: MaasSimulator) -> None:
    maas_sim.timings = Timings(deploy=0.3, release=0.05)
    async with client_for(maas_sim) as maas:
        machine = await maas.allocate(cpu_count=4)
        started = time.monotonic()
        await maas.deploy(machine.system_id)
        await maas.wait_for_status(machine.system_id, S.DEPLOYED, **FAST)
    assert 0.3 <= time.monotonic() - started < 2
    with pytest.raises(ValueError, match="timings must be >= 0"):
        Timings(deploy=-1)
