"""The simulated machines' lifecycle: every transition in one table, plus saving and loading.

::

    READY ──allocate──> ALLOCATED ──deploy──> DEPLOYING ──deployed──> DEPLOYED
      │                                          │
      └──────────────deploy (allocates)──────────┘──failed──> FAILED_DEPLOYMENT
    ALLOCATED / DEPLOYING / DEPLOYED / FAILED_DEPLOYMENT ──release──> RELEASING ──released──> READY

A pair missing from :data:`TRANSITIONS` is refused with MAAS's own 409 text (MAAS API 2.0,
src/maasserver/api/machines.py). Timers that move DEPLOYING and RELEASING on live in the server;
this module never sleeps.
"""

from __future__ import annotations

import base64
import enum
import ipaddress
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol.maas.models import NodeStatus, PowerState
from protocol.simulator.maas.inventory import (
    DiskSpec,
    DomainSpec,
    Inventory,
    IPv4Range,
    MachineSpec,
    PoolSpec,
    SubnetSpec,
    ZoneSpec,
)

__all__ = [
    "TRANSITIONS",
    "Event",
    "IllegalTransition",
    "SimMachine",
    "SimState",
    "transition",
]

STATE_FORMAT = 1


class Event(enum.Enum):
    ALLOCATE = "allocate"
    DEPLOY = "deploy"
    DEPLOYED = "deployed"
    DEPLOY_FAILED = "deploy-failed"
    RELEASE = "release"
    RELEASED = "released"


S = NodeStatus

#: (status, event) -> next status. Everything not listed is refused.
TRANSITIONS: dict[tuple[NodeStatus, Event], NodeStatus] = {
    (S.READY, Event.ALLOCATE): S.ALLOCATED,
    (S.READY, Event.DEPLOY): S.DEPLOYING,
    (S.ALLOCATED, Event.DEPLOY): S.DEPLOYING,
    (S.FAILED_DEPLOYMENT, Event.DEPLOY): S.DEPLOYING,
    (S.DEPLOYING, Event.DEPLOYED): S.DEPLOYED,
    (S.DEPLOYING, Event.DEPLOY_FAILED): S.FAILED_DEPLOYMENT,
    (S.ALLOCATED, Event.RELEASE): S.RELEASING,
    (S.DEPLOYING, Event.RELEASE): S.RELEASING,
    (S.DEPLOYED, Event.RELEASE): S.RELEASING,
    (S.FAILED_DEPLOYMENT, Event.RELEASE): S.RELEASING,
    (S.RELEASING, Event.RELEASED): S.READY,
}

#: statuses in which a release is already done or under way: MAAS answers 200 and does nothing
RELEASE_NOOP: frozenset[NodeStatus] = frozenset({S.READY, S.RELEASING})


class IllegalTransition(Exception):
    """The machine's status does not allow the event; ``str()`` is MAAS's 409 text."""


def transition(status: NodeStatus, event: Event) -> NodeStatus:
    try:
        return TRANSITIONS[(status, event)]
    except KeyError:
        if event is Event.DEPLOY:
            raise IllegalTransition(
                f"Can't deploy a machine that is in the '{status.label}' state"
            ) from None
        if event is Event.RELEASE:
            raise IllegalTransition(
                f"Machine cannot be released in its current state ('{status.label}')."
            ) from None
        raise IllegalTransition(
            f"Machine cannot {event.value} in its current state ('{status.label}')."
        ) from None


