"""Typed views of MAAS API 2.0 responses.

Every type is a frozen, slotted dataclass built by ``from_json``, which takes what it knows,
ignores fields it does not know (MAAS adds fields in every release) and gives optional fields a
default when they are missing (a trimmed response, an older MAAS, a rack controller in the
machine list). The response itself is kept in ``raw`` for anything not modelled here.

Statuses and labels are MAAS's own (src/maasserver/enum.py, NODE_STATUS and NODE_STATUS_CHOICES).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Self

__all__ = [
    "FAILURE_STATUSES",
    "Domain",
    "IpRange",
    "Machine",
    "MaasVersion",
    "NodeStatus",
    "PowerState",
    "Ref",
    "ResourcePool",
    "Subnet",
    "Zone",
]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class NodeStatus(enum.IntEnum):
    """``status`` of a machine (MAAS NODE_STATUS)."""

    NEW = 0
    COMMISSIONING = 1
    FAILED_COMMISSIONING = 2
    MISSING = 3
    READY = 4
    RESERVED = 5
    DEPLOYED = 6
    RETIRED = 7
    BROKEN = 8
    DEPLOYING = 9
    ALLOCATED = 10
    FAILED_DEPLOYMENT = 11
    RELEASING = 12
    FAILED_RELEASING = 13
    DISK_ERASING = 14
    FAILED_DISK_ERASING = 15
    RESCUE_MODE = 16
    ENTERING_RESCUE_MODE = 17
    FAILED_ENTERING_RESCUE_MODE = 18
    EXITING_RESCUE_MODE = 19
    FAILED_EXITING_RESCUE_MODE = 20
    TESTING = 21
    FAILED_TESTING = 22

    @property
    def label(self) -> str:
        """MAAS's display name, as in ``status_name`` ("Failed deployment")."""
        return _STATUS_LABELS[self]

    @property
    def filter_value(self) -> str:
        """The value ``GET machines/?status=`` takes ("failed_deployment")."""
        return self.name.lower()


_STATUS_LABELS: dict[NodeStatus, str] = {
    NodeStatus.NEW: "New",
    NodeStatus.COMMISSIONING: "Commissioning",
    NodeStatus.FAILED_COMMISSIONING: "Failed commissioning",
    NodeStatus.MISSING: "Missing",
    NodeStatus.READY: "Ready",
    NodeStatus.RESERVED: "Reserved",
    NodeStatus.ALLOCATED: "Allocated",
    NodeStatus.DEPLOYING: "Deploying",
    NodeStatus.DEPLOYED: "Deployed",
    NodeStatus.RETIRED: "Retired",
    NodeStatus.BROKEN: "Broken",
    NodeStatus.FAILED_DEPLOYMENT: "Failed deployment",
    NodeStatus.RELEASING: "Releasing",
    NodeStatus.FAILED_RELEASING: "Releasing failed",
    NodeStatus.DISK_ERASING: "Disk erasing",
    NodeStatus.FAILED_DISK_ERASING: "Failed disk erasing",
    NodeStatus.RESCUE_MODE: "Rescue mode",
    NodeStatus.ENTERING_RESCUE_MODE: "Entering rescue mode",
    NodeStatus.FAILED_ENTERING_RESCUE_MODE: "Failed to enter rescue mode",
    NodeStatus.EXITING_RESCUE_MODE: "Exiting rescue mode",
    NodeStatus.FAILED_EXITING_RESCUE_MODE: "Failed to exit rescue mode",
    NodeStatus.TESTING: "Testing",
    NodeStatus.FAILED_TESTING: "Failed testing",
}

