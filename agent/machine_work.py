"""The machines one operation works on, and the MAAS calls that deploy and release them.

Shared by ``cluster.create`` / ``cluster.delete`` (:mod:`agent.clusters`) and ``gateway.resize``
(:mod:`agent.gateway_nodes`). A :class:`MachineWork` tracks each machine's state and sends a
progress event when it changes: ``{"machine", "systemId", "pool", "state"}`` plus ``message`` on
failure, states ``Allocated``, ``Deploying``, ``Deployed``, ``Failed``, ``Released`` (the table
"The agent's RPC methods" in the Palette simulator's README). A :class:`Deployer` deploys the
tracked machines, waits for them, and releases them again after a failure or on delete.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from agent.maas_errors import maas_error_to_rpc
from agent.operations import EmitProgress
from protocol.exceptions import RpcError
from protocol.maas.client import MaasClient
from protocol.maas.exceptions import BadRequest, Conflict, MaasApiError, MaasError
from protocol.maas.models import FAILURE_STATUSES, Machine, NodeStatus
from protocol.rpc import RpcErrorCode

__all__ = [
    "GONE",
    "HELD",
    "Deployer",
    "MachineWork",
    "TrackedMachine",
    "boot_disk_gb",
    "machine_event",
    "ref_name",
    "state_of",
    "status_text",
]

log = logging.getLogger("pcg.agent.maas")

#: the MAAS statuses of a machine its agent name holds
HELD: Final = frozenset({NodeStatus.ALLOCATED, NodeStatus.DEPLOYING, NodeStatus.DEPLOYED})
#: the MAAS statuses of a machine given back (or being given back)
GONE: Final = frozenset({NodeStatus.READY, NodeStatus.RELEASING})
_STATE_OF: Final = {
    NodeStatus.ALLOCATED: "Allocated",
    NodeStatus.DEPLOYING: "Deploying",
    NodeStatus.DEPLOYED: "Deployed",
}


# -- what MAAS says of a machine ----------------------------------------------------------------


def state_of(machine: Machine) -> str | None:
    """The event state of a held machine; None for any other MAAS status."""
    status = machine.status
    return None if status is None else _STATE_OF.get(status)


def ref_name(ref: Any) -> str:
    """The name of a zone or resource pool reference ("" when there is none)."""
    return str(getattr(ref, "name", "") or "")


def boot_disk_gb(machine: Machine) -> float:
    """Size of the boot disk in GB (MAAS's storage constraint applies to it); the total
    storage when MAAS does not say which disk boots."""
    boot = machine.raw.get("boot_disk")
    if isinstance(boot, Mapping):
        size = boot.get("size")
        if isinstance(size, (int, float)) and not isinstance(size, bool) and size > 0:
            return float(size) / 1e9
    return machine.storage_gb


def status_text(machine: Machine) -> str:
    """The machine's MAAS status, quoted, with MAAS's status message when there is one."""
    detail = ": " + machine.status_message if machine.status_message else ""
    return f"{machine.status_label!r}{detail}"


def machine_event(
    machine: Machine, state: str, *, pool: str | None = None, message: str | None = None
) -> dict[str, Any]:
    """A progress event about ``machine``; ``pool`` and ``message`` only when given."""
    event: dict[str, Any] = {"machine": machine.hostname, "systemId": machine.system_id}
    if pool is not None:
        event["pool"] = pool
    event["state"] = state
    if message:
        event["message"] = message
    return event


# -- machines being worked on -------------------------------------------------------------------


@dataclass(slots=True)
class TrackedMachine:
    machine: Machine
    pool: str
    state: str = ""


@dataclass(slots=True)
class MachineWork:
    """The machines one operation works on, and the events it has sent about them."""

    emit: EmitProgress
    machines: dict[str, TrackedMachine] = field(default_factory=dict)

    async def set_state(
        self, tracked: TrackedMachine, state: str, message: str | None = None
    ) -> None:
        if tracked.state == state:
            return
        tracked.state = state
        await self.emit(machine_event(tracked.machine, state, pool=tracked.pool, message=message))

    async def add(self, machine: Machine, pool: str, state: str) -> TrackedMachine:
        tracked = TrackedMachine(machine, pool)
        self.machines[machine.system_id] = tracked
        await self.set_state(tracked, state)
        return tracked


# -- deploying and releasing --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Deployer:
    """How this agent deploys and releases machines: the image, how often it polls MAAS and
    how long it waits (:class:`agent.maas_ops.MaasOperations` fills these from its config)."""

    distro_series: str
    poll_interval: float
    deploy_timeout: float
    release_timeout: float

    async def deploy(
        self,
        maas: MaasClient,
        work: MachineWork,
        tracked: TrackedMachine,
        user_data: str,
        *,
        agent_name: str,
        comment: str,
    ) -> None:
        try:
            tracked.machine = await maas.deploy(
                tracked.machine.system_id,
                distro_series=self.distro_series,
                user_data=user_data,
                agent_name=agent_name,
                comment=comment,
            )
        except MaasError as exc:
            await work.set_state(tracked, "Failed", str(exc))
            raise
        await work.set_state(tracked, "Deploying")

    async def wait_deployed(
        self, maas: MaasClient, work: MachineWork, poll_interval: float
    ) -> None:
        """Poll MAAS (one request per round for all machines) until every one is Deployed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.deploy_timeout
        while pending := [t for t in work.machines.values() if t.state != "Deployed"]:
            await asyncio.sleep(poll_interval)
            ids = [t.machine.system_id for t in pending]
            seen = {m.system_id: m for m in await maas.list_machines(system_ids=ids)}
            for tracked in pending:
                machine = seen.get(tracked.machine.system_id)
                if machine is None or machine.status in GONE:
                    message = (
                        f"machine {tracked.machine.hostname} ({tracked.machine.system_id}) was "
                        "released or removed in MAAS while it was deploying"
                    )
                    await work.set_state(tracked, "Failed", message)
                    raise RpcError(RpcErrorCode.INTERNAL, message)
                tracked.machine = machine
                if machine.status is NodeStatus.DEPLOYED:
                    await work.set_state(tracked, "Deployed")
                elif machine.status in FAILURE_STATUSES:
                    message = (
                        f"machine {machine.hostname} ({machine.system_id}) of pool "
                        f"{tracked.pool} went to {status_text(machine)}. "
                        "Look at the machine's events in MAAS and fix the cause"
                    )
                    await work.set_state(tracked, "Failed", message)
                    raise RpcError(RpcErrorCode.INTERNAL, message)
            late = [t for t in work.machines.values() if t.state != "Deployed"]
            if late and loop.time() >= deadline:
                names = ", ".join(f"{t.machine.hostname} ({t.machine.status_label})" for t in late)
                message = (
                    f"machine(s) {names} not Deployed after {self.deploy_timeout:g} s; check "
                    "their progress in MAAS"
                )
                for tracked in late:
                    await work.set_state(tracked, "Failed", message)
                raise RpcError(RpcErrorCode.INTERNAL, message)

    async def fail(
        self,
        maas: MaasClient,
        agent_name: str,
        work: MachineWork,
        error: RpcError,
        only: Iterable[str] | None = None,
    ) -> RpcError:
        """Release the operation's machines after ``error``; the error to raise."""
        try:
            await self.release(maas, agent_name, work, only=only)
        except Exception as exc:
            cleanup = maas_error_to_rpc(exc)
            log.warning("release after failure failed agent_name=%s error=%s", agent_name, cleanup)
            return RpcError(
                error.code,
                f"{error.message}; releasing the machines of {agent_name} failed too "
                f"({cleanup.message}): release them in MAAS or delete the cluster",
                error.details,
            )
        return error

    async def release(
        self,
        maas: MaasClient,
        agent_name: str,
        work: MachineWork,
        *,
        only: Iterable[str] | None = None,
    ) -> list[Machine]:
        """Release every machine MAAS holds for ``agent_name`` (or those of ``only``) and send a
        ``Released`` event for each; returns them (those already releasing included)."""
        wanted = None if only is None else set(only)
        held = [
            m
            for m in await maas.list_machines(agent_name=agent_name)
            if m.status is not NodeStatus.READY and (wanted is None or m.system_id in wanted)
        ]
        to_release = [m.system_id for m in held if m.status is not NodeStatus.RELEASING]
        if to_release:
            log.info("releasing agent_name=%s system_ids=%s", agent_name, ",".join(to_release))
            try:
                await maas.release(to_release, comment=f"released by the gateway for {agent_name}")
            except (Conflict, BadRequest):
                # all or nothing in one call: release one by one, so the others still go
                failures = []
                for system_id in to_release:
                    try:
                        await maas.release_machine(system_id, comment=f"released for {agent_name}")
                    except MaasApiError as exc:
                        failures.append(str(exc))
                if failures:
                    raise RpcError(
                        RpcErrorCode.FAILED_PRECONDITION,
                        "MAAS refused to release: " + " ".join(failures),
                    ) from None
        for machine in held:
            tracked = work.machines.get(machine.system_id)
            if tracked is not None:
                await work.set_state(tracked, "Released")
            else:
                await work.emit(machine_event(machine, "Released"))
        return held

    async def wait_released(self, maas: MaasClient, agent_name: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.release_timeout
        while True:
            left = [
                m
                for m in await maas.list_machines(system_ids=list(ids))
                if m.status is not NodeStatus.READY
            ]
            if not left:
                return
            stuck = [m for m in left if m.status is not NodeStatus.RELEASING]
            if stuck or loop.time() >= deadline:
                names = ", ".join(f"{m.hostname} ({m.status_label})" for m in stuck or left)
                raise RpcError(
                    RpcErrorCode.INTERNAL,
                    f"machine(s) of {agent_name} not released: {names}; look at them in MAAS",
                )
            await asyncio.sleep(self.poll_interval)
