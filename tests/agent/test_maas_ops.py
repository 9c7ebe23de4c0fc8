"""The agent's MAAS methods against the MAAS simulator (in-process, 127.0.0.1, fast timings)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
import yaml

from agent.config import AgentConfig
from agent.maas_ops import MaasOperations, gateway_agent_name
from agent.rpc import AgentRpc
from protocol.aio import TunnelSession
from protocol.aio.memory import memory_pipe
from protocol.aio.rpc import RpcServer, call
from protocol.connection import ConnectionConfig, Role
from protocol.exceptions import RpcError
from protocol.frames import Settings
from protocol.maas.client import MaasClient
from protocol.maas.models import NodeStatus
from protocol.rpc import Request
from protocol.simulator.maas.core import Timings
from protocol.simulator.maas.inventory import Inventory
from protocol.simulator.maas.server import MaasSimulator
from protocol.simulator.maas.testing import FAST_RETRY, client_for, running_simulator

POLL = 0.02
UID = "c0ffee0000000000000000a1"
GATEWAY = "gw-test"


def pool(
    name: str,
    size: int,
    *,
    control_plane: bool = False,
    cpu: int = 4,
    mem: int = 8192,
    disk: int = 60,
    azs: tuple[str, ...] = ("default",),
    resource_pool: str = "default",
) -> dict[str, Any]:
    return {
        "name": name,
        "size": size,
        "isControlPlane": control_plane,
        "azs": list(azs),
        "resourcePool": resource_pool,
        "minCPU": cpu,
        "minMemInMB": mem,
        "minDiskSizeInGB": disk,
        "tags": [],
    }


def create_params(*pools: dict[str, Any], uid: str = UID) -> dict[str, Any]:
    return {
        "clusterUid": uid,
        "name": "tenant-1",
        "domain": "maas",
        "machinePools": list(pools) or [pool("cp", 1, control_plane=True), pool("workers", 2)],
    }


def make_config(sim: MaasSimulator, **overrides: Any) -> AgentConfig:
    values: dict[str, Any] = {
        "gateway_name": GATEWAY,
        "hub_url": "wss://127.0.0.1:8443/v1/tunnel",
        "pairing_code": "A1B2C3",
        "install_id": "0123456789abcdef0123456789abcdef",
        "state_dir": "pcg-agent-state",
        "maas_api_endpoint": sim.url,
        "maas_api_key": sim.api_key.reveal(),
    }
    values.update(overrides)
    return AgentConfig(**values)


def make_ops(sim: MaasSimulator, **overrides: Any) -> MaasOperations:
    return MaasOperations(
        make_config(sim, **overrides),
        client_factory=lambda: client_for(sim),
        poll_interval=POLL,
        deploy_timeout=10,
        release_timeout=10,
    )


class Events:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.changed = asyncio.Event()

    async def __call__(self, event: Mapping[str, Any]) -> None:
        self.items.append(dict(event))
        self.changed.set()

    async def wait_for(self, predicate: Any, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self.items):
                self.changed.clear()
                await self.changed.wait()

    def states(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for event in self.items:
            out.setdefault(event["systemId"], []).append(event["state"])
        return out


def request(method: str, params: Mapping[str, Any], key: str | None = None) -> Request:
    return Request("r1", method, dict(params), key)


def held(sim: MaasSimulator, agent_name: str = UID) -> list[str]:
    return sorted(
        m.spec.hostname
        for m in sim.machines
        if m.agent_name == agent_name and m.status is not NodeStatus.RELEASING
    )


def busy(sim: MaasSimulator) -> list[str]:
    """Machines not Ready (allocated, deploying, deployed, releasing...)."""
    return sorted(m.spec.hostname for m in sim.machines if m.status is not NodeStatus.READY)


async def wait_all_ready(sim: MaasSimulator, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while busy(sim):
            await asyncio.sleep(0.02)


@pytest.fixture
async def sim() -> AsyncIterator[MaasSimulator]:
    async with running_simulator() as simulator:
        yield simulator


# -- cluster.create ---------------------------------------------------------------------


async def test_create_deploys_every_pool(sim: MaasSimulator) -> None:
    ops = make_ops(sim)
    events = Events()
    result = await ops.cluster_create(request("cluster.create", create_params(), UID), events)
    machines = result["machines"]
    assert [m["pool"] for m in machines] == ["cp", "workers", "workers"]
    assert len(held(sim)) == 3
    for machine in machines:
        simulated = sim.machine(machine["systemId"])
        assert simulated.status is NodeStatus.DEPLOYED
        assert simulated.agent_name == UID
        assert machine["hostname"] == simulated.spec.hostname
        assert machine["fqdn"] == f"{simulated.spec.hostname}.maas"
        assert machine["ip"]
        user_data = sim.user_data(machine["systemId"]) or ""
        assert user_data.startswith("#cloud-config")
        assert UID in user_data and "tenant-1" in user_data
        assert sim.api_key.token_secret not in user_data
    # per machine: Allocated, Deploying, Deployed; all allocations before any deployment
    assert set(map(tuple, events.states().values())) == {("Allocated", "Deploying", "Deployed")}
    assert [e["state"] for e in events.items[:3]] == ["Allocated"] * 3
    assert events.items[0]["pool"] == "cp"
    assert set(events.items[0]) == {"machine", "systemId", "pool", "state"}


async def test_create_retried_while_running_and_after(sim: MaasSimulator) -> None:
    ops = make_ops(sim)
    params = create_params()
    first, second, third = Events(), Events(), Events()
    one = asyncio.create_task(ops.cluster_create(request("cluster.create", params, UID), first))
    await first.wait_for(lambda items: any(e["state"] == "Deploying" for e in items))
    two = asyncio.create_task(ops.cluster_create(request("cluster.create", params, UID), second))
    result = await one
    assert await two == result
    assert await ops.cluster_create(request("cluster.create", params, UID), third) == result
    assert len(held(sim)) == 3 and len(busy(sim)) == 3
    assert second.items == first.items == third.items  # attached: replayed, then followed


async def test_create_resumes_after_agent_restart(sim: MaasSimulator) -> None:
    sim.faults.set_latency(0.03)
    params = create_params()
    ops = make_ops(sim)
    first = Events()
    caller = asyncio.create_task(ops.cluster_create(request("cluster.create", params, UID), first))
    await first.wait_for(lambda items: len(items) >= 2)  # two of three allocated
    caller.cancel()
    await ops.close()  # the agent stops: its registry is gone
    with pytest.raises(asyncio.CancelledError):
        await caller
    interrupted = held(sim)
    assert 2 <= len(interrupted) <= 3

    restarted = make_ops(sim)
    events = Events()
    result = await restarted.cluster_create(request("cluster.create", params, UID), events)
    assert len(result["machines"]) == 3
    assert sorted(m["hostname"] for m in result["machines"]) == held(sim)
    assert set(interrupted) <= set(held(sim))  # adopted, not replaced
    assert len(busy(sim)) == 3  # nothing extra was allocated
    assert all(sim.machine(m["systemId"]).status is NodeStatus.DEPLOYED for m in result["machines"])
    assert [m["pool"] for m in result["machines"]] == ["cp", "workers", "workers"]


async def test_create_without_a_matching_machine_fails_and_releases(sim: MaasSimulator) -> None:
    ops = make_ops(sim)
    events = Events()
    params = create_params(pool("cp", 1, control_plane=True), pool("gpu", 1, cpu=64))
    with pytest.raises(RpcError) as info:
        await ops.cluster_create(request("cluster.create", params, UID), events)
    error = info.value
    assert error.code == "resource_exhausted"
    assert "'gpu'" in error.message
    assert "No available machine matches constraints" in error.message  # MAAS's own text
    assert held(sim) == []
    assert [e["state"] for e in events.items] == ["Allocated", "Released"]
    await wait_all_ready(sim)
    # the outcome is stored under the key: a retry is answered without touching MAAS
    with pytest.raises(RpcError) as again:
        await ops.cluster_create(request("cluster.create", params, UID), Events())
    assert again.value.message == error.message
    assert busy(sim) == []


async def test_create_deploy_failure_releases_everything(sim: MaasSimulator) -> None:
    sim.faults.fail_deployment("node-02")
    ops = make_ops(sim)
    events = Events()
    with pytest.raises(RpcError) as info:
        await ops.cluster_create(request("cluster.create", create_params(), UID), events)
    assert info.value.code == "internal"
    assert "node-02" in info.value.message and "Failed deployment" in info.value.message
    assert held(sim) == []
    states = events.states()
    failed = sim.machine("node-02").spec.system_id
    assert states[failed][-2:] == ["Failed", "Released"]
    assert all(s[-1] == "Released" for s in states.values()) and len(states) == 3
    await wait_all_ready(sim)


async def test_create_with_maas_unreachable_is_unavailable(sim: MaasSimulator) -> None:
    ops = MaasOperations(
        make_config(sim),
        client_factory=lambda: MaasClient(
            "http://127.0.0.1:9/MAAS", sim.api_key, retry=FAST_RETRY, trust_env=False
        ),
        poll_interval=POLL,
    )
    with pytest.raises(RpcError) as info:
        await ops.cluster_create(request("cluster.create", create_params(), UID), Events())
    assert info.value.code == "unavailable"
    assert "Cannot reach MAAS" in info.value.message
    assert sim.api_key.token_secret not in info.value.message
    with pytest.raises(RpcError) as zones:
        await ops.zones(request("maas.zones", {}), Events())
    assert zones.value.code == "unavailable"


async def test_create_accepts_palette_defaults(sim: MaasSimulator) -> None:
    """What Palette sends for a pool without instance type, zones or resource pool."""
    bare = {
        "name": "cp",
        "size": 1,
        "isControlPlane": True,
        "azs": [],
        "resourcePool": "",
        "minCPU": 0,
        "minMemInMB": 0,
        "minDiskSizeInGB": 0,
        "tags": [],
    }
    result = await make_ops(sim).cluster_create(
        request("cluster.create", create_params(bare), UID), Events()
    )
    assert [m["pool"] for m in result["machines"]] == ["cp"]
    assert len(held(sim)) == 1


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"name": "x", "machinePools": [pool("cp", 1)]}, "clusterUid"),
        (create_params() | {"machinePools": []}, "machinePools"),
        (create_params(pool("cp", 0)), "size=0"),
        (create_params(pool("cp", 1), pool("cp", 1)), "appear twice"),
        (create_params(pool("cp", 1) | {"minCPU": "4"}), "minCPU='4'"),
    ],
)
async def test_create_rejects_bad_params(
    sim: MaasSimulator, params: dict[str, Any], words: str
) -> None:
    with pytest.raises(RpcError) as info:
        await make_ops(sim).cluster_create(request("cluster.create", params, UID), Events())
    assert info.value.code == "invalid_argument"
    assert words in info.value.message
    assert busy(sim) == []


# -- cluster.delete -----------------------------------------------------------------------


async def test_delete_releases_and_is_idempotent(sim: MaasSimulator) -> None:
    ops = make_ops(sim)
    created = await ops.cluster_create(request("cluster.create", create_params(), UID), Events())
    events = Events()
    result = await ops.cluster_delete(request("cluster.delete", {"clusterUid": UID}), events)
    assert sorted(result["released"]) == sorted(m["systemId"] for m in created["machines"])
    assert [e["state"] for e in events.items] == ["Released"] * 3
    assert set(events.items[0]) == {"machine", "systemId", "state"}
    assert busy(sim) == []  # delete waits until MAAS has them back
    again = await ops.cluster_delete(request("cluster.delete", {"clusterUid": UID}), Events())
    assert again == {"released": []}


async def test_delete_stops_a_create_under_way(sim: MaasSimulator) -> None:
    sim.timings = Timings(deploy=5.0, release=0.05)
    ops = make_ops(sim)
    events = Events()
    create = asyncio.create_task(
        ops.cluster_create(request("cluster.create", create_params(), UID), events)
    )
    await events.wait_for(lambda items: sum(e["state"] == "Deploying" for e in items) == 3)
    result = await ops.cluster_delete(request("cluster.delete", {"clusterUid": UID}), Events())
    assert len(result["released"]) == 3
    with pytest.raises(RpcError) as info:
        await create
    assert info.value.code == "cancelled"
    assert busy(sim) == []


# -- gateway.resize -------------------------------------------------------------------------


async def install_gateway_node(sim: MaasSimulator, hostname: str = "node-01") -> None:
    """What the installer does: one gateway node, deployed, under the gateway's agent name."""
    async with client_for(sim) as maas:
        machine = await maas.allocate(
            system_id=sim.machine(hostname).spec.system_id,
            agent_name=gateway_agent_name(GATEWAY),
        )
        await maas.deploy(machine.system_id, user_data="#cloud-config\n")
        await maas.wait_for_status(machine.system_id, NodeStatus.DEPLOYED, poll_interval=POLL)