#: statuses a wait gives up on: the machine will not move on without someone acting
FAILURE_STATUSES: frozenset[NodeStatus] = frozenset(
    {
        NodeStatus.FAILED_COMMISSIONING,
        NodeStatus.BROKEN,
        NodeStatus.FAILED_DEPLOYMENT,
        NodeStatus.FAILED_RELEASING,
        NodeStatus.FAILED_DISK_ERASING,
        NodeStatus.FAILED_ENTERING_RESCUE_MODE,
        NodeStatus.FAILED_EXITING_RESCUE_MODE,
        NodeStatus.FAILED_TESTING,
    }
)


class PowerState(enum.Enum):
    ON = "on"
    OFF = "off"
    UNKNOWN = "unknown"
    ERROR = "error"

    @classmethod
    def parse(cls, value: object) -> PowerState:
        try:
            return cls(str(value).lower())
        except ValueError:
            return cls.UNKNOWN


# -- tolerant field readers -----------------------------------------------------------------


def _str(data: Mapping[str, Any], key: str, default: str = "") -> str:
    value = data.get(key)
    return default if value is None else str(value)


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return None if value is None or value == "" else str(value)


def _int(data: Mapping[str, Any], key: str, default: int = 0) -> int:
    value = data.get(key)
    try:
        return default if value is None else int(value)
    except (TypeError, ValueError):
        return default


def _opt_int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _float(data: Mapping[str, Any], key: str, default: float = 0.0) -> float:
    value = data.get(key)
    try:
        return default if value is None else float(value)
    except (TypeError, ValueError):
        return default


def _bool(data: Mapping[str, Any], key: str, default: bool = False) -> bool:
    value = data.get(key)
    return default if value is None else bool(value)


def _strs(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key)
    if isinstance(value, str) or not isinstance(value, Sequence):
        return ()
    return tuple(str(item) for item in value if item is not None)


def _mapping(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, Mapping) else _EMPTY


def _frozen(data: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(data))


def _require_mapping(data: object, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise TypeError(f"a MAAS {what} must be a JSON object, got {type(data).__name__}")
    return data


# -- types ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ref:
    """A reference to a zone, pool or domain embedded in a machine."""

    id: int | None
    name: str

    @classmethod
    def from_json(cls, data: object) -> Ref | None:
        if not isinstance(data, Mapping):
            return None
        return cls(id=_opt_int(data, "id"), name=_str(data, "name"))


@dataclass(frozen=True, slots=True)
class MaasVersion:
    version: str
    subversion: str = ""
    capabilities: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: object) -> MaasVersion:
        d = _require_mapping(data, "version")
        return cls(
            version=_str(d, "version"),
            subversion=_str(d, "subversion"),
            capabilities=_strs(d, "capabilities"),
            raw=_frozen(d),
        )


@dataclass(frozen=True, slots=True)
class _Grouping:
    """A MAAS object that groups machines by name: a zone or a resource pool."""

    id: int
    name: str
    description: str = ""
    raw: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, repr=False, compare=False)

    what: ClassVar[str] = "grouping"  # for the error when MAAS sends something else

    @classmethod
    def from_json(cls, data: object) -> Self:
        d = _require_mapping(data, cls.what)
        return cls(
            id=_int(d, "id"),
            name=_str(d, "name"),
            description=_str(d, "description"),
            raw=_frozen(d),
        )


@dataclass(frozen=True, slots=True)
class Zone(_Grouping):
    what: ClassVar[str] = "zone"


@dataclass(frozen=True, slots=True)
class ResourcePool(_Grouping):
    what: ClassVar[str] = "resource pool"


@dataclass(frozen=True, slots=True)
class Domain:
    id: int
    name: str
    authoritative: bool = True
    is_default: bool = False
    ttl: int | None = None
    raw: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: object) -> Domain:
        d = _require_mapping(data, "domain")
        return cls(
            id=_int(d, "id"),
            name=_str(d, "name"),
            authoritative=_bool(d, "authoritative", True),
            is_default=_bool(d, "is_default"),
            ttl=_opt_int(d, "ttl"),
            raw=_frozen(d),
        )


