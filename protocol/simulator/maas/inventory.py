"""What the simulated MAAS holds: zones, pools, domains, subnets and machines.

An inventory comes from a YAML file (:meth:`Inventory.from_yaml`) or is the built-in default
(:meth:`Inventory.default`). YAML shape, every section optional except ``machines``::

    domains: [{name: maas}]                    # the first is the default domain (id 0)
    zones: [{name: default}, {name: az2, description: rack 2}]
    pools: [{name: default, description: Default pool}, {name: tenants}]
    subnets:
      - cidr: 10.20.0.0/24
        gateway: 10.20.0.1                      # default: first host
        dns_servers: [10.20.0.2]
        reserved: [10.20.0.1-10.20.0.19]        # "a-b", "a" or [a, b]
        dynamic: [10.20.0.200-10.20.0.254]
    machines:
      - hostname: node-01
        cpu: 4                                  # cores
        memory: 8192                            # MiB
        storage: 64                             # GB, one disk; or a list: [{size: 64, tags: [ssd]}]
        zone: default
        pool: default
        domain: maas
        subnet: 10.20.0.0/24                    # default: the first subnet
        tags: [virtual]
        system_id: abc123                       # default: derived from the hostname

Ids follow MAAS: domain "maas" is 0, zone "default" 1, pool "default" 0. Errors name the entry
and the value, and list what would have been valid.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "DiskSpec",
    "DomainSpec",
    "IPv4Range",
    "Inventory",
    "InventoryError",
    "MachineSpec",
    "PoolSpec",
    "SubnetSpec",
    "ZoneSpec",
    "system_id_for",
]

IPv4Range = tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]


class InventoryError(ValueError):
    """The inventory file is wrong; the message names the entry and the value."""


@dataclass(frozen=True, slots=True)
class ZoneSpec:
    id: int
    name: str
    description: str = ""


@dataclass(frozen=True, slots=True)
class PoolSpec:
    id: int
    name: str
    description: str = ""


@dataclass(frozen=True, slots=True)
class DomainSpec:
    id: int
    name: str
    authoritative: bool = True


@dataclass(frozen=True, slots=True)
class SubnetSpec:
    id: int
    cidr: str
    gateway_ip: str | None
    dns_servers: tuple[str, ...] = ()
    reserved: tuple[IPv4Range, ...] = ()
    dynamic: tuple[IPv4Range, ...] = ()
    vlan_id: int = 5001
    fabric: str = "fabric-0"
    space: str = "undefined"

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.cidr)


@dataclass(frozen=True, slots=True)
class DiskSpec:
    size_gb: float
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MachineSpec:
    system_id: str
    hostname: str
    cpu_count: int
    memory: int
    disks: tuple[DiskSpec, ...]
    zone: str = "default"
    pool: str = "default"
    domain: str = "maas"
    subnet_id: int | None = None
    tags: tuple[str, ...] = ()
    architecture: str = "amd64/generic"
    power_type: str = "virsh"

    @property
    def storage_mb(self) -> float:
        """MAAS's ``storage`` field: total disk size in MB (10^6 bytes)."""
        return sum(disk.size_gb for disk in self.disks) * 1000.0