@dataclass(slots=True)
class SimMachine:
    """One machine: its fixed spec and what has happened to it."""

    spec: MachineSpec
    status: NodeStatus = S.READY
    owner: str | None = None
    agent_name: str = ""
    ip_address: str | None = None
    power_state: PowerState = PowerState.OFF
    osystem: str = ""
    distro_series: str = ""
    hwe_kernel: str | None = None
    user_data: bytes | None = None
    status_message: str = "Ready"
    deployments: int = 0

    @property
    def system_id(self) -> str:
        return self.spec.system_id

    @property
    def hostname(self) -> str:
        return self.spec.hostname

    @property
    def fqdn(self) -> str:
        return f"{self.spec.hostname}.{self.spec.domain}"

    @property
    def user_data_text(self) -> str | None:
        """The deployed cloud-init document, decoded (None if none was given)."""
        return None if self.user_data is None else self.user_data.decode("utf-8", "replace")

    def apply(self, event: Event) -> NodeStatus:
        self.status = transition(self.status, event)
        return self.status

    def to_json(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "spec": {
                "system_id": spec.system_id,
                "hostname": spec.hostname,
                "cpu_count": spec.cpu_count,
                "memory": spec.memory,
                "disks": [{"size_gb": d.size_gb, "tags": list(d.tags)} for d in spec.disks],
                "zone": spec.zone,
                "pool": spec.pool,
                "domain": spec.domain,
                "subnet_id": spec.subnet_id,
                "tags": list(spec.tags),
                "architecture": spec.architecture,
                "power_type": spec.power_type,
            },
            "status": int(self.status),
            "owner": self.owner,
            "agent_name": self.agent_name,
            "ip_address": self.ip_address,
            "power_state": self.power_state.value,
            "osystem": self.osystem,
            "distro_series": self.distro_series,
            "hwe_kernel": self.hwe_kernel,
            "user_data": None
            if self.user_data is None
            else base64.b64encode(self.user_data).decode("ascii"),
            "status_message": self.status_message,
            "deployments": self.deployments,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SimMachine:
        raw = data["spec"]
        spec = MachineSpec(
            system_id=raw["system_id"],
            hostname=raw["hostname"],
            cpu_count=int(raw["cpu_count"]),
            memory=int(raw["memory"]),
            disks=tuple(DiskSpec(float(d["size_gb"]), tuple(d["tags"])) for d in raw["disks"]),
            zone=raw["zone"],
            pool=raw["pool"],
            domain=raw["domain"],
            subnet_id=raw["subnet_id"],
            tags=tuple(raw["tags"]),
            architecture=raw["architecture"],
            power_type=raw["power_type"],
        )
        user_data = data.get("user_data")
        return cls(
            spec=spec,
            status=NodeStatus(int(data["status"])),
            owner=data.get("owner"),
            agent_name=data.get("agent_name", ""),
            ip_address=data.get("ip_address"),
            power_state=PowerState.parse(data.get("power_state")),
            osystem=data.get("osystem", ""),
            distro_series=data.get("distro_series", ""),
            hwe_kernel=data.get("hwe_kernel"),
            user_data=None if user_data is None else base64.b64decode(user_data),
            status_message=data.get("status_message", ""),
            deployments=int(data.get("deployments", 0)),
        )


@dataclass(slots=True)
class SimState:
    """Everything the simulator knows; what :meth:`save` writes and :meth:`load` reads."""

    inventory: Inventory
    machines: dict[str, SimMachine] = field(default_factory=dict)

    @classmethod
    def fresh(cls, inventory: Inventory) -> SimState:
        return cls(inventory, {m.system_id: SimMachine(spec=m) for m in inventory.machines})

    def find(self, ident: str) -> SimMachine | None:
        """By system_id, hostname or fqdn."""
        if ident in self.machines:
            return self.machines[ident]
        for machine in self.machines.values():
            if ident in (machine.hostname, machine.fqdn):
                return machine
        return None

    def zone(self, name: str) -> ZoneSpec | None:
        return next((z for z in self.inventory.zones if z.name == name), None)

    def pool(self, name: str) -> PoolSpec | None:
        return next((p for p in self.inventory.pools if p.name == name), None)

    def domain(self, name: str) -> DomainSpec | None:
        return next((d for d in self.inventory.domains if d.name == name), None)

    def subnet(self, subnet_id: int | None) -> SubnetSpec | None:
        return next((s for s in self.inventory.subnets if s.id == subnet_id), None)

    # -- addresses ----------------------------------------------------------------------

    def used_addresses(self, subnet: SubnetSpec) -> set[ipaddress.IPv4Address]:
        network = subnet.network
        used = set()
        for machine in self.machines.values():
            if machine.ip_address is not None:
                address = ipaddress.IPv4Address(machine.ip_address)
                if address in network:
                    used.add(address)
        return used

    def unreserved(self, subnet: SubnetSpec) -> list[tuple[ipaddress.IPv4Address, int]]:
        """Runs of addresses outside the gateway, the reserved and dynamic ranges and the
        addresses in use: ``[(first, count), ...]``, lowest first."""
        network = subnet.network
        hosts = list(_host_bounds(network))
        if not hosts:
            return []
        blocked = [(int(lo), int(hi)) for lo, hi in (*subnet.reserved, *subnet.dynamic)]
        taken = self.used_addresses(subnet)
        if subnet.gateway_ip is not None:
            taken.add(ipaddress.IPv4Address(subnet.gateway_ip))
        blocked.extend((int(address), int(address)) for address in taken)
        runs: list[tuple[ipaddress.IPv4Address, int]] = []
        cursor, last = hosts
        for lo, hi in sorted(blocked):
            if hi < cursor:
                continue
            if lo > cursor:
                end = min(lo - 1, last)
                runs.append((ipaddress.IPv4Address(cursor), end - cursor + 1))
            cursor = max(cursor, hi + 1)
            if cursor > last:
                break
        if cursor <= last:
            runs.append((ipaddress.IPv4Address(cursor), last - cursor + 1))
        return runs

    def assign_address(self, machine: SimMachine) -> str | None:
        """The lowest unreserved address of the machine's subnet (None without a subnet)."""
        subnet = self.subnet(machine.spec.subnet_id)
        if subnet is None:
            return None
        runs = self.unreserved(subnet)
        return str(runs[0][0]) if runs else None

    # -- persistence ----------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        inv = self.inventory
        return {
            "format": STATE_FORMAT,
            "zones": [
                {"id": z.id, "name": z.name, "description": z.description} for z in inv.zones
            ],
            "pools": [
                {"id": p.id, "name": p.name, "description": p.description} for p in inv.pools
            ],
            "domains": [{"id": d.id, "name": d.name} for d in inv.domains],
            "subnets": [
                {
                    "id": s.id,
                    "cidr": s.cidr,
                    "gateway": s.gateway_ip,
                    "dns_servers": list(s.dns_servers),
                    "reserved": [f"{lo}-{hi}" for lo, hi in s.reserved],
                    "dynamic": [f"{lo}-{hi}" for lo, hi in s.dynamic],
                    "vlan_id": s.vlan_id,
                    "fabric": s.fabric,
                    "space": s.space,
                }
                for s in inv.subnets
            ],
            "tags": list(inv.tags),
            "machines": [machine.to_json() for machine in self.machines.values()],
        }

    def save(self, path: str | Path) -> None:
        """Write atomically (temp file + rename) so a crash never leaves half a file."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(self.to_json(), handle, indent=1, sort_keys=True)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path) -> SimState:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("format") != STATE_FORMAT:
            raise ValueError(
                f"state file {str(path)!r} has format {data.get('format')!r}, expected "
                f"{STATE_FORMAT}; delete it to start from the inventory again"
            )
        machines = [SimMachine.from_json(item) for item in data["machines"]]
        inventory = Inventory(
            zones=tuple(ZoneSpec(z["id"], z["name"], z["description"]) for z in data["zones"]),
            pools=tuple(PoolSpec(p["id"], p["name"], p["description"]) for p in data["pools"]),
            domains=tuple(DomainSpec(d["id"], d["name"]) for d in data["domains"]),
            subnets=tuple(_subnet_from_json(s) for s in data["subnets"]),
            machines=tuple(machine.spec for machine in machines),
            tags=tuple(data.get("tags", ())),
        )
        return cls(inventory, {machine.system_id: machine for machine in machines})


def _host_bounds(network: ipaddress.IPv4Network) -> tuple[int, int] | tuple[()]:
    """First and last usable host of ``network`` as integers (() if it has none)."""
    if network.prefixlen >= 31:
        return (int(network.network_address), int(network.broadcast_address))
    if network.num_addresses < 4:
        return ()
    return (int(network.network_address) + 1, int(network.broadcast_address) - 1)


def _range(text: str) -> IPv4Range:
    lo, _, hi = text.partition("-")
    return (ipaddress.IPv4Address(lo), ipaddress.IPv4Address(hi or lo))


def _ranges(items: Iterable[str]) -> tuple[IPv4Range, ...]:
    return tuple(_range(item) for item in items)


def _subnet_from_json(data: dict[str, Any]) -> SubnetSpec:
    return SubnetSpec(
        id=int(data["id"]),
        cidr=data["cidr"],
        gateway_ip=data["gateway"],
        dns_servers=tuple(data["dns_servers"]),
        reserved=_ranges(data["reserved"]),
        dynamic=_ranges(data["dynamic"]),
        vlan_id=int(data["vlan_id"]),
        fabric=data["fabric"],
        space=data["space"],
    )
