"""What ``cluster.create`` and ``cluster.delete`` are asked for: their params checked and parsed,
and the cloud-init a tenant node is deployed with.

``minDiskSizeInGB`` is compared with a machine's boot disk (MAAS's storage constraint
``root:<GB>`` applies to it); ``minCPU`` or ``minMemInMB`` of 0 means no constraint.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import yaml

from agent.maas_errors import invalid_argument
from agent.machine_work import boot_disk_gb, ref_name
from protocol.maas.models import Machine

__all__ = [
    "MAX_POOL_SIZE",
    "ClusterSpec",
    "MachinePoolSpec",
    "parse_cluster_create",
    "parse_cluster_delete",
    "render_tenant_user_data",
]

MAX_POOL_SIZE: Final = 500

#: a cluster uid: it becomes the MAAS agent name of the cluster's machines
_UID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


@dataclass(frozen=True, slots=True)
class MachinePoolSpec:
    name: str
    size: int
    control_plane: bool
    azs: tuple[str, ...]
    resource_pool: str | None
    min_cpu: int
    min_mem_mib: int
    min_disk_gb: int
    tags: tuple[str, ...]

    def fits(self, machine: Machine) -> bool:
        """Whether ``machine`` meets this pool's constraints (to adopt a held machine)."""
        return (
            machine.cpu_count >= self.min_cpu
            and machine.memory >= self.min_mem_mib
            and boot_disk_gb(machine) >= self.min_disk_gb
            and (not self.azs or ref_name(machine.zone) in self.azs)
            and (not self.resource_pool or ref_name(machine.pool) == self.resource_pool)
            and set(self.tags) <= set(machine.tag_names)
        )

    def describe(self) -> str:
        parts = []
        if self.min_cpu:
            parts.append(f">= {self.min_cpu} CPU")
        if self.min_mem_mib:
            parts.append(f">= {self.min_mem_mib} MiB")
        if self.min_disk_gb:
            parts.append(f">= {self.min_disk_gb} GB disk")
        if self.azs:
            parts.append(f"zone {' or '.join(self.azs)}")
        if self.resource_pool:
            parts.append(f"resource pool {self.resource_pool}")
        if self.tags:
            parts.append(f"tags {','.join(self.tags)}")
        return ", ".join(parts) or "no constraints"


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    uid: str
    name: str
    domain: str
    pools: tuple[MachinePoolSpec, ...]
    poll_interval: float | None = None

    @property
    def ordered_pools(self) -> list[MachinePoolSpec]:
        """Control-plane pools first, otherwise in the request's order."""
        return sorted(self.pools, key=lambda pool: not pool.control_plane)


def parse_cluster_create(params: Mapping[str, Any], default_domain: str) -> ClusterSpec:
    """Check ``cluster.create``'s params; raise ``invalid_argument`` saying what to fix."""
    uid = params.get("clusterUid")
    if not isinstance(uid, str) or not _UID.fullmatch(uid):
        raise invalid_argument(
            f"clusterUid={uid!r} is not a valid cluster uid: give the cluster's uid, 1-128 "
            "letters, digits, '.', '_', ':' or '-' (it becomes the machines' MAAS agent name)"
        )
    name = params.get("name")
    if not isinstance(name, str) or not name.strip() or not name.isprintable() or len(name) > 253:
        raise invalid_argument(
            f"name={name!r} must be the cluster's name: 1-253 printable characters"
        )
    domain = params.get("domain", default_domain)
    if domain is None or domain == "":
        domain = default_domain
    if not isinstance(domain, str):
        raise invalid_argument(f"domain={domain!r} must be a MAAS domain name such as 'maas'")
    poll = params.get("pollInterval")
    if poll is not None and (
        isinstance(poll, bool) or not isinstance(poll, (int, float)) or not 0 < poll <= 300
    ):
        raise invalid_argument(f"pollInterval={poll!r} must be a number of seconds in (0, 300]")
    raw_pools = params.get("machinePools")
    if not isinstance(raw_pools, list) or not raw_pools:
        raise invalid_argument(
            f"machinePools={raw_pools!r} must be a non-empty list of machine pools, each "
            '{"name", "size", "isControlPlane", "azs", "resourcePool", "minCPU", "minMemInMB", '
            '"minDiskSizeInGB", "tags"}'
        )
    pools = [_parse_pool(raw, index) for index, raw in enumerate(raw_pools)]
    names = [pool.name for pool in pools]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise invalid_argument(
            f"machinePools: pool name(s) {duplicates} appear twice; names must differ"
        )
    return ClusterSpec(uid, name, domain, tuple(pools), None if poll is None else float(poll))


def parse_cluster_delete(params: Mapping[str, Any]) -> str:
    """The uid ``cluster.delete`` is asked to delete; ``invalid_argument`` when it is not one."""
    uid = params.get("clusterUid")
    if not isinstance(uid, str) or not _UID.fullmatch(uid):
        raise invalid_argument(f"clusterUid={uid!r} must be the uid of the cluster to delete")
    return uid


def _parse_pool(raw: object, index: int) -> MachinePoolSpec:
    where = f"machinePools[{index}]"
    if not isinstance(raw, Mapping):
        raise invalid_argument(f"{where} must be a map, got {type(raw).__name__}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise invalid_argument(f"{where}.name={name!r} must be the machine pool's name")
    where = f"machine pool {name!r}"

    def count(key: str, low: int, high: int, default: int | None = None) -> int:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise invalid_argument(
                f"{where}: {key}={value!r} must be a whole number from {low} to {high}"
            )
        return value

    def strings(key: str) -> tuple[str, ...]:
        value = raw.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise invalid_argument(f"{where}: {key}={value!r} must be a list of non-empty names")
        return tuple(value)

    control_plane = raw.get("isControlPlane", False)
    if not isinstance(control_plane, bool):
        raise invalid_argument(f"{where}: isControlPlane={control_plane!r} must be true or false")
    resource_pool = raw.get("resourcePool")
    if resource_pool is not None and not isinstance(resource_pool, str):
        raise invalid_argument(
            f"{where}: resourcePool={resource_pool!r} must be a MAAS resource pool"
        )
    return MachinePoolSpec(
        name=name,
        size=count("size", 1, MAX_POOL_SIZE),
        control_plane=control_plane,
        azs=tuple(dict.fromkeys(strings("azs"))),
        resource_pool=resource_pool or None,
        min_cpu=count("minCPU", 0, 4096, 0),
        min_mem_mib=count("minMemInMB", 0, 1 << 24, 0),
        min_disk_gb=count("minDiskSizeInGB", 0, 1 << 20, 0),
        tags=strings("tags"),
    )


def render_tenant_user_data(cluster: ClusterSpec, pool: MachinePoolSpec) -> str:
    """A tenant node's ``#cloud-config``: it names the cluster and the node's pool. No secret."""
    about = {
        "clusterUid": cluster.uid,
        "clusterName": cluster.name,
        "domain": cluster.domain,
        "machinePool": pool.name,
        "controlPlane": pool.control_plane,
    }
    document = {
        "write_files": [
            {
                "path": "/etc/palette/cluster.yaml",
                "permissions": "0644",
                "content": yaml.safe_dump(about, sort_keys=True),
            }
        ]
    }
    return f"#cloud-config\n# Palette tenant cluster {cluster.uid}\n" + yaml.safe_dump(
        document, sort_keys=False
    )