async def test_resize_adds_two_gateway_nodes(sim: MaasSimulator) -> None:
    await install_gateway_node(sim)
    ops = make_ops(sim, https_proxy="http://127.0.0.1:3128", no_proxy="127.0.0.1")
    events = Events()
    result = await ops.gateway_resize(request("gateway.resize", {"size": 3}), events)
    nodes = result["nodes"]
    assert len(nodes) == 3 and all(n["state"] == "Deployed" for n in nodes)
    assert len(held(sim, gateway_agent_name(GATEWAY))) == 3
    new = [n for n in nodes if n["hostname"] != "node-01"]
    assert len(new) == 2
    assert set(map(tuple, events.states().values())) == {("Allocated", "Deploying", "Deployed")}
    for node in new:
        text = sim.user_data(node["systemId"]) or ""
        document = yaml.safe_load(text)
        written = next(f for f in document["write_files"] if f["path"] == "/etc/pcg/agent.yaml")
        config = yaml.safe_load(written["content"])
        assert config["gateway_name"] == GATEWAY
        assert config["hub_url"] == "wss://127.0.0.1:8443/v1/tunnel"
        assert config["node_count"] == 3
        assert config["pairing_code"] == "A1B2C3"
        assert config["install_id"] == "0123456789abcdef0123456789abcdef"
        assert config["maas_api_key"] == sim.api_key.reveal()
        assert config["https_proxy"] == "http://127.0.0.1:3128"
        assert "token" not in config
    # already 3: nothing more to do
    again = await ops.gateway_resize(request("gateway.resize", {"size": 3}), Events())
    assert len(again["nodes"]) == 3 and len(busy(sim)) == 3
    with pytest.raises(RpcError) as shrink:
        await ops.gateway_resize(request("gateway.resize", {"size": 1}), Events())
    assert shrink.value.code == "failed_precondition"


