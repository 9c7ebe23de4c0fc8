"""``cluster.create`` and ``cluster.delete``: a tenant cluster's machines, allocated under the
cluster's uid as MAAS agent name, deployed, waited for, and released again.

* **Adoption.** MAAS keeps the agent name until a machine is released, so a retried or resumed
  ``cluster.create`` first adopts what MAAS already holds for the cluster: control-plane pools
  first; within that, the machines that fit the fewest pools are placed first, each into the
  first pool whose constraints it meets. Machines that fit no pool, or exceed a pool's size,
  are released. Then only what is missing is allocated.
* **Zones.** A pool with several ``azs`` is spread over them: each new machine goes to the zone
  holding the fewest of that pool's machines (ties: list order); when MAAS has no match there
  the other zones are tried before giving up. No ``azs``: no zone constraint.
* **Failure.** Any failure releases every machine with the cluster's agent name; cancellation
  (agent shutdown) does not, the work is resumable. ``cluster.delete`` of a cluster whose
  create is under way stops that create first (it then fails with ``cancelled``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.cluster_spec import (
    ClusterSpec,
    MachinePoolSpec,
    parse_cluster_create,
    parse_cluster_delete,
    render_tenant_user_data,
)
from agent.config import AgentConfig
from agent.maas_access import OpenMaas, run_once
from agent.maas_errors import maas_error_to_rpc
from agent.machine_work import (
    GONE,
    Deployer,
    MachineWork,
    TrackedMachine,
    machine_event,
    ref_name,
    state_of,
    status_text,
)
from agent.operations import EmitProgress, OperationRegistry
from agent.rpc import Progress
from protocol.exceptions import RpcError
from protocol.maas.client import MaasClient
from protocol.maas.exceptions import NoMatchingMachine
from protocol.maas.models import Machine
from protocol.rpc import Request, RpcErrorCode

__all__ = ["Clusters"]

log = logging.getLogger("pcg.agent.maas")


@dataclass(eq=False, slots=True)
class Clusters:
    """The ``cluster.create`` (:meth:`create`) and ``cluster.delete`` (:meth:`delete`) methods."""

    config: AgentConfig
    registry: OperationRegistry
    open_maas: OpenMaas
    deployer: Deployer
    #: the cluster.create task under way for each cluster uid
    _creates: dict[str, asyncio.Task[Any]] = field(default_factory=dict, init=False)
    #: the clusters whose delete is stopping their create
    _deleting: set[str] = field(default_factory=set, init=False)

    # -- cluster.create ------------------------------------------------------------------

    async def create(self, request: Request, progress: Progress) -> dict[str, Any]:
        spec = parse_cluster_create(request.params, self.config.domain)
        return await run_once(
            self.registry, request, progress, lambda emit: self._create(spec, emit)
        )

    async def _create(self, spec: ClusterSpec, emit: EmitProgress) -> dict[str, Any]:
        task = asyncio.current_task()
        assert task is not None
        self._creates[spec.uid] = task
        work = MachineWork(emit)
        log.info(
            "cluster.create start cluster=%s pools=%s",
            spec.uid,
            ",".join(f"{p.name}x{p.size}" for p in spec.ordered_pools),
        )
        deployer = self.deployer
        try:
            async with self.open_maas() as maas:
                try:
                    await self._adopt(maas, spec, work)
                    await self._allocate_missing(maas, spec, work)
                    await self._deploy_allocated(maas, spec, work)
                    await deployer.wait_deployed(
                        maas, work, spec.poll_interval or deployer.poll_interval
                    )
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    error = maas_error_to_rpc(exc, f"cluster {spec.uid}")
                    log.warning("cluster.create failed cluster=%s error=%s", spec.uid, error)
                    raise await deployer.fail(maas, spec.uid, work, error) from exc
        except asyncio.CancelledError:
            if spec.uid in self._deleting:
                task.uncancel()
                raise RpcError(
                    RpcErrorCode.CANCELLED,
                    f"cluster.create of {spec.uid} was stopped: the cluster is being deleted",
                ) from None
            raise
        finally:
            if self._creates.get(spec.uid) is task:
                del self._creates[spec.uid]
        order = {pool.name: index for index, pool in enumerate(spec.ordered_pools)}
        machines = sorted(work.machines.values(), key=lambda t: (order[t.pool], t.machine.hostname))
        log.info("cluster.create done cluster=%s machines=%d", spec.uid, len(machines))
        return {"machines": [_machine_result(t) for t in machines]}

    async def _adopt(self, maas: MaasClient, spec: ClusterSpec, work: MachineWork) -> None:
        """Take over what MAAS already holds for the cluster (a retry or a resumed create)."""
        held = [m for m in await maas.list_machines(agent_name=spec.uid) if m.status not in GONE]
        if not held:
            return
        pools = spec.ordered_pools
        room = {pool.name: pool.size for pool in pools}
        # machines that fit fewer pools first, so a specialised machine lands in its pool
        queue = sorted(held, key=lambda m: (sum(p.fits(m) for p in pools), m.hostname))
        surplus: list[Machine] = []
        for machine in queue:
            pool = next((p for p in pools if room[p.name] and p.fits(machine)), None)
            if pool is None:
                surplus.append(machine)
                continue
            room[pool.name] -= 1
            state = state_of(machine)
            if state is None:
                await work.add(machine, pool.name, "Failed")
                raise RpcError(
                    RpcErrorCode.INTERNAL,
                    f"machine {machine.hostname} ({machine.system_id}) held for cluster "
                    f"{spec.uid} is {status_text(machine)}; look at its events in MAAS",
                )
            tracked = await work.add(machine, pool.name, state)
            log.info(
                "cluster.create adopted cluster=%s system_id=%s pool=%s state=%s",
                spec.uid,
                machine.system_id,
                pool.name,
                tracked.state,
            )
        if surplus:
            log.info(
                "cluster.create releasing surplus cluster=%s system_ids=%s",
                spec.uid,
                ",".join(m.system_id for m in surplus),
            )
            await maas.release([m.system_id for m in surplus], comment=f"surplus of {spec.uid}")
            for machine in surplus:
                await work.emit(machine_event(machine, "Released"))

    async def _allocate_missing(
        self, maas: MaasClient, spec: ClusterSpec, work: MachineWork
    ) -> None:
        for pool in spec.ordered_pools:
            mine = [t for t in work.machines.values() if t.pool == pool.name]
            per_zone = {zone: 0 for zone in pool.azs}
            for tracked in mine:
                zone = ref_name(tracked.machine.zone)
                if zone in per_zone:
                    per_zone[zone] += 1
            for _ in range(pool.size - len(mine)):
                machine = await self._allocate_one(maas, spec, pool, per_zone, len(mine))
                zone = ref_name(machine.zone)
                if zone in per_zone:
                    per_zone[zone] += 1
                mine.append(await work.add(machine, pool.name, "Allocated"))

    async def _allocate_one(
        self,
        maas: MaasClient,
        spec: ClusterSpec,
        pool: MachinePoolSpec,
        per_zone: Mapping[str, int],
        have: int,
    ) -> Machine:
        spread = sorted(pool.azs, key=lambda z: (per_zone.get(z, 0), pool.azs.index(z)))
        zones: list[str | None] = [*spread] if spread else [None]
        last: NoMatchingMachine | None = None
        for zone in zones:
            try:
                return await maas.allocate(
                    cpu_count=pool.min_cpu or None,
                    mem=pool.min_mem_mib or None,
                    storage=f"root:{pool.min_disk_gb}" if pool.min_disk_gb else None,
                    zone=zone,
                    pool=pool.resource_pool,
                    tags=pool.tags,
                    agent_name=spec.uid,
                    comment=_comment(spec, pool),
                )
            except NoMatchingMachine as exc:
                last = exc
        assert last is not None
        tried = f" (zones tried: {', '.join(pool.azs)})" if len(pool.azs) > 1 else ""
        raise RpcError(
            RpcErrorCode.RESOURCE_EXHAUSTED,
            f"cluster {spec.uid}: machine pool {pool.name!r} needs {pool.size} machine(s) "
            f"({pool.describe()}), {have} allocated so far; MAAS has no more{tried}: {last}",
            {"pool": pool.name, "maasStatus": last.status},
        ) from last

    async def _deploy_allocated(
        self, maas: MaasClient, spec: ClusterSpec, work: MachineWork
    ) -> None:
        pools = {pool.name: pool for pool in spec.pools}
        for tracked in list(work.machines.values()):
            if tracked.state != "Allocated":
                continue
            pool = pools[tracked.pool]
            await self.deployer.deploy(
                maas,
                work,
                tracked,
                render_tenant_user_data(spec, pool),
                agent_name=spec.uid,
                comment=_comment(spec, pool),
            )

    # -- cluster.delete ------------------------------------------------------------------

    async def delete(self, request: Request, progress: Progress) -> dict[str, Any]:
        uid = parse_cluster_delete(request.params)
        return await run_once(
            self.registry, request, progress, lambda emit: self._delete(uid, emit)
        )

    async def _delete(self, uid: str, emit: EmitProgress) -> dict[str, Any]:
        creating = self._creates.get(uid)
        if creating is not None and not creating.done():
            log.info("cluster.delete stops the create under way cluster=%s", uid)
            self._deleting.add(uid)
            try:
                creating.cancel()
                await asyncio.wait([creating])
            finally:
                self._deleting.discard(uid)
        work = MachineWork(_without_pool(emit))
        async with self.open_maas() as maas:
            released = await self.deployer.release(maas, uid, work)
            ids = [m.system_id for m in released]
            await self.deployer.wait_released(maas, uid, ids)
        log.info("cluster.delete done cluster=%s released=%d", uid, len(ids))
        return {"released": ids}


def _comment(spec: ClusterSpec, pool: MachinePoolSpec) -> str:
    """The MAAS comment on a tenant machine's allocation and deployment."""
    return f"Palette cluster {spec.uid}, machine pool {pool.name}"


def _without_pool(emit: EmitProgress) -> EmitProgress:
    """cluster.delete's events are ``{"machine", "systemId", "state"}``."""

    async def send(event: Mapping[str, Any]) -> None:
        await emit({k: v for k, v in event.items() if k != "pool"})

    return send


def _machine_result(tracked: TrackedMachine) -> dict[str, Any]:
    machine = tracked.machine
    return {
        "systemId": machine.system_id,
        "hostname": machine.hostname,
        "fqdn": machine.fqdn,
        "pool": tracked.pool,
        "ip": machine.ip_addresses[0] if machine.ip_addresses else None,
    }
