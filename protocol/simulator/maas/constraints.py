"""Machine constraints: ``POST machines/?op=allocate`` and ``GET machines/`` filters.

Field names, validation texts and the "no match" description follow MAAS's AcquireNodeForm /
ReadNodesForm (src/maasserver/node_constraint_filter_forms.py): lists are repeated fields,
``cpu_count`` and ``mem`` are minimums, ``tags`` must all match, ``not_tags`` none, ``storage``
is ``label:sizeGB(tag,...)[,...]`` where the first entry is the boot disk. Constraints the
simulator cannot evaluate (fabrics, interfaces, pods...) are refused, not silently ignored.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from protocol.maas.models import NodeStatus
from protocol.simulator.maas.state import SimMachine, SimState

__all__ = ["NodeQuery", "parse_allocate", "parse_read"]

FieldErrors = dict[str, list[str]]

#: allocate/deploy options that are not constraints (MAAS's IGNORED_FIELDS)
ALLOCATE_OPTIONS = frozenset(
    {
        "op", "agent_name", "comment", "bridge_all", "bridge_type", "bridge_stp", "bridge_fd",
        "dry_run", "verbose", "install_rackd", "install_kvm", "register_vmhost",
        "ephemeral_deploy", "enable_hw_sync",
    }
)  # fmt: skip

_COMMON = {
    "arch", "cpu_count", "mem", "tags", "not_tags", "zone", "not_in_zone", "pool",
    "not_in_pool", "storage",
}  # fmt: skip
ALLOCATE_FIELDS = frozenset(_COMMON | {"name", "system_id"})
READ_FIELDS = frozenset(_COMMON | {"id", "hostname", "domain", "agent_name", "status", "owner"})

_STORAGE = re.compile(r"(?:(?P<label>[a-zA-Z0-9]+):)?(?P<size>[0-9.]+)(?:\((?P<tags>[^)]+)\))?")


@dataclass(slots=True)
class NodeQuery:
    """A parsed set of constraints; empty lists mean "no constraint"."""

    system_ids: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    arch: list[str] = field(default_factory=list)
    cpu_count: list[float] = field(default_factory=list)
    mem: list[float] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    not_tags: list[str] = field(default_factory=list)
    zones: list[str] = field(default_factory=list)
    not_zones: list[str] = field(default_factory=list)
    pools: list[str] = field(default_factory=list)
    not_pools: list[str] = field(default_factory=list)
    storage: list[tuple[str, float, tuple[str, ...]]] = field(default_factory=list)
    storage_text: str = ""
    domains: list[str] = field(default_factory=list)
    agent_names: list[str] = field(default_factory=list)
    statuses: list[NodeStatus] = field(default_factory=list)
    owners: list[str] = field(default_factory=list)

    def matches(self, machine: SimMachine) -> bool:
        spec = machine.spec
        checks = (
            not self.system_ids or spec.system_id in self.system_ids,
            not self.names or any(_name_matches(machine, name) for name in self.names),
            not self.arch or any(_arch_matches(spec.architecture, a) for a in self.arch),
            not self.cpu_count or spec.cpu_count >= min(self.cpu_count),
            not self.mem or spec.memory >= min(self.mem),
            all(tag in spec.tags for tag in self.tags),
            not any(tag in spec.tags for tag in self.not_tags),
            not self.zones or spec.zone in self.zones,
            spec.zone not in self.not_zones,
            not self.pools or spec.pool in self.pools,
            spec.pool not in self.not_pools,
            not self.domains or spec.domain in self.domains,
            not self.agent_names or machine.agent_name in self.agent_names,
            not self.statuses or machine.status in self.statuses,
            not self.owners or machine.owner in self.owners,
            _storage_matches(machine, self.storage),
        )
        return all(checks)

    def describe(self) -> str:
        """MAAS's ``describe_constraints()``: ``name=value`` pairs in field-name order."""
        parts = {
            "arch": ",".join(self.arch),
            "cpu_count": ",".join(str(v) for v in self.cpu_count),
            "mem": ",".join(str(v) for v in self.mem),
            "name": ",".join(self.names),
            "not_in_pool": ",".join(self.not_pools),
            "not_in_zone": ",".join(self.not_zones),
            "not_tags": ",".join(self.not_tags),
            "pool": ",".join(self.pools),
            "storage": self.storage_text,
            "system_id": ",".join(self.system_ids),
            "tags": ",".join(sorted(set(self.tags))),
            "zone": ",".join(self.zones),
        }
        return " ".join(f"{name}={value}" for name, value in sorted(parts.items()) if value)


def parse_allocate(
    pairs: Sequence[tuple[str, str]], state: SimState
) -> tuple[NodeQuery, FieldErrors]:
    return _parse(pairs, state, ALLOCATE_FIELDS)