async def test_resize_refused_without_enough_ready_machines() -> None:
    inventory = Inventory.from_dict(
        {
            "zones": [{"name": "default"}, {"name": "az2"}],
            "machines": [
                {"hostname": "gw-1", "cpu": 4, "memory": 8192, "storage": 100},
                {"hostname": "good-1", "cpu": 4, "memory": 8192, "storage": 100},
                {"hostname": "tiny-1", "cpu": 2, "memory": 8192, "storage": 100},
                {"hostname": "lowmem-1", "cpu": 4, "memory": 4096, "storage": 100},
                {"hostname": "smalldisk-1", "cpu": 4, "memory": 8192, "storage": 40},
                {"hostname": "far-1", "cpu": 4, "memory": 8192, "storage": 100, "zone": "az2"},
                {"hostname": "used-1", "cpu": 4, "memory": 8192, "storage": 100},
            ],
        }
    )
    async with running_simulator(inventory) as sim:
        await install_gateway_node(sim, "gw-1")
        async with client_for(sim) as maas:
            await maas.allocate(system_id=sim.machine("used-1").spec.system_id, agent_name="x")
        before = {m.spec.hostname: m.status for m in sim.machines}
        ops = make_ops(sim)
        events = Events()
        with pytest.raises(RpcError) as info:
            await ops.gateway_resize(request("gateway.resize", {"size": 3}), events)
        error = info.value
        assert error.code == "failed_precondition"
        assert "needs 2 more" in error.message and "MAAS has 1 such machine" in error.message
        for words in (
            "1 too few CPUs: tiny-1",
            "1 too little memory: lowmem-1",
            "1 too little storage: smalldisk-1",
            "1 wrong zone/pool: far-1",
            "not Ready",
            "used-1 (Allocated)",
        ):
            assert words in error.message
        assert error.details["qualifying"] == 1
        assert events.items == []
        assert {m.spec.hostname: m.status for m in sim.machines} == before  # nothing allocated