@dataclass(frozen=True, slots=True)
class Subnet:
    id: int
    cidr: str
    name: str = ""
    gateway_ip: str | None = None
    dns_servers: tuple[str, ...] = ()
    vlan_id: int | None = None
    vid: int | None = None
    fabric: str | None = None
    space: str | None = None
    managed: bool = True
    raw: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: object) -> Subnet:
        d = _require_mapping(data, "subnet")
        vlan = _mapping(d, "vlan")
        return cls(
            id=_int(d, "id"),
            cidr=_str(d, "cidr"),
            name=_str(d, "name"),
            gateway_ip=_opt_str(d, "gateway_ip"),
            dns_servers=_strs(d, "dns_servers"),
            vlan_id=_opt_int(vlan, "id"),
            vid=_opt_int(vlan, "vid"),
            fabric=_opt_str(vlan, "fabric"),
            space=_opt_str(d, "space"),
            managed=_bool(d, "managed", True),
            raw=_frozen(d),
        )


@dataclass(frozen=True, slots=True)
class IpRange:
    """One entry of ``subnets/{id}/?op=unreserved_ip_ranges``."""

    start: str
    end: str
    num_addresses: int

    @classmethod
    def from_json(cls, data: object) -> IpRange:
        d = _require_mapping(data, "IP range")
        return cls(
            start=_str(d, "start"), end=_str(d, "end"), num_addresses=_int(d, "num_addresses")
        )


@dataclass(frozen=True, slots=True)
class Machine:
    """A machine as MAAS reports it. Sizes: ``memory`` MiB, ``storage`` MB (MAAS's units)."""

    system_id: str
    hostname: str
    fqdn: str = ""
    status_code: int | None = None
    status_name: str = ""
    status_message: str = ""
    cpu_count: int = 0
    memory: int = 0
    storage: float = 0.0
    architecture: str = ""
    zone: Ref | None = None
    pool: Ref | None = None
    domain: Ref | None = None
    ip_addresses: tuple[str, ...] = ()
    power_state: PowerState = PowerState.UNKNOWN
    power_type: str = ""
    owner: str | None = None
    osystem: str = ""
    distro_series: str = ""
    tag_names: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: object) -> Machine:
        d = _require_mapping(data, "machine")
        return cls(
            system_id=_str(d, "system_id"),
            hostname=_str(d, "hostname"),
            fqdn=_str(d, "fqdn"),
            status_code=_opt_int(d, "status"),
            status_name=_str(d, "status_name"),
            status_message=_str(d, "status_message"),
            cpu_count=_int(d, "cpu_count"),
            memory=_int(d, "memory"),
            storage=_float(d, "storage"),
            architecture=_str(d, "architecture"),
            zone=Ref.from_json(d.get("zone")),
            pool=Ref.from_json(d.get("pool")),
            domain=Ref.from_json(d.get("domain")),
            ip_addresses=_strs(d, "ip_addresses"),
            power_state=PowerState.parse(d.get("power_state")),
            power_type=_str(d, "power_type"),
            owner=_opt_str(d, "owner"),
            osystem=_str(d, "osystem"),
            distro_series=_str(d, "distro_series"),
            tag_names=_strs(d, "tag_names"),
            raw=_frozen(d),
        )

    @property
    def status(self) -> NodeStatus | None:
        """The status as a :class:`NodeStatus`; None if missing or not one we know."""
        if self.status_code is None:
            return None
        try:
            return NodeStatus(self.status_code)
        except ValueError:
            return None

    @property
    def status_label(self) -> str:
        """Best human label: MAAS's ``status_name``, else ours, else the raw code."""
        if self.status_name:
            return self.status_name
        status = self.status
        if status is not None:
            return status.label
        return "unknown" if self.status_code is None else f"status {self.status_code}"

    @property
    def storage_gb(self) -> float:
        """Total storage in GB (10^9 bytes), the unit of allocate's ``storage`` constraint."""
        return self.storage / 1000.0
