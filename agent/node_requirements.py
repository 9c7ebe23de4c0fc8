"""What a MAAS machine needs to become a gateway node, and why one does not qualify.

The product doc's prerequisites: a Ready machine with 4 CPUs, 8192 MiB of memory and 60 GiB of
storage. MAAS reports storage in MB (10^6 bytes), so 60 GiB is 64,424.5 of its MB: a "64 GB"
disk is 59.6 GiB and does not qualify. The installer's preflight and the agent's resize both ask
this module, so they never disagree on a machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from protocol.maas.models import Machine, NodeStatus

MIN_CPU: Final = 4
MIN_MEMORY_MIB: Final = 8192
MIN_STORAGE_GIB: Final = 60
GIB: Final = 2**30


def storage_gib(machine: Machine) -> float:
    return machine.storage * 1e6 / GIB


@dataclass(frozen=True, slots=True)
class Shortfall:
    #: "status", "cpu", "memory" or "storage"
    kind: str
    #: for people, with the machine's value and the requirement
    text: str


def shortfalls(machine: Machine) -> list[Shortfall]:
    """Why ``machine`` cannot be a gateway node (empty: it can). Zone and pool are the
    caller's business."""
    found = []
    if machine.status is not NodeStatus.READY:
        found.append(Shortfall("status", f"{machine.status_label}, not Ready"))
    if machine.cpu_count < MIN_CPU:
        found.append(Shortfall("cpu", f"{machine.cpu_count} CPUs < {MIN_CPU}"))
    if machine.memory < MIN_MEMORY_MIB:
        found.append(Shortfall("memory", f"{machine.memory} MiB memory < {MIN_MEMORY_MIB} MiB"))
    gib = storage_gib(machine)
    if gib < MIN_STORAGE_GIB:
        found.append(Shortfall("storage", f"{gib:.1f} GiB storage < {MIN_STORAGE_GIB} GiB"))
    return found


def requirement_text() -> str:
    return f">= {MIN_CPU} CPUs, {MIN_MEMORY_MIB} MiB memory and {MIN_STORAGE_GIB} GiB storage"