async def test_resize_deploy_failure_releases_only_new_nodes(sim: MaasSimulator) -> None:
    await install_gateway_node(sim)
    sim.faults.fail_deployment("node-03")
    ops = make_ops(sim)
    events = Events()
    with pytest.raises(RpcError) as info:
        await ops.gateway_resize(request("gateway.resize", {"size": 3}), events)
    assert info.value.code == "internal" and "node-03" in info.value.message
    assert held(sim, gateway_agent_name(GATEWAY)) == ["node-01"]
    assert sim.machine("node-01").status is NodeStatus.DEPLOYED
    assert all(states[-1] == "Released" for states in events.states().values())


# -- properties ----------------------------------------------------------------------------


async def test_properties(sim: MaasSimulator) -> None:
    ops = make_ops(sim)
    progress = Events()
    zones = await ops.zones(request("maas.zones", {}), progress)
    assert [z["name"] for z in zones] == ["default", "az2"]
    assert {"id", "name"} <= set(zones[0])
    pools = await ops.resource_pools(request("maas.resource_pools", {}), progress)
    assert [p["name"] for p in pools] == ["default", "tenants"]
    domains = await ops.domains(request("maas.domains", {}), progress)
    assert domains[0]["name"] == "maas" and domains[0]["id"] == 0
    subnets = await ops.subnets(request("maas.subnets", {}), progress)
    assert subnets and subnets[0]["cidr"]
    unreserved = subnets[0]["unreserved"]
    assert unreserved and {"start", "end", "numAddresses"} <= set(unreserved[0])
    assert progress.items == []