def parse_read(pairs: Sequence[tuple[str, str]], state: SimState) -> tuple[NodeQuery, FieldErrors]:
    return _parse(pairs, state, READ_FIELDS)


def _parse(
    pairs: Sequence[tuple[str, str]], state: SimState, allowed: frozenset[str]
) -> tuple[NodeQuery, FieldErrors]:
    values: dict[str, list[str]] = {}
    for name, value in pairs:
        values.setdefault(name, []).append(value)
    errors: FieldErrors = {}
    for name in values:
        if name not in allowed and name not in ALLOCATE_OPTIONS:
            errors[name] = ["No such constraint."]
    query = NodeQuery()
    inv = state.inventory

    def strings(name: str) -> list[str]:
        return [v.strip() for v in values.get(name, []) if v.strip()]

    def numbers(name: str, message: str) -> list[float]:
        result = []
        for text in strings(name):
            try:
                result.append(float(text))
            except ValueError:
                errors[name] = [message]
        return result

    def names_in(name: str, known: set[str], what: str) -> list[str]:
        given = strings(name)
        missing = sorted(set(given) - known)
        if missing:
            errors[name] = [f"No such {what}(s): {', '.join(missing)}."]
        return given

    query.system_ids = strings("system_id") + strings("id")
    query.names = strings("name") + strings("hostname")
    query.cpu_count = numbers("cpu_count", "Invalid CPU count: number required.")
    query.mem = numbers("mem", "Invalid memory: number of MiB required.")
    query.zones = names_in("zone", {z.name for z in inv.zones}, "zone")
    query.not_zones = names_in("not_in_zone", {z.name for z in inv.zones}, "zone")
    query.pools = names_in("pool", {p.name for p in inv.pools}, "pool")
    query.not_pools = names_in("not_in_pool", {p.name for p in inv.pools}, "pool")
    query.domains = strings("domain")
    query.agent_names = strings("agent_name") if "agent_name" in allowed else []
    query.owners = strings("owner")

    known_tags = inv.all_tags
    query.tags = [t for v in strings("tags") for t in re.findall(r"[^\s,]+", v)]
    unknown_tags = sorted(set(query.tags) - known_tags)
    if unknown_tags:
        errors["tags"] = [f"No such tag(s): {', '.join(repr(t) for t in unknown_tags)}."]
    query.not_tags = [t for v in strings("not_tags") for t in re.findall(r"[^\s,]+", v)]

    arches = {m.spec.architecture for m in state.machines.values()}
    query.arch = strings("arch")
    if any(not any(_arch_matches(a, want) for a in arches) for want in query.arch):
        errors["arch"] = ["Architecture not recognised."]

    for text in strings("status"):
        try:
            query.statuses.append(NodeStatus[text.lstrip("=").upper()])
        except KeyError:
            errors["status"] = [
                f"Select a valid choice. {text} is not one of the available choices."
            ]

    storage = ",".join(strings("storage"))
    if storage:
        groups = [m.groupdict() for m in _STORAGE.finditer(storage)]
        rendered = ",".join(
            (f"{g['label']}:" if g["label"] else "")
            + g["size"]
            + (f"({g['tags']})" if g["tags"] else "")
            for g in groups
        )
        if not groups or rendered != storage:
            errors["storage"] = [f'Malformed storage constraint, "{storage}".']
        else:
            query.storage_text = storage
            query.storage = [
                (
                    g["label"] or "",
                    float(g["size"]),
                    tuple(g["tags"].split(",")) if g["tags"] else (),
                )
                for g in groups
            ]
    return query, errors


def _name_matches(machine: SimMachine, name: str) -> bool:
    if "." in name:
        return machine.fqdn == name
    return machine.hostname == name


def _arch_matches(architecture: str, wanted: str) -> bool:
    return architecture == wanted or architecture.split("/")[0] == wanted


def _storage_matches(
    machine: SimMachine, constraints: Sequence[tuple[str, float, tuple[str, ...]]]
) -> bool:
    """First constraint on the boot (first) disk, the others on distinct remaining disks."""
    if not constraints:
        return True
    disks = list(machine.spec.disks)
    first, rest = constraints[0], constraints[1:]
    if not disks or not _disk_fits(disks[0].size_gb, disks[0].tags, first):
        return False
    free = disks[1:]
    for constraint in sorted(rest, key=lambda c: len(c[2]), reverse=True):
        fitting = [d for d in free if _disk_fits(d.size_gb, d.tags, constraint)]
        if not fitting:
            return False
        free.remove(min(fitting, key=lambda d: d.size_gb))
    return True


def _disk_fits(
    size_gb: float, tags: Sequence[str], constraint: tuple[str, float, tuple[str, ...]]
) -> bool:
    _, wanted_gb, wanted_tags = constraint
    return size_gb >= wanted_gb and set(wanted_tags) <= set(tags)
