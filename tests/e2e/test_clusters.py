"""Tenant clusters and the gateway's lifecycle through the tunnel: Palette simulator and MAAS
simulator in-process on loopback, the gateway agent as a real `pcg-agent` subprocess."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from protocol.maas.models import NodeStatus
from protocol.simulator.maas.core import Timings
from protocol.simulator.maas.server import MaasSimulator
from protocol.simulator.maas.testing import client_for, running_simulator
from tests.support.processes import AgentProcess

from .palette import PaletteClient, registering_agent_config

GATEWAY = "maas-pcg-1"


@pytest.fixture
async def maas() -> AsyncIterator[MaasSimulator]:
    async with running_simulator(timings=Timings(deploy=0.6, release=0.05)) as sim:
        yield sim


@pytest.fixture
async def gateway(
    palette: PaletteClient, maas: MaasSimulator, spawn: Callable[..., AgentProcess], tmp_path: Path
) -> dict[str, Any]:
    """A registered, Running gateway whose agent serves `maas`; returns its overlord and
    cloud account, and the agent process."""
    code = (await palette.get("/v1/overlords/pairing/code?cloudType=maas"))["pairingCode"]
    config = registering_agent_config(
        palette.sim, GATEWAY, code, tmp_path / "state",
        maas_url=maas.url, maas_key=maas.api_key.reveal(), maas_poll_interval=0.05,
    )  # fmt: skip
    agent = spawn(config)
    overlord = await palette.wait_overlord(GATEWAY, "Running")
    (account,) = (await palette.get("/v1/cloudaccounts/maas"))["items"]
    return {"overlord": overlord, "account": account, "agent": agent, "config": config}


def cluster_body(account_uid: str, name: str = "tenant-1", worker_cpu: int = 4) -> dict[str, Any]:
    def pool(pool_name: str, size: int, control_plane: bool, cpu: int) -> dict[str, Any]:
        return {
            "cloudConfig": {
                "azs": ["default"],
                "resourcePool": "default",
                "instanceType": {"minCPU": cpu, "minMemInMB": 4096, "minDiskSizeInGB": 20},
                "tags": [],
            },
            "poolConfig": {"name": pool_name, "size": size, "isControlPlane": control_plane},
        }

    return {
        "metadata": {"name": name},
        "spec": {
            "cloudAccountUid": account_uid,
            "cloudConfig": {"domain": "maas"},
            "machinepoolconfig": [pool("cp", 1, True, 4), pool("workers", 2, False, worker_cpu)],
        },
    }


async def wait_cluster(
    palette: PaletteClient, uid: str, states: set[str], timeout: float = 20.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    cluster: dict[str, Any] = {}
    while time.monotonic() < deadline:
        cluster = await palette.get(f"/v1/spectroclusters/{uid}")
        if cluster["status"]["state"] in states:
            return cluster
        await asyncio.sleep(0.05)
    raise AssertionError(f"cluster not {states} within {timeout}s: {cluster['status']}")


def held_by(maas: MaasSimulator, agent_name: str) -> list[Any]:
    return [m for m in maas.machines if m.agent_name == agent_name]


def not_ready(maas: MaasSimulator) -> list[Any]:
    return [m for m in maas.machines if m.status is not NodeStatus.READY]


async def create(palette: PaletteClient, body: dict[str, Any]) -> str:
    status, answer = await palette.request("POST", "/v1/spectroclusters/maas", body)
    assert status == 201, answer
    return str(answer["uid"])


async def test_cluster_create_deploys_every_pool_with_the_cluster_agent_name(
    palette: PaletteClient, maas: MaasSimulator, gateway: dict[str, Any]
) -> None:
    uid = await create(palette, cluster_body(gateway["account"]["metadata"]["uid"]))
    cluster = await wait_cluster(palette, uid, {"Running", "Failed"})
    assert cluster["status"]["state"] == "Running", cluster["status"]
    machines = held_by(maas, uid)
    assert len(machines) == 3 and all(m.status is NodeStatus.DEPLOYED for m in machines)
    assert len(not_ready(maas)) == 3
    pools = sorted(m["pool"] for m in cluster["status"]["machines"])
    assert pools == ["cp", "workers", "workers"]
    # progress in order, per machine: Allocated, then Deploying, then Deployed
    for system_id in {m.system_id for m in machines}:
        states = [e["state"] for e in cluster["status"]["events"] if e["systemId"] == system_id]
        assert states == ["Allocated", "Deploying", "Deployed"], states
    # Palette reads MAAS's properties through the gateway as well
    account_uid = gateway["account"]["metadata"]["uid"]
    zones = await palette.get(f"/v1/cloudaccounts/maas/{account_uid}/properties/azs")
    assert {z["name"] for z in zones["items"]} == {"default", "az2"}
    pools_prop = await palette.get(f"/v1/cloudaccounts/maas/{account_uid}/properties/resourcePools")
    assert {p["name"] for p in pools_prop["items"]} == {"default", "tenants"}


async def test_create_retried_after_the_tunnel_is_cut_allocates_nothing_extra(
    palette: PaletteClient, maas: MaasSimulator, gateway: dict[str, Any]
) -> None:
    uid = await create(palette, cluster_body(gateway["account"]["metadata"]["uid"]))
    # wait until the gateway is midway: machines allocated and deploying
    deadline = time.monotonic() + 10
    while not any(m.status is NodeStatus.DEPLOYING for m in held_by(maas, uid)):
        assert time.monotonic() < deadline, "the create never started deploying"
        await asyncio.sleep(0.01)
    sessions = list(palette.sim.hub.sessions.get(gateway["overlord"]["metadata"]["uid"], []))
    assert sessions
    for session in sessions:  # cut the tunnel from the Palette side, mid-operation
        await session.close()
    agent: AgentProcess = gateway["agent"]
    await agent.wait_log("tunnel up", count=2, timeout=10)
    cluster = await wait_cluster(palette, uid, {"Running", "Failed"})
    assert cluster["status"]["state"] == "Running", cluster["status"]
    assert len(held_by(maas, uid)) == 3, "the retry allocated extra machines"
    assert len(not_ready(maas)) == 3
    assert "idempotency_key=" + uid in agent.log
    # each machine's events are still in order and not doubled by the replay
    for system_id in {m.system_id for m in held_by(maas, uid)}:
        states = [e["state"] for e in cluster["status"]["events"] if e["systemId"] == system_id]
        assert states == ["Allocated", "Deploying", "Deployed"], states


async def test_a_pool_maas_cannot_satisfy_fails_with_its_message_and_holds_nothing(
    palette: PaletteClient, maas: MaasSimulator, gateway: dict[str, Any]
) -> None:
    body = cluster_body(gateway["account"]["metadata"]["uid"], worker_cpu=64)
    uid = await create(palette, body)
    cluster = await wait_cluster(palette, uid, {"Running", "Failed"})
    assert cluster["status"]["state"] == "Failed"
    message = cluster["status"]["message"]
    assert "No available machine matches constraints" in message and "workers" in message
    await asyncio.sleep(0.2)
    assert held_by(maas, uid) == [] and not_ready(maas) == []


async def test_gateway_delete_is_refused_while_a_cluster_runs(
    palette: PaletteClient, maas: MaasSimulator, gateway: dict[str, Any]
) -> None:
    uid = await create(palette, cluster_body(gateway["account"]["metadata"]["uid"]))
    await wait_cluster(palette, uid, {"Running"})
    overlord_uid = gateway["overlord"]["metadata"]["uid"]
    status, body = await palette.request("DELETE", f"/v1/overlords/{overlord_uid}")
    assert status == 409 and body["code"] == "OverlordInUse"
    assert "tenant-1" in body["message"]
    status, _ = await palette.request("DELETE", f"/v1/spectroclusters/{uid}")
    assert status == 202
    await wait_cluster(palette, uid, {"Deleted"})
    deadline = time.monotonic() + 5
    while not_ready(maas):
        assert time.monotonic() < deadline, "the cluster's machines were not released"
        await asyncio.sleep(0.02)
    status, _ = await palette.request("DELETE", f"/v1/overlords/{overlord_uid}")
    assert status == 204
    assert await palette.overlords() == []


async def test_resize_to_three_deploys_two_gateway_nodes(
    palette: PaletteClient, maas: MaasSimulator, gateway: dict[str, Any]
) -> None:
    overlord_uid = gateway["overlord"]["metadata"]["uid"]
    path = f"/v1/overlords/maas/{overlord_uid}/cloudconfig"
    status, body = await palette.request("PUT", path, {"size": 3})
    assert status == 200, body
    nodes = held_by(maas, f"pcg-gw:{GATEWAY}")
    assert len(nodes) == 2 and all(m.status is NodeStatus.DEPLOYED for m in nodes)
    for node in nodes:
        assert node.spec.cpu_count >= 4 and node.spec.memory >= 8192
        user_data = maas.user_data(node.system_id)
        assert user_data.startswith("#cloud-config") and palette.sim.tunnel_url in user_data
        assert gateway["config"]["install_id"] in user_data
        assert "credential" not in user_data
    overlord = await palette.get(f"/v1/overlords/{overlord_uid}")
    assert overlord["spec"]["cloudConfig"]["size"] == 3
    status, body = await palette.request("PUT", path, {"size": 1})
    assert status == 400 and body["code"] == "ResizeNotSupported" and "etcd" in body["message"]


async def test_resize_without_enough_ready_machines_is_refused_and_allocates_nothing(
    palette: PaletteClient, maas: MaasSimulator, gateway: dict[str, Any]
) -> None:
    # someone else takes all but one of the machines that qualify in default/default
    async with client_for(maas) as client:
        for _ in range(7):
            await client.allocate(cpu_count=4, mem=8192, zone="default", pool="default",
                                  agent_name="someone-else")  # fmt: skip
    taken = len(not_ready(maas))
    overlord_uid = gateway["overlord"]["metadata"]["uid"]
    status, body = await palette.request(
        "PUT", f"/v1/overlords/maas/{overlord_uid}/cloudconfig", {"size": 3}
    )
    assert status == 409 and body["code"] == "InsufficientMachines", body
    assert "2" in body["message"] and "1" in body["message"]
    assert len(not_ready(maas)) == taken, "a refused resize must allocate nothing"
    overlord = await palette.get(f"/v1/overlords/{overlord_uid}")
    assert overlord["spec"]["cloudConfig"]["size"] == 1
