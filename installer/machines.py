"""Which MAAS machines can become gateway nodes, and why the others cannot.

A node needs (product doc, prerequisites) a Ready machine in the chosen zone and pool with
4 CPUs, 8192 MiB of memory and 60 GiB of storage: :mod:`agent.node_requirements` says which
machines qualify, for this preflight and for the agent's resize alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agent.node_requirements import requirement_text
from agent.node_requirements import shortfalls as node_shortfalls
from protocol.maas.models import Machine


@dataclass(frozen=True, slots=True)
class Placement:
    zone: str
    pool: str

    def holds(self, machine: Machine) -> bool:
        return (machine.zone is not None and machine.zone.name == self.zone) and (
            machine.pool is not None and machine.pool.name == self.pool
        )


def shortfalls(machine: Machine) -> list[str]:
    """Why ``machine`` cannot be a gateway node (empty: it can)."""
    return [shortfall.text for shortfall in node_shortfalls(machine)]


def allocation_order(machines: Iterable[Machine]) -> list[Machine]:
    """Smallest first, as MAAS's allocator picks (cpu_count + memory / 1024), so the big
    machines stay free for tenant clusters; hostname breaks ties for a stable choice."""
    return sorted(machines, key=lambda m: (m.cpu_count + m.memory / 1024.0, m.hostname))


@dataclass(frozen=True, slots=True)
class Survey:
    """The machines of one zone + pool, sorted into those that qualify and those that don't."""

    placement: Placement
    qualifying: tuple[Machine, ...]
    rejected: tuple[tuple[Machine, tuple[str, ...]], ...]
    #: qualifying machines elsewhere, by "zone/pool"
    elsewhere: dict[str, int]

    @classmethod
    def of(cls, machines: Sequence[Machine], placement: Placement) -> Survey:
        qualifying: list[Machine] = []
        rejected: list[tuple[Machine, tuple[str, ...]]] = []
        elsewhere: dict[str, int] = {}
        for machine in machines:
            reasons = shortfalls(machine)
            if placement.holds(machine):
                if reasons:
                    rejected.append((machine, tuple(reasons)))
                else:
                    qualifying.append(machine)
            elif not reasons:
                where = (
                    f"{machine.zone.name if machine.zone else '?'}/"
                    f"{machine.pool.name if machine.pool else '?'}"
                )
                elsewhere[where] = elsewhere.get(where, 0) + 1
        return cls(
            placement,
            tuple(allocation_order(qualifying)),
            tuple(sorted(rejected, key=lambda item: item[0].hostname)),
            dict(sorted(elsewhere.items())),
        )

    def explain(self, needed: int) -> str:
        where = f"zone {self.placement.zone!r}, pool {self.placement.pool!r}"
        names = ", ".join(m.hostname for m in self.qualifying)
        text = (
            f"{len(self.qualifying)} Ready machine(s) with {requirement_text()} in {where}"
            f"{': ' + names if names else ''}; {needed} needed"
        )
        if self.rejected:
            shown = "; ".join(
                f"{m.hostname} ({', '.join(reasons)})" for m, reasons in self.rejected[:10]
            )
            more = f" and {len(self.rejected) - 10} more" if len(self.rejected) > 10 else ""
            text += f". {len(self.rejected)} other machine(s) there do not qualify: {shown}{more}"
        if len(self.qualifying) < needed:
            text += (
                f". Commission or release machines in {where} until {needed} are Ready, "
                "or choose another zone and pool"
            )
            if self.elsewhere:
                spots = ", ".join(f"{k} ({v})" for k, v in self.elsewhere.items())
                text += f"; qualifying machines are Ready in zone/pool {spots}"
        return text


def subnet_ids(machine: Machine) -> tuple[int, ...]:
    """The subnets the machine's boot interface is linked to (MAAS's ``boot_interface``)."""
    found: list[int] = []
    interface = machine.raw.get("boot_interface")
    links = interface.get("links") if isinstance(interface, dict) else None
    for link in links if isinstance(links, list) else []:
        subnet = link.get("subnet") if isinstance(link, dict) else None
        if isinstance(subnet, dict) and isinstance(subnet.get("id"), int):
            found.append(subnet["id"])
    return tuple(dict.fromkeys(found))
