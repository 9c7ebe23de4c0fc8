"""JSON bodies in MAAS API 2.0's shapes (field names from src/maasserver/api/*.py, values like
the examples MAAS ships in src/maasserver/api/examples/)."""

from __future__ import annotations

from typing import Any

from protocol.maas.models import NodeStatus
from protocol.simulator.maas.inventory import DomainSpec, PoolSpec, SubnetSpec, ZoneSpec
from protocol.simulator.maas.state import SimMachine, SimState

__all__ = [
    "API_PREFIX",
    "domain_json",
    "ip_ranges_json",
    "machine_json",
    "pool_json",
    "subnet_json",
    "zone_json",
]

API_PREFIX = "/MAAS/api/2.0/"

_STATUS_ACTION = {NodeStatus.DEPLOYING: "", NodeStatus.RELEASING: ""}


def zone_json(zone: ZoneSpec) -> dict[str, Any]:
    return {
        "name": zone.name,
        "description": zone.description,
        "id": zone.id,
        "resource_uri": f"{API_PREFIX}zones/{zone.name}/",
    }


def pool_json(pool: PoolSpec) -> dict[str, Any]:
    return {
        "name": pool.name,
        "description": pool.description,
        "id": pool.id,
        "resource_uri": f"{API_PREFIX}resourcepool/{pool.id}/",
    }


def domain_json(state: SimState, domain: DomainSpec) -> dict[str, Any]:
    records = sum(
        1
        for machine in state.machines.values()
        if machine.spec.domain == domain.name and machine.ip_address is not None
    )
    return {
        "authoritative": domain.authoritative,
        "ttl": None,
        "id": domain.id,
        "name": domain.name,
        "is_default": domain == state.inventory.domains[0],
        "resource_record_count": records,
        "resource_uri": f"{API_PREFIX}domains/{domain.id}/",
    }


def _vlan_json(subnet: SubnetSpec) -> dict[str, Any]:
    return {
        "vid": 0,
        "mtu": 1500,
        "dhcp_on": bool(subnet.dynamic),
        "external_dhcp": None,
        "relay_vlan": None,
        "fabric": subnet.fabric,
        "primary_rack": "sim001",
        "secondary_rack": None,
        "name": "untagged",
        "id": subnet.vlan_id,
        "space": subnet.space,
        "fabric_id": int(subnet.fabric.rsplit("-", 1)[-1]) if subnet.fabric[-1:].isdigit() else 0,
        "resource_uri": f"{API_PREFIX}vlans/{subnet.vlan_id}/",
    }


def subnet_json(subnet: SubnetSpec) -> dict[str, Any]:
    return {
        "name": subnet.cidr,
        "description": "",
        "vlan": _vlan_json(subnet),
        "cidr": subnet.cidr,
        "rdns_mode": 2,
        "gateway_ip": subnet.gateway_ip,
        "dns_servers": list(subnet.dns_servers),
        "allow_dns": True,
        "allow_proxy": True,
        "active_discovery": False,
        "managed": True,
        "disabled_boot_architectures": [],
        "id": subnet.id,
        "space": subnet.space,
        "resource_uri": f"{API_PREFIX}subnets/{subnet.id}/",
    }


def ip_ranges_json(state: SimState) -> list[dict[str, Any]]:
    """``GET ipranges/``: the reserved and dynamic ranges of every subnet."""
    result: list[dict[str, Any]] = []
    for subnet in state.inventory.subnets:
        for kind, ranges in (("reserved", subnet.reserved), ("dynamic", subnet.dynamic)):
            for lo, hi in ranges:
                range_id = len(result) + 1
                result.append(
                    {
                        "id": range_id,
                        "type": kind,
                        "start_ip": str(lo),
                        "end_ip": str(hi),
                        "comment": "",
                        "user": "admin",
                        "subnet": subnet_json(subnet),
                        "resource_uri": f"{API_PREFIX}ipranges/{range_id}/",
                    }
                )
    return result


def visible_address(machine: SimMachine) -> str | None:
    """MAAS claims the address when deployment starts but reports it once Deployed (compare
    a Deploying and a Deployed machine in MAAS's responses)."""
    return machine.ip_address if machine.status is NodeStatus.DEPLOYED else None


def _disks_json(machine: SimMachine) -> list[dict[str, Any]]:
    disks = []
    for index, disk in enumerate(machine.spec.disks):
        size = int(disk.size_gb * 1000**3)
        name = f"sd{chr(ord('a') + index)}"
        device_id = index + 1
        disks.append(
            {
                "id": device_id,
                "name": name,
                "type": "physical",
                "system_id": machine.system_id,
                "size": size,
                "block_size": 512,
                "available_size": size if machine.status != NodeStatus.DEPLOYED else 0,
                "used_size": size if machine.status == NodeStatus.DEPLOYED else 0,
                "used_for": "Unused",
                "tags": list(disk.tags),
                "path": f"/dev/disk/by-dname/{name}",
                "id_path": None,
                "model": "QEMU HARDDISK",
                "serial": f"{machine.system_id}-{name}",
                "uuid": None,
                "filesystem": None,
                "partitions": [],
                "partition_table_type": None,
                "storage_pool": None,
                "numa_node": 0,
                "firmware_version": None,
                "resource_uri": f"{API_PREFIX}nodes/{machine.system_id}/blockdevices/{device_id}/",
            }
        )
    return disks