async def test_default_client_from_the_agent_config(sim: MaasSimulator) -> None:
    ops = MaasOperations(make_config(sim, no_proxy="127.0.0.1"), poll_interval=POLL)
    zones = await ops.zones(request("maas.zones", {}), Events())
    assert [z["name"] for z in zones] == ["default", "az2"]
    unset = MaasOperations(make_config(sim, maas_api_endpoint=None))
    with pytest.raises(RpcError) as info:
        await unset.zones(request("maas.zones", {}), Events())
    assert info.value.code == "failed_precondition"
    assert "maas_api_endpoint" in info.value.message


# -- through a real tunnel session ----------------------------------------------------------


async def test_methods_over_a_tunnel_session(sim: MaasSimulator) -> None:
    ops = make_ops(sim)
    hub, agent = await open_tunnel(ops)
    try:
        zones = await call(hub, "maas.zones")
        assert [z["name"] for z in zones] == ["default", "az2"]
        events = Events()
        result = await call(
            hub,
            "cluster.create",
            create_params(),
            idempotency_key=UID,
            deadline=20,
            on_progress=events,
        )
        assert len(result["machines"]) == 3
        assert [e["state"] for e in events.items].count("Deployed") == 3
        again = Events()
        retried = await call(
            hub, "cluster.create", create_params(), idempotency_key=UID, on_progress=again
        )
        assert retried == result and again.items == events.items
        with pytest.raises(RpcError) as info:
            await call(hub, "gateway.resize", {"size": 2})
        assert info.value.code == "invalid_argument"
        deleted = await call(hub, "cluster.delete", {"clusterUid": UID}, idempotency_key="d1")
        assert len(deleted["released"]) == 3
    finally:
        await hub.close()
        await agent.close()
        await ops.close()


async def open_tunnel(ops: MaasOperations) -> tuple[TunnelSession, TunnelSession]:
    a, b = memory_pipe()
    hub = TunnelSession(a, ConnectionConfig(Role.CLIENT, Settings()), label="hub")
    agent = TunnelSession(
        b,
        ConnectionConfig(Role.SERVER, Settings()),
        rpc_server=RpcServer(AgentRpc(ops.methods())),
        label="agent",
    )
    await asyncio.gather(hub.start(), agent.start())
    return hub, agent


async def test_create_survives_a_cut_tunnel(sim: MaasSimulator) -> None:
    sim.timings = Timings(deploy=0.3, release=0.05)
    ops = make_ops(sim)
    hub, agent = await open_tunnel(ops)
    events = Events()
    first = asyncio.create_task(
        call(hub, "cluster.create", create_params(), idempotency_key=UID, on_progress=events)
    )
    await events.wait_for(lambda items: any(e["state"] == "Deploying" for e in items))
    await agent.close()  # the tunnel drops mid-operation
    await hub.close()
    with pytest.raises(RpcError) as info:
        await first
    assert info.value.code == "unavailable"

    hub, agent = await open_tunnel(ops)  # the agent dials again; Palette retries, same key
    try:
        again = Events()
        result = await call(
            hub, "cluster.create", create_params(), idempotency_key=UID, on_progress=again
        )
        assert len(result["machines"]) == 3 and len(busy(sim)) == 3
        assert [e["state"] for e in again.items].count("Deployed") == 3
        assert again.items[: len(events.items)] == events.items  # replayed from the start
    finally:
        await hub.close()
        await agent.close()
        await ops.close()