@dataclass(frozen=True, slots=True)
class Inventory:
    zones: tuple[ZoneSpec, ...]
    pools: tuple[PoolSpec, ...]
    domains: tuple[DomainSpec, ...]
    subnets: tuple[SubnetSpec, ...]
    machines: tuple[MachineSpec, ...]
    tags: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        _check_unique("zones", [zone.name for zone in self.zones])
        _check_unique("pools", [pool.name for pool in self.pools])
        _check_unique("domains", [domain.name for domain in self.domains])
        _check_unique("machines", [m.hostname for m in self.machines])
        _check_unique("machine system_ids", [m.system_id for m in self.machines])
        zones = {zone.name for zone in self.zones}
        pools = {pool.name for pool in self.pools}
        domains = {domain.name for domain in self.domains}
        subnets = {subnet.id for subnet in self.subnets}
        for machine in self.machines:
            where = f"machine {machine.hostname!r}"
            _check_ref(where, "zone", machine.zone, zones)
            _check_ref(where, "pool", machine.pool, pools)
            _check_ref(where, "domain", machine.domain, domains)
            if machine.subnet_id is not None and machine.subnet_id not in subnets:
                raise InventoryError(
                    f"{where}: subnet id {machine.subnet_id} is not defined "
                    f"(subnets: {sorted(subnets) or 'none'})"
                )

    @property
    def all_tags(self) -> frozenset[str]:
        """Tags MAAS would know: declared ones plus every machine's and disk's."""
        found = set(self.tags)
        for machine in self.machines:
            found.update(machine.tags)
        return frozenset(found)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Inventory:
        source = Path(path)
        try:
            data = yaml.safe_load(source.read_text(encoding="utf-8"))
        except OSError as exc:
            raise InventoryError(f"cannot read inventory {str(source)!r}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise InventoryError(f"inventory {str(source)!r} is not valid YAML: {exc}") from exc
        if not isinstance(data, Mapping):
            raise InventoryError(
                f"inventory {str(source)!r} must be a mapping with a 'machines' list, got "
                f"{type(data).__name__}"
            )
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Inventory:
        unknown = set(data) - {"zones", "pools", "domains", "subnets", "machines", "tags"}
        if unknown:
            raise InventoryError(
                f"inventory has unknown section(s) {sorted(unknown)}; known: domains, zones, "
                "pools, subnets, machines, tags"
            )
        domains = _named(
            data.get("domains"), "domains", DomainSpec, first_id=0, default=[{"name": "maas"}]
        )
        zones = _named(data.get("zones"), "zones", ZoneSpec, first_id=1, default=[{}])
        pools = _named(
            data.get("pools"),
            "pools",
            PoolSpec,
            first_id=0,
            default=[{"name": "default", "description": "Default pool"}],
        )
        subnets = tuple(_subnet(entry, index) for index, entry in enumerate(_list(data, "subnets")))
        machines_raw = _list(data, "machines")
        if not machines_raw:
            raise InventoryError("inventory has no machines; add a 'machines' list")
        machines = tuple(
            _machine(entry, index, domains[0].name, subnets)
            for index, entry in enumerate(machines_raw)
        )
        tags = tuple(str(tag) for tag in _list(data, "tags"))
        return cls(
            zones=zones,
            pools=pools,
            domains=domains,
            subnets=subnets,
            machines=machines,
            tags=tags,
        )

    @classmethod
    def default(cls) -> Inventory:
        """Enough for a 3-node gateway plus a 3-machine tenant cluster in zone "default",
        pool "default" (8 machines of >= 4 CPU / 8192 MiB / 60 GiB), two more qualifying
        machines in zone "az2" / pool "tenants", and two small machines that do not qualify
        (small-02's 60 GB disk is 55.9 GiB)."""
        machines: list[dict[str, Any]] = []
        for n in range(1, 7):
            machines.append({"hostname": f"node-{n:02d}", "cpu": 4, "memory": 8192, "storage": 100})
        for n in (7, 8):
            machines.append(
                {
                    "hostname": f"node-{n:02d}",
                    "cpu": 8,
                    "memory": 16384,
                    "storage": [{"size": 120, "tags": ["ssd"]}],
                    "tags": ["virtual", "ssd"],
                }
            )
        for n in (9, 10):
            machines.append(
                {
                    "hostname": f"node-{n:02d}",
                    "cpu": 4,
                    "memory": 8192,
                    "storage": 100,
                    "zone": "az2",
                    "pool": "tenants",
                }
            )
        machines.append({"hostname": "small-01", "cpu": 2, "memory": 4096, "storage": 40})
        machines.append({"hostname": "small-02", "cpu": 4, "memory": 4096, "storage": 60})
        for machine in machines:
            machine.setdefault("tags", ["virtual"])
        return cls.from_dict(
            {
                "domains": [{"name": "maas"}],
                "zones": [{"name": "default"}, {"name": "az2", "description": "second rack"}],
                "pools": [
                    {"name": "default", "description": "Default pool"},
                    {"name": "tenants", "description": "Tenant clusters"},
                ],
                "subnets": [
                    {
                        "cidr": "10.20.0.0/24",
                        "gateway": "10.20.0.1",
                        "dns_servers": ["10.20.0.2"],
                        "reserved": ["10.20.0.1-10.20.0.19"],
                        "dynamic": ["10.20.0.200-10.20.0.254"],
                    }
                ],
                "machines": machines,
            }
        )


def system_id_for(hostname: str) -> str:
    """A stable 6-character MAAS-looking system_id for a hostname."""
    alphabet = "abcdefghjkmnpqrstwxy3456789"
    digest = int.from_bytes(hashlib.sha256(hostname.encode()).digest()[:8], "big")
    chars = []
    for _ in range(6):
        digest, index = divmod(digest, len(alphabet))
        chars.append(alphabet[index])
    return "".join(chars)


# -- parsing helpers ------------------------------------------------------------------------


def _list(data: Mapping[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InventoryError(f"inventory '{key}' must be a list, got {type(value).__name__}")
    return value


def _named(
    value: object, section: str, kind: type[Any], *, first_id: int, default: list[dict[str, Any]]
) -> tuple[Any, ...]:
    entries = default if value is None else value
    if not isinstance(entries, list) or not entries:
        raise InventoryError(f"inventory '{section}' must be a non-empty list")
    result = []
    for index, entry in enumerate(entries):
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, Mapping):
            raise InventoryError(f"inventory {section}[{index}] must be a mapping or a name")
        name = str(entry.get("name", "default" if section == "zones" else "")).strip()
        if not name:
            raise InventoryError(f"inventory {section}[{index}] needs a 'name'")
        kwargs: dict[str, Any] = {"id": int(entry.get("id", first_id + index)), "name": name}
        if "description" in entry and kind is not DomainSpec:
            kwargs["description"] = str(entry["description"])
        result.append(kind(**kwargs))
    return tuple(result)


def _subnet(entry: object, index: int) -> SubnetSpec:
    where = f"subnets[{index}]"
    if not isinstance(entry, Mapping) or "cidr" not in entry:
        raise InventoryError(f"inventory {where} must be a mapping with a 'cidr'")
    try:
        network = ipaddress.IPv4Network(str(entry["cidr"]), strict=True)
    except ValueError as exc:
        raise InventoryError(f"inventory {where}: bad cidr {entry['cidr']!r}: {exc}") from exc
    hosts = list(network.hosts())
    gateway = entry.get("gateway", str(hosts[0]) if hosts else None)
    if gateway is not None:
        _address_in(where, "gateway", str(gateway), network)
    return SubnetSpec(
        id=int(entry.get("id", index + 1)),
        cidr=str(network),
        gateway_ip=None if gateway is None else str(gateway),
        dns_servers=tuple(str(server) for server in entry.get("dns_servers", ())),
        reserved=tuple(_ranges(where, "reserved", entry.get("reserved", ()), network)),
        dynamic=tuple(_ranges(where, "dynamic", entry.get("dynamic", ()), network)),
        vlan_id=int(entry.get("vlan_id", 5001 + index)),
        fabric=str(entry.get("fabric", f"fabric-{index}")),
        space=str(entry.get("space", "undefined")),
    )


def _address_in(
    where: str, what: str, text: str, network: ipaddress.IPv4Network
) -> ipaddress.IPv4Address:
    try:
        address = ipaddress.IPv4Address(text.strip())
    except ValueError as exc:
        raise InventoryError(f"inventory {where}: {what} {text!r} is not an IPv4 address") from exc
    if address not in network:
        raise InventoryError(f"inventory {where}: {what} {text} is outside {network}")
    return address


def _ranges(
    where: str, what: str, value: object, network: ipaddress.IPv4Network
) -> list[IPv4Range]:
    if not isinstance(value, (list, tuple)):
        raise InventoryError(f"inventory {where}.{what} must be a list of ranges like 'a-b'")
    ranges = []
    for item in value:
        if isinstance(item, str):
            bounds = item.split("-") if "-" in item else [item, item]
        elif isinstance(item, Sequence) and len(item) == 2:
            bounds = [str(item[0]), str(item[1])]
        else:
            raise InventoryError(f"inventory {where}.{what}: {item!r} is not 'a-b' or [a, b]")
        start = _address_in(where, what, bounds[0], network)
        end = _address_in(where, what, bounds[1], network)
        if end < start:
            raise InventoryError(f"inventory {where}.{what}: range {start}-{end} ends before start")
        ranges.append((start, end))
    return ranges


def _machine(
    entry: object, index: int, default_domain: str, subnets: Sequence[SubnetSpec]
) -> MachineSpec:
    if not isinstance(entry, Mapping) or not entry.get("hostname"):
        raise InventoryError(f"inventory machines[{index}] must be a mapping with a 'hostname'")
    hostname = str(entry["hostname"]).strip()
    where = f"machines[{index}] ({hostname})"
    known = {
        "hostname", "system_id", "cpu", "cpu_count", "memory", "storage", "zone", "pool",
        "domain", "subnet", "tags", "architecture", "power_type",
    }  # fmt: skip
    unknown = set(entry) - known
    if unknown:
        raise InventoryError(f"inventory {where}: unknown key(s) {sorted(unknown)}")
    cpu = _positive_int(where, "cpu", entry.get("cpu", entry.get("cpu_count", 1)))
    memory = _positive_int(where, "memory (MiB)", entry.get("memory", 2048))
    disks = _disks(where, entry.get("storage", 20))
    subnet_id: int | None = subnets[0].id if subnets else None
    if "subnet" in entry:
        wanted = str(entry["subnet"])
        matches = [s.id for s in subnets if wanted in (s.cidr, str(s.id))]
        if not matches:
            raise InventoryError(
                f"inventory {where}: subnet {wanted!r} is not defined "
                f"(subnets: {[s.cidr for s in subnets] or 'none'})"
            )
        subnet_id = matches[0]
    tags = entry.get("tags", ())
    if not isinstance(tags, (list, tuple)):
        raise InventoryError(f"inventory {where}: tags must be a list, got {tags!r}")
    return MachineSpec(
        system_id=str(entry.get("system_id") or system_id_for(hostname)),
        hostname=hostname,
        cpu_count=cpu,
        memory=memory,
        disks=disks,
        zone=str(entry.get("zone", "default")),
        pool=str(entry.get("pool", "default")),
        domain=str(entry.get("domain", default_domain)),
        subnet_id=subnet_id,
        tags=tuple(str(tag) for tag in tags),
        architecture=str(entry.get("architecture", "amd64/generic")),
        power_type=str(entry.get("power_type", "virsh")),
    )


def _positive_int(where: str, what: str, value: object) -> int:
    try:
        number = int(str(value))
    except ValueError:
        number = 0
    if number <= 0:
        raise InventoryError(f"inventory {where}: {what} must be a positive integer, got {value!r}")
    return number


def _disks(where: str, value: object) -> tuple[DiskSpec, ...]:
    items = value if isinstance(value, list) else [value]
    disks = []
    for item in items:
        if isinstance(item, Mapping):
            size, tags = item.get("size"), item.get("tags", ())
        else:
            size, tags = item, ()
        try:
            size_gb = float(str(size))
        except ValueError:
            size_gb = 0.0
        if size_gb <= 0:
            raise InventoryError(f"inventory {where}: disk size must be > 0 GB, got {size!r}")
        disks.append(DiskSpec(size_gb=size_gb, tags=tuple(str(tag) for tag in tags)))
    if not disks:
        raise InventoryError(f"inventory {where}: needs at least one disk")
    return tuple(disks)


def _check_unique(what: str, names: Sequence[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InventoryError(f"inventory has two {what} named {name!r}")
        seen.add(name)


def _check_ref(where: str, what: str, value: str, known: set[str]) -> None:
    if value not in known:
        raise InventoryError(
            f"inventory {where}: {what} {value!r} is not defined "
            f"(known: {', '.join(sorted(known))})"
        )