def _interface_json(state: SimState, machine: SimMachine) -> dict[str, Any]:
    subnet = state.subnet(machine.spec.subnet_id)
    links: list[dict[str, Any]] = []
    if subnet is not None:
        link: dict[str, Any] = {"id": 1, "mode": "auto", "subnet": subnet_json(subnet)}
        address = visible_address(machine)
        if address is not None:
            link["ip_address"] = address
        links.append(link)
    digest = sum(machine.system_id.encode()) % 256
    return {
        "id": 1,
        "name": "eth0",
        "type": "physical",
        "enabled": True,
        "mac_address": f"52:54:00:{digest:02x}:{len(machine.hostname) % 256:02x}:01",
        "system_id": machine.system_id,
        "vlan": None if subnet is None else _vlan_json(subnet),
        "links": links,
        "tags": [],
        "params": "",
        "parents": [],
        "children": [],
        "effective_mtu": 1500,
        "link_connected": True,
        "link_speed": 1000,
        "interface_speed": 1000,
        "discovered": [],
        "product": None,
        "vendor": None,
        "firmware_version": None,
        "resource_uri": f"{API_PREFIX}nodes/{machine.system_id}/interfaces/1/",
    }


def machine_json(
    state: SimState, machine: SimMachine, *, constraints_by_type: dict[str, Any] | None = None
) -> dict[str, Any]:
    spec = machine.spec
    zone = state.zone(spec.zone)
    pool = state.pool(spec.pool)
    domain = state.domain(spec.domain)
    subnet = state.subnet(spec.subnet_id)
    disks = _disks_json(machine)
    interface = _interface_json(state, machine)
    data: dict[str, Any] = {
        "system_id": spec.system_id,
        "hostname": spec.hostname,
        "description": "",
        "hardware_uuid": None,
        "domain": None if domain is None else domain_json(state, domain),
        "fqdn": machine.fqdn,
        "owner": machine.owner,
        "owner_data": {},
        "locked": False,
        "architecture": spec.architecture,
        "min_hwe_kernel": "",
        "hwe_kernel": machine.hwe_kernel,
        "cpu_count": spec.cpu_count,
        "cpu_speed": 2400,
        "memory": spec.memory,
        "swap_size": None,
        "storage": spec.storage_mb,
        "status": int(machine.status),
        "status_name": machine.status.label,
        "status_message": machine.status_message,
        "status_action": _STATUS_ACTION.get(machine.status, ""),
        "osystem": machine.osystem,
        "distro_series": machine.distro_series,
        "netboot": machine.status != NodeStatus.DEPLOYED,
        "power_type": spec.power_type,
        "power_state": machine.power_state.value,
        "tag_names": list(spec.tags),
        "address_ttl": None,
        "ip_addresses": [] if (ip := visible_address(machine)) is None else [ip],
        "interface_set": [interface],
        "boot_interface": interface,
        "zone": None if zone is None else zone_json(zone),
        "pool": None if pool is None else pool_json(pool),
        "disable_ipv4": False,
        "boot_disk": disks[0] if disks else None,
        "blockdevice_set": disks,
        "physicalblockdevice_set": disks,
        "virtualblockdevice_set": [],
        "volume_groups": [],
        "raids": [],
        "cache_sets": [],
        "bcaches": [],
        "special_filesystems": [],
        "node_type": 0,
        "node_type_name": "Machine",
        "parent": None,
        "pod": None,
        "default_gateways": {
            "ipv4": {"gateway_ip": None if subnet is None else subnet.gateway_ip, "link_id": None},
            "ipv6": {"gateway_ip": None, "link_id": None},
        },
        "commissioning_status": 2,
        "commissioning_status_name": "Passed",
        "testing_status": 2,
        "testing_status_name": "Passed",
        "hardware_info": {"system_vendor": "QEMU", "system_product": "Standard PC (Q35)"},
        "numanode_set": [{"index": 0, "memory": spec.memory, "cores": list(range(spec.cpu_count))}],
        "virtualmachine_id": None,
        "workload_annotations": {},
        "resource_uri": f"{API_PREFIX}machines/{spec.system_id}/",
    }
    if constraints_by_type is not None:
        data["constraints_by_type"] = constraints_by_type
    return data
