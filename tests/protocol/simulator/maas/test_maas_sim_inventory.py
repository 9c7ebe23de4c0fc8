"""Inventories: the built-in default and YAML files."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol.maas import NodeStatus
from protocol.simulator.maas import Inventory, InventoryError
from protocol.simulator.maas.inventory import system_id_for
from protocol.simulator.maas.testing import client_for, running_simulator

YAML = """
domains: [{name: lab}]
zones: [{name: rack-a}, {name: rack-b, description: second rack}]
pools: [{name: default}, {name: gpu}]
tags: [spare]
subnets:
  - cidr: 192.168.50.0/28
    gateway: 192.168.50.1
    reserved: [192.168.50.1-192.168.50.3]
    dynamic: ["192.168.50.12-192.168.50.14"]
machines:
  - {hostname: a1, cpu: 4, memory: 8192, storage: 64, zone: rack-a, tags: [fast]}
  - hostname: b1
    cpu: 16
    memory: 65536
    storage: [{size: 100}, {size: 500, tags: [hdd]}]
    zone: rack-b
    pool: gpu
    domain: lab
    system_id: bbb111
"""


def test_default_inventory_fits_a_gateway_and_a_tenant_cluster() -> None:
    inventory = Inventory.default()
    by_place: dict[tuple[str, str], int] = {}
    small = 0
    for spec in inventory.machines:
        if spec.cpu_count >= 4 and spec.memory >= 8192 and spec.disks[0].size_gb >= 60:
            by_place[(spec.zone, spec.pool)] = by_place.get((spec.zone, spec.pool), 0) + 1
        else:
            small += 1
    assert by_place[("default", "default")] >= 6, "3-node gateway + 3-machine tenant cluster"
    assert small >= 2
    assert len({spec.system_id for spec in inventory.machines}) == len(inventory.machines)
    assert system_id_for("node-01") == system_id_for("node-01")
    assert len(system_id_for("node-01")) == 6


async def test_yaml_inventory_is_served(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(YAML)
    inventory = Inventory.from_yaml(path)
    async with running_simulator(inventory) as sim, client_for(sim) as maas:
        assert [z.name for z in await maas.list_zones()] == ["rack-a", "rack-b"]
        assert [(p.id, p.name) for p in await maas.list_resource_pools()] == [
            (0, "default"),
            (1, "gpu"),
        ]
        (domain,) = await maas.list_domains()
        assert (domain.id, domain.name) == (0, "lab")
        b1 = await maas.get_machine("bbb111")
        assert b1.fqdn == "b1.lab" and b1.storage == 600000.0
        picked = await maas.allocate(storage="root:50,data:400(hdd)")
        assert picked.hostname == "b1"
        (subnet,) = await maas.list_subnets()
        ranges = await maas.unreserved_ip_ranges(subnet.id)
        assert [(r.start, r.end) for r in ranges] == [("192.168.50.4", "192.168.50.11")]
        await maas.deploy("bbb111")
        deployed = await maas.wait_for_status(
            "bbb111", NodeStatus.DEPLOYED, poll_interval=0.02, max_wait=5
        )
        assert deployed.ip_addresses == ("192.168.50.4",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("machines: []", "has no machines"),
        ("machines: [{cpu: 4}]", "must be a mapping with a 'hostname'"),
        ("machines: [{hostname: a, zone: mars}]", "zone 'mars' is not defined (known: default)"),
        ("machines: [{hostname: a, memory: -5}]", "memory (MiB) must be a positive integer"),
        ("machines: [{hostname: a}, {hostname: a}]", "two machines named 'a'"),
        ("machines: [{hostname: a, colour: red}]", "unknown key(s) ['colour']"),
        ("subnets: [{cidr: 10.0.0.0/33}]\nmachines: [{hostname: a}]", "bad cidr"),
        (
            "subnets: [{cidr: 10.0.0.0/24, reserved: [10.0.1.1-10.0.1.5]}]\n"
            "machines: [{hostname: a}]",
            "10.0.1.1 is outside 10.0.0.0/24",
        ),
        ("flavours: []\nmachines: [{hostname: a}]", "unknown section(s) ['flavours']"),
        ("- just a list", "must be a mapping"),
    ],
)
def test_bad_inventories_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(InventoryError) as caught:
        Inventory.from_yaml(path)
    assert message in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="cannot read inventory"):
        Inventory.from_yaml(tmp_path / "missing.yaml")
