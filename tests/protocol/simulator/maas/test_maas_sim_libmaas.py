"""Canonical's python-libmaas, unchanged, against the simulator: it reads describe/, lists
machines, zones and resource pools, allocates, deploys and releases.

python-libmaas 0.6.8 installs and imports on Python 3.11 (it carries its own fallback for
``collections.Sequence``). What it needs from a server, and the simulator provides: an absolute
``uri`` per handler in describe/, multipart bodies with base64 transfer-encoded parts, and an
empty, nameless multipart part when a call has no parameters (release).
"""

from __future__ import annotations

import warnings

import pytest

from protocol.maas import NodeStatus
from protocol.simulator.maas import MaasSimulator

try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from maas.client import connect
except ImportError as exc:  # pragma: no cover - depends on the environment
    pytest.skip(
        f"python-libmaas is not installed ({exc}); it is in the 'test' extra: "
        "pip install -e '.[test]'",
        allow_module_level=True,
    )

# python-libmaas builds its aiohttp connector with the deprecated verify_ssl argument
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


async def test_python_libmaas_drives_the_simulator(maas_sim: MaasSimulator) -> None:
    client = await connect(maas_sim.url, apikey=maas_sim.api_key.reveal())

    machines = await client.machines.list()
    assert len(machines) == len(maas_sim.machines)
    node = next(m for m in machines if m.hostname == "node-01")
    assert node.status == NodeStatus.READY and node.zone.name == "default"
    assert node.pool.name == "default" and node.fqdn == "node-01.maas"
    assert [z.name for z in await client.zones.list()] == ["default", "az2"]
    assert [p.name for p in await client.resource_pools.list()] == ["default", "tenants"]

    machine = await client.machines.allocate(
        cpus=4, memory=8192, zone="default", tags=["virtual"], agent_name="libmaas"
    )
    assert machine.status == NodeStatus.ALLOCATED
    assert maas_sim.machine(machine.system_id).agent_name == "libmaas"

    user_data = b"#cloud-config\npackages: [htop]\n"
    machine = await machine.deploy(
        user_data=user_data, distro_series="jammy", wait=True, wait_interval=0.02
    )
    assert machine.status == NodeStatus.DEPLOYED
    assert machine.ip_addresses and machine.fqdn.endswith(".maas")
    assert maas_sim.user_data(machine.system_id) == user_data.decode()

    machine = await machine.release(wait=True, wait_interval=0.02)
    assert machine.status == NodeStatus.READY
    assert maas_sim.machine(machine.system_id).ip_address is None


async def test_python_libmaas_sees_no_match_as_machine_not_found(maas_sim: MaasSimulator) -> None:
    from maas.client.viscera.machines import MachineNotFound

    client = await connect(maas_sim.url, apikey=maas_sim.api_key.reveal())
    with pytest.raises(MachineNotFound):
        await client.machines.allocate(cpus=64)
