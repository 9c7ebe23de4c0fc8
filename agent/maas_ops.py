"""The agent's MAAS methods: what Palette asks of the gateway over the tunnel, done with MAAS's API.

The contract (params, progress events, results) is the table "The agent's RPC methods" in the
Palette simulator's README. Wiring::

    ops = MaasOperations(config)
    rpc = AgentRpc({...})
    rpc.update(ops.methods())
    ...
    await ops.close()      # on shutdown: stops operations under way (they resume on retry)

Decisions worth knowing:

* **Machine ownership.** Tenant machines are allocated with ``agent_name = clusterUid``; gateway
  nodes with ``agent_name = "pcg-gw:<gateway_name>"`` (the installer uses the same name). MAAS
  keeps the agent name until the machine is released, so it is the durable record of what a
  cluster holds: a retried or resumed ``cluster.create`` (same key after a cut tunnel, or after
  an agent restart that lost the operation registry) first adopts what MAAS already holds for the
  cluster and only allocates what is missing.
* **Adoption.** Held machines go to the machine pools control-plane pools first; within that, the
  machines that fit the fewest pools are placed first, each into the first pool whose
  constraints it meets (CPU, memory, boot disk, zone, resource pool, tags). Machines that fit no
  pool, or exceed a pool's size, are released.
* **Zones.** A pool with several ``azs`` is spread over them: each new machine goes to the zone
  holding the fewest of that pool's machines (ties: list order); when MAAS has no match there
  the other zones are tried before giving up. No ``azs``: no zone constraint.
* **Storage.** ``minDiskSizeInGB`` becomes MAAS's storage constraint ``root:<GB>``, which MAAS
  applies to the boot disk; adoption compares the boot disk too. The resize check compares a
  machine's total storage with 60 GB, exactly as the installer's preflight does
  (``installer/machines.py``), so both agree on which machines qualify. ``minCPU`` or
  ``minMemInMB`` of 0 means no constraint.
* **Failure.** Any failure of ``cluster.create`` (no matching machine, a failed or timed out
  deployment, MAAS unreachable...) releases every machine with the cluster's agent name and
  fails with MAAS's message. Cancellation (agent shutdown) does *not* release: the work is
  resumable. ``cluster.delete`` of a cluster whose create is under way stops that create first
  (it then fails with ``cancelled``).
* **Resize.** ``gateway.resize`` only goes 1 -> 3. The current size is the number of machines
  held under the gateway's agent name, or ``config.node_count`` when MAAS holds none (a gateway
  installed without that agent name). New nodes are chosen before anything is allocated: when
  MAAS lacks two qualifying Ready machines the call fails with ``failed_precondition`` and
  nothing is touched. On a later failure only the nodes this resize added are released, never a
  Deployed gateway node.
* **Errors.** :func:`maas_error_to_rpc` is the one mapping of MAAS client errors to RPC codes.
* **Secrets.** The MAAS key is never logged (the client redacts MAAS's replies; the key is also
  registered with :mod:`agent.logs`). Tenant cloud-init carries no secret; a gateway node's
  carries what a node needs to register (pairing code, MAAS key), never the agent's credential.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import yaml

from agent import logs
from agent.cloudinit import render_gateway_user_data
from agent.config import AgentConfig
from agent.operations import EmitProgress, OperationRegistry
from agent.rpc import Progress, RpcMethod
from protocol.exceptions import RpcError
from protocol.maas.client import MaasClient
from protocol.maas.exceptions import (
    AuthError,
    BadRequest,
    Conflict,
    Forbidden,
    InvalidApiKey,
    InvalidEndpoint,
    MaasApiError,
    MaasError,
    MaasUnreachable,
    NoMatchingMachine,
    Retryable,
)
from protocol.maas.models import FAILURE_STATUSES, Machine, NodeStatus
from protocol.rpc import Request, RpcErrorCode

__all__ = [
    "GATEWAY_AGENT_PREFIX",
    "ClusterSpec",
    "MaasClientFactory",
    "MaasOperations",
    "MachinePoolSpec",
    "gateway_agent_name",
    "maas_error_to_rpc",
    "parse_cluster_create",
    "render_tenant_user_data",
]

log = logging.getLogger("pcg.agent.maas")

#: a function that makes a new, unopened MAAS client (closed by the caller after each use)
MaasClientFactory = Callable[[], MaasClient]

GATEWAY_AGENT_PREFIX: Final = "pcg-gw:"
#: what a gateway node needs (product doc: 4 CPU, 8192 MiB, 60 GiB; storage in MAAS's GB)
GATEWAY_MIN_CPU: Final = 4
GATEWAY_MIN_MEM_MIB: Final = 8192
GATEWAY_MIN_DISK_GB: Final = 60
GATEWAY_POOL_LABEL: Final = "gateway"

DEFAULT_DISTRO_SERIES: Final = "jammy"
DEFAULT_POLL_INTERVAL: Final = 5.0
DEFAULT_DEPLOY_TIMEOUT: Final = 1800.0
DEFAULT_RELEASE_TIMEOUT: Final = 600.0
MAX_POOL_SIZE: Final = 500

_HELD: Final = frozenset({NodeStatus.ALLOCATED, NodeStatus.DEPLOYING, NodeStatus.DEPLOYED})
_GONE: Final = frozenset({NodeStatus.READY, NodeStatus.RELEASING})
_UID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_STATE_OF: Final = {
    NodeStatus.ALLOCATED: "Allocated",
    NodeStatus.DEPLOYING: "Deploying",
    NodeStatus.DEPLOYED: "Deployed",
}


def gateway_agent_name(gateway_name: str) -> str:
    """The MAAS agent name of a gateway's nodes (installer and resize alike)."""
    return f"{GATEWAY_AGENT_PREFIX}{gateway_name}"


# -- errors ------------------------------------------------------------------------------------


def maas_error_to_rpc(exc: BaseException, context: str = "") -> RpcError:
    """The RPC error for a failure of a MAAS call. RpcErrors pass through unchanged.

    ========================================  =======================
    MaasUnreachable, MaasTimeout, Retryable   ``unavailable``
    NoMatchingMachine                         ``resource_exhausted``
    BadRequest (a zone, pool, tag... MAAS     ``invalid_argument``
    does not know)
    AuthError, Forbidden, InvalidApiKey,      ``failed_precondition``
    InvalidEndpoint (the agent's MAAS
    settings need fixing)
    anything else                             ``internal``
    ========================================  =======================
    """
    if isinstance(exc, RpcError):
        return exc
    details: dict[str, object] = {}
    if isinstance(exc, (MaasUnreachable, Retryable)):
        code = RpcErrorCode.UNAVAILABLE
        details["retryable"] = True
    elif isinstance(exc, NoMatchingMachine):
        code = RpcErrorCode.RESOURCE_EXHAUSTED
    elif isinstance(exc, BadRequest):
        code = RpcErrorCode.INVALID_ARGUMENT
        if exc.field_errors:
            details["fieldErrors"] = exc.field_errors
    elif isinstance(exc, (AuthError, Forbidden, InvalidApiKey, InvalidEndpoint)):
        code = RpcErrorCode.FAILED_PRECONDITION
    else:
        code = RpcErrorCode.INTERNAL
    if isinstance(exc, MaasApiError):
        details["maasStatus"] = exc.status
    text = str(exc) if isinstance(exc, MaasError) else f"{type(exc).__name__}: {exc}"
    message = logs.scrub(f"{context}: {text}" if context else text)
    return RpcError(code, message, details)


def _invalid(message: str) -> RpcError:
    return RpcError(RpcErrorCode.INVALID_ARGUMENT, message)


# -- cluster.create params ------------------------------------------------------------------


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
            and _boot_disk_gb(machine) >= self.min_disk_gb
            and (not self.azs or _ref_name(machine.zone) in self.azs)
            and (not self.resource_pool or _ref_name(machine.pool) == self.resource_pool)
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
        raise _invalid(
            f"clusterUid={uid!r} is not a valid cluster uid: give the cluster's uid, 1-128 "
            "letters, digits, '.', '_', ':' or '-' (it becomes the machines' MAAS agent name)"
        )
    name = params.get("name")
    if not isinstance(name, str) or not name.strip() or not name.isprintable() or len(name) > 253:
        raise _invalid(f"name={name!r} must be the cluster's name: 1-253 printable characters")
    domain = params.get("domain", default_domain)
    if domain is None or domain == "":
        domain = default_domain
    if not isinstance(domain, str):
        raise _invalid(f"domain={domain!r} must be a MAAS domain name such as 'maas'")
    poll = params.get("pollInterval")
    if poll is not None and (
        isinstance(poll, bool) or not isinstance(poll, (int, float)) or not 0 < poll <= 300
    ):
        raise _invalid(f"pollInterval={poll!r} must be a number of seconds in (0, 300]")
    raw_pools = params.get("machinePools")
    if not isinstance(raw_pools, list) or not raw_pools:
        raise _invalid(
            f"machinePools={raw_pools!r} must be a non-empty list of machine pools, each "
            '{"name", "size", "isControlPlane", "azs", "resourcePool", "minCPU", "minMemInMB", '
            '"minDiskSizeInGB", "tags"}'
        )
    pools = [_parse_pool(raw, index) for index, raw in enumerate(raw_pools)]
    names = [pool.name for pool in pools]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise _invalid(f"machinePools: pool name(s) {duplicates} appear twice; names must differ")
    return ClusterSpec(uid, name, domain, tuple(pools), None if poll is None else float(poll))


def _parse_pool(raw: object, index: int) -> MachinePoolSpec:
    where = f"machinePools[{index}]"
    if not isinstance(raw, Mapping):
        raise _invalid(f"{where} must be a map, got {type(raw).__name__}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _invalid(f"{where}.name={name!r} must be the machine pool's name")
    where = f"machine pool {name!r}"

    def count(key: str, low: int, high: int, default: int | None = None) -> int:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _invalid(f"{where}: {key}={value!r} must be a whole number from {low} to {high}")
        return value

    def strings(key: str) -> tuple[str, ...]:
        value = raw.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise _invalid(f"{where}: {key}={value!r} must be a list of non-empty names")
        return tuple(value)

    control_plane = raw.get("isControlPlane", False)
    if not isinstance(control_plane, bool):
        raise _invalid(f"{where}: isControlPlane={control_plane!r} must be true or false")
    resource_pool = raw.get("resourcePool")
    if resource_pool is not None and not isinstance(resource_pool, str):
        raise _invalid(f"{where}: resourcePool={resource_pool!r} must be a MAAS resource pool")
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


# -- machines being worked on ----------------------------------------------------------------


@dataclass(slots=True)
class _Tracked:
    machine: Machine
    pool: str
    state: str = ""


@dataclass(slots=True)
class _Work:
    """The machines one operation works on, and the events it has sent about them."""

    emit: EmitProgress
    machines: dict[str, _Tracked] = field(default_factory=dict)

    async def set_state(self, tracked: _Tracked, state: str, message: str | None = None) -> None:
        if tracked.state == state:
            return
        tracked.state = state
        event: dict[str, Any] = {
            "machine": tracked.machine.hostname,
            "systemId": tracked.machine.system_id,
            "pool": tracked.pool,
            "state": state,
        }
        if message:
            event["message"] = message
        await self.emit(event)

    async def add(self, machine: Machine, pool: str, state: str) -> _Tracked:
        tracked = _Tracked(machine, pool)
        self.machines[machine.system_id] = tracked
        await self.set_state(tracked, state)
        return tracked


# -- the methods -----------------------------------------------------------------------------


class MaasOperations:
    """The MAAS-backed RPC methods of the agent; :meth:`methods` gives them by name.

    ``client_factory`` makes a MAAS client (tests pass one for the simulator); by default one is
    built from ``config.maas_api_endpoint`` / ``maas_api_key``, through the agent's proxy
    settings. ``distro_series``, ``poll_interval``, ``deploy_timeout`` and ``release_timeout``
    default to the config keys ``maas_distro_series``, ``maas_poll_interval``,
    ``maas_deploy_timeout``, ``maas_release_timeout`` when the config has them, else to
    "jammy", 5 s, 1800 s and 600 s.
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        client_factory: MaasClientFactory | None = None,
        registry: OperationRegistry | None = None,
        distro_series: str | None = None,
        poll_interval: float | None = None,
        deploy_timeout: float | None = None,
        release_timeout: float | None = None,
    ) -> None:
        self.config = config
        self.registry = registry if registry is not None else OperationRegistry()
        self._client_factory = client_factory
        self.distro_series = str(
            distro_series or getattr(config, "maas_distro_series", None) or DEFAULT_DISTRO_SERIES
        )
        self.poll_interval = _positive(
            "poll_interval", poll_interval, config, "maas_poll_interval", DEFAULT_POLL_INTERVAL
        )
        self.deploy_timeout = _positive(
            "deploy_timeout", deploy_timeout, config, "maas_deploy_timeout", DEFAULT_DEPLOY_TIMEOUT
        )
        self.release_timeout = _positive(
            "release_timeout",
            release_timeout,
            config,
            "maas_release_timeout",
            DEFAULT_RELEASE_TIMEOUT,
        )
        self._creates: dict[str, asyncio.Task[Any]] = {}
        self._deleting: set[str] = set()
        self._resize_lock = asyncio.Lock()
        logs.register_secret(config.maas_api_key)

    @property
    def gateway_agent_name(self) -> str:
        return gateway_agent_name(self.config.gateway_name)

    def methods(self) -> dict[str, RpcMethod]:
        return {
            "maas.zones": self.zones,
            "maas.resource_pools": self.resource_pools,
            "maas.domains": self.domains,
            "maas.subnets": self.subnets,
            "cluster.create": self.cluster_create,
            "cluster.delete": self.cluster_delete,
            "gateway.resize": self.gateway_resize,
        }

    async def close(self) -> None:
        """Stop the operations under way (they are resumable: a retry picks them up)."""
        await self.registry.close()

    # -- MAAS client ---------------------------------------------------------------------

    @asynccontextmanager
    async def _maas(self) -> AsyncIterator[MaasClient]:
        """A MAAS client for one operation; MAAS errors in the body become RpcErrors."""
        session: aiohttp.ClientSession | None = None
        try:
            if self._client_factory is not None:
                client = self._client_factory()
            else:
                endpoint, key = self.config.maas_api_endpoint, self.config.maas_api_key
                if not endpoint or not key:
                    raise RpcError(
                        RpcErrorCode.FAILED_PRECONDITION,
                        "this agent has no MAAS endpoint or API key: set maas_api_endpoint and "
                        "maas_api_key in its config",
                    )
                proxy = self.config.proxies.proxy_for(endpoint)
                session = aiohttp.ClientSession(
                    trust_env=False, proxy=proxy, headers={"User-Agent": "pcg-agent"}
                )
                client = MaasClient(endpoint, key, trust_env=False, session=session)
            async with client:
                yield client
        except MaasError as exc:
            raise maas_error_to_rpc(exc) from exc
        finally:
            if session is not None:
                await session.close()

    # -- properties ----------------------------------------------------------------------

    async def zones(self, request: Request, progress: Progress) -> list[dict[str, Any]]:
        async with self._maas() as maas:
            zones = await maas.list_zones()
        return [{"id": z.id, "name": z.name, "description": z.description} for z in zones]

    async def resource_pools(self, request: Request, progress: Progress) -> list[dict[str, Any]]:
        async with self._maas() as maas:
            pools = await maas.list_resource_pools()
        return [{"id": p.id, "name": p.name, "description": p.description} for p in pools]

    async def domains(self, request: Request, progress: Progress) -> list[dict[str, Any]]:
        async with self._maas() as maas:
            domains = await maas.list_domains()
        return [
            {
                "id": d.id,
                "name": d.name,
                "authoritative": d.authoritative,
                "isDefault": d.is_default,
                "ttl": d.ttl,
            }
            for d in domains
        ]

    async def subnets(self, request: Request, progress: Progress) -> list[dict[str, Any]]:
        async with self._maas() as maas:
            subnets = await maas.list_subnets()
            limit = asyncio.Semaphore(8)

            async def unreserved(subnet_id: int) -> list[dict[str, Any]]:
                async with limit:
                    ranges = await maas.unreserved_ip_ranges(subnet_id)
                return [
                    {"start": r.start, "end": r.end, "numAddresses": r.num_addresses}
                    for r in ranges
                ]

            free = await asyncio.gather(*(unreserved(s.id) for s in subnets))
        return [
            {
                "id": s.id,
                "name": s.name,
                "cidr": s.cidr,
                "gatewayIp": s.gateway_ip,
                "dnsServers": list(s.dns_servers),
                "vid": s.vid,
                "fabric": s.fabric,
                "space": s.space,
                "managed": s.managed,
                "unreserved": ranges,
            }
            for s, ranges in zip(subnets, free, strict=True)
        ]

    # -- cluster.create ------------------------------------------------------------------

    async def cluster_create(self, request: Request, progress: Progress) -> dict[str, Any]:
        spec = parse_cluster_create(request.params, self.config.domain)

        async def start(emit: EmitProgress) -> dict[str, Any]:
            return await self._create(spec, emit)

        result: dict[str, Any] = await self.registry.run(
            request.idempotency_key, request.method, request.params, start, progress
        )
        return result

    async def _create(self, spec: ClusterSpec, emit: EmitProgress) -> dict[str, Any]:
        task = asyncio.current_task()
        assert task is not None
        self._creates[spec.uid] = task
        work = _Work(emit)
        log.info(
            "cluster.create start cluster=%s pools=%s",
            spec.uid,
            ",".join(f"{p.name}x{p.size}" for p in spec.ordered_pools),
        )
        try:
            async with self._maas() as maas:
                try:
                    await self._adopt(maas, spec, work)
                    await self._allocate_missing(maas, spec, work)
                    await self._deploy_allocated(maas, spec, work)
                    await self._wait_deployed(maas, work, spec.poll_interval or self.poll_interval)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    error = maas_error_to_rpc(exc, f"cluster {spec.uid}")
                    log.warning("cluster.create failed cluster=%s error=%s", spec.uid, error)
                    raise await self._fail(maas, spec.uid, work, error) from exc
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

    async def _adopt(self, maas: MaasClient, spec: ClusterSpec, work: _Work) -> None:
        """Take over what MAAS already holds for the cluster (a retry or a resumed create)."""
        held = [m for m in await maas.list_machines(agent_name=spec.uid) if m.status not in _GONE]
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
            state = _state_of(machine)
            if state is None:
                await work.add(machine, pool.name, "Failed")
                raise RpcError(
                    RpcErrorCode.INTERNAL,
                    f"machine {machine.hostname} ({machine.system_id}) held for cluster "
                    f"{spec.uid} is {machine.status_label!r}"
                    f"{': ' + machine.status_message if machine.status_message else ''}; "
                    "look at its events in MAAS",
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
                await work.emit(_event(machine, None, "Released"))

    async def _allocate_missing(self, maas: MaasClient, spec: ClusterSpec, work: _Work) -> None:
        for pool in spec.ordered_pools:
            mine = [t for t in work.machines.values() if t.pool == pool.name]
            per_zone = {zone: 0 for zone in pool.azs}
            for tracked in mine:
                zone = _ref_name(tracked.machine.zone)
                if zone in per_zone:
                    per_zone[zone] += 1
            for _ in range(pool.size - len(mine)):
                machine = await self._allocate_one(maas, spec, pool, per_zone, len(mine))
                zone = _ref_name(machine.zone)
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
                    comment=f"Palette cluster {spec.uid}, machine pool {pool.name}",
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

    async def _deploy_allocated(self, maas: MaasClient, spec: ClusterSpec, work: _Work) -> None:
        pools = {pool.name: pool for pool in spec.pools}
        for tracked in list(work.machines.values()):
            if tracked.state != "Allocated":
                continue
            pool = pools[tracked.pool]
            await self._deploy(
                maas,
                work,
                tracked,
                render_tenant_user_data(spec, pool),
                agent_name=spec.uid,
                comment=f"Palette cluster {spec.uid}, machine pool {pool.name}",
            )

    async def _deploy(
        self,
        maas: MaasClient,
        work: _Work,
        tracked: _Tracked,
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

    async def _wait_deployed(self, maas: MaasClient, work: _Work, poll_interval: float) -> None:
        """Poll MAAS (one request per round for all machines) until every one is Deployed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.deploy_timeout
        while pending := [t for t in work.machines.values() if t.state != "Deployed"]:
            await asyncio.sleep(poll_interval)
            ids = [t.machine.system_id for t in pending]
            seen = {m.system_id: m for m in await maas.list_machines(system_ids=ids)}
            for tracked in pending:
                machine = seen.get(tracked.machine.system_id)
                if machine is None or machine.status in _GONE:
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
                        f"{tracked.pool} went to {machine.status_label!r}"
                        f"{': ' + machine.status_message if machine.status_message else ''}. "
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

    async def _fail(
        self,
        maas: MaasClient,
        agent_name: str,
        work: _Work,
        error: RpcError,
        only: Iterable[str] | None = None,
    ) -> RpcError:
        """Release the operation's machines after ``error``; the error to raise."""
        try:
            await self._release(maas, agent_name, work, only=only)
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

    async def _release(
        self,
        maas: MaasClient,
        agent_name: str,
        work: _Work,
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
                await work.emit(_event(machine, None, "Released"))
        return held

    # -- cluster.delete ------------------------------------------------------------------

    async def cluster_delete(self, request: Request, progress: Progress) -> dict[str, Any]:
        uid = request.params.get("clusterUid")
        if not isinstance(uid, str) or not _UID.fullmatch(uid):
            raise _invalid(f"clusterUid={uid!r} must be the uid of the cluster to delete")

        async def start(emit: EmitProgress) -> dict[str, Any]:
            return await self._delete(uid, emit)

        result: dict[str, Any] = await self.registry.run(
            request.idempotency_key, request.method, request.params, start, progress
        )
        return result

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
        work = _Work(_without_pool(emit))
        async with self._maas() as maas:
            released = await self._release(maas, uid, work)
            ids = [m.system_id for m in released]
            await self._wait_released(maas, uid, ids)
        log.info("cluster.delete done cluster=%s released=%d", uid, len(ids))
        return {"released": ids}

    async def _wait_released(self, maas: MaasClient, agent_name: str, ids: Sequence[str]) -> None:
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

    # -- gateway.resize ------------------------------------------------------------------

    async def gateway_resize(self, request: Request, progress: Progress) -> dict[str, Any]:
        size = request.params.get("size")
        if isinstance(size, bool) or size not in (1, 3):
            raise _invalid(f"size={size!r}: a gateway has 1 node (no HA) or 3 (HA)")
        assert isinstance(size, int)

        async def start(emit: EmitProgress) -> dict[str, Any]:
            return await self._resize(size, emit)

        result: dict[str, Any] = await self.registry.run(
            request.idempotency_key, request.method, request.params, start, progress
        )
        return result

    async def _resize(self, size: int, emit: EmitProgress) -> dict[str, Any]:
        agent_name = self.gateway_agent_name
        async with self._resize_lock, self._maas() as maas:
            held = [m for m in await maas.list_machines(agent_name=agent_name) if m.status in _HELD]
            current = len(held) if held else self.config.node_count
            if size < current:
                raise RpcError(
                    RpcErrorCode.FAILED_PRECONDITION,
                    f"gateway {self.config.gateway_name} has {current} nodes; shrinking to "
                    f"{size} is not supported (etcd needs its quorum): only 1 -> 3 is",
                )
            need = size - current
            work = _Work(emit)
            for machine in held:
                if machine.status is not NodeStatus.DEPLOYED:
                    await work.add(machine, GATEWAY_POOL_LABEL, _state_of(machine) or "")
            if need == 0 and not work.machines:
                return {"nodes": [_node_result(m) for m in held]}
            if need:
                self._check_node_config()
                chosen = await self._choose_gateway_machines(maas, size, need)
            else:
                chosen = []
            log.info(
                "gateway.resize gateway=%s from=%d to=%d resumed=%d",
                self.config.gateway_name,
                current,
                size,
                len(work.machines),
            )
            try:
                await self._allocate_gateway_nodes(maas, chosen, need, work)
                user_data = render_gateway_user_data(self.gateway_node_config())
                for tracked in list(work.machines.values()):
                    if tracked.state == "Allocated":
                        await self._deploy(
                            maas,
                            work,
                            tracked,
                            user_data,
                            agent_name=agent_name,
                            comment=f"gateway {self.config.gateway_name} node",
                        )
                await self._wait_deployed(maas, work, self.poll_interval)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = maas_error_to_rpc(exc, f"gateway.resize of {self.config.gateway_name}")
                log.warning("gateway.resize failed error=%s", error)
                raise await self._fail(
                    maas, agent_name, work, error, only=list(work.machines)
                ) from exc
            nodes = [
                m for m in await maas.list_machines(agent_name=agent_name) if m.status in _HELD
            ]
        return {"nodes": [_node_result(m) for m in sorted(nodes, key=lambda m: m.hostname)]}

    def _check_node_config(self) -> None:
        missing = [
            name
            for name in ("pairing_code", "install_id", "maas_api_endpoint", "maas_api_key")
            if not getattr(self.config, name)
        ]
        if missing:
            raise RpcError(
                RpcErrorCode.FAILED_PRECONDITION,
                f"this agent's config lacks {', '.join(missing)}, which a new gateway node "
                "needs to register and reach MAAS; nothing was allocated",
            )

    def gateway_node_config(self) -> dict[str, Any]:
        """The agent config of a new gateway node: this agent's, for a 3-node gateway, without
        this agent's own credential (a new node registers with the pairing code and install id).
        The CA bundle is a path on this node, so it is not carried over."""
        config = self.config
        proxies = config.proxies
        return {
            "gateway_name": config.gateway_name,
            "hub_url": config.hub_url,
            "pairing_code": config.pairing_code,
            "install_id": config.install_id,
            "domain": config.domain,
            "zone": config.zone,
            "resource_pool": config.resource_pool,
            "node_count": 3,
            "maas_api_endpoint": config.maas_api_endpoint,
            "maas_api_key": config.maas_api_key,
            "https_proxy": proxies.https_proxy,
            "http_proxy": proxies.http_proxy,
            "no_proxy": proxies.no_proxy,
            "log_level": config.log_level,
            "log_format": config.log_format,
        }

    async def _choose_gateway_machines(
        self, maas: MaasClient, size: int, need: int
    ) -> list[Machine]:
        """The Ready machines that qualify as gateway nodes; refuse when too few do."""
        zone, pool = self.config.zone, self.config.resource_pool
        qualified: list[Machine] = []
        reasons: dict[str, list[str]] = {}
        for machine in await maas.list_machines():
            why = []
            if machine.cpu_count < GATEWAY_MIN_CPU:
                why.append("too few CPUs")
            if machine.memory < GATEWAY_MIN_MEM_MIB:
                why.append("too little memory")
            if machine.storage_gb < GATEWAY_MIN_DISK_GB:  # total, as the installer counts
                why.append("too little storage")
            if _ref_name(machine.zone) != zone or _ref_name(machine.pool) != pool:
                why.append("wrong zone/pool")
            if machine.status is not NodeStatus.READY:
                why.append("not Ready")
            for reason in why:
                reasons.setdefault(reason, []).append(
                    machine.hostname
                    + (f" ({machine.status_label})" if reason == "not Ready" else "")
                )
            if not why:
                qualified.append(machine)
        if len(qualified) < need:
            order = (
                "too few CPUs",
                "too little memory",
                "too little storage",
                "wrong zone/pool",
                "not Ready",
            )
            found = "; ".join(
                f"{len(reasons[r])} {r}: {', '.join(reasons[r][:4])}"
                + (", ..." if len(reasons[r]) > 4 else "")
                for r in order
                if r in reasons
            )
            raise RpcError(
                RpcErrorCode.FAILED_PRECONDITION,
                f"resizing gateway {self.config.gateway_name} to {size} nodes needs {need} more "
                f"Ready machine(s) with >= {GATEWAY_MIN_CPU} CPUs, {GATEWAY_MIN_MEM_MIB} MiB "
                f"memory and {GATEWAY_MIN_DISK_GB} GB storage in zone {zone!r} and resource pool "
                f"{pool!r}; MAAS has {len(qualified)} such machine(s). The others do not qualify "
                f"({found or 'none'}; a machine may be counted under several reasons). "
                "Commission, release or add machines that qualify, then resize again. Nothing "
                "was allocated.",
                {
                    "qualifying": len(qualified),
                    "needed": need,
                    "reasons": {r: len(hosts) for r, hosts in reasons.items()},
                },
            )
        # MAAS's own preference: the smallest machine that fits
        return sorted(qualified, key=lambda m: (m.cpu_count + m.memory / 1024, m.hostname))

    async def _allocate_gateway_nodes(
        self, maas: MaasClient, chosen: Sequence[Machine], need: int, work: _Work
    ) -> None:
        for machine in chosen:
            if need == 0:
                return
            try:
                allocated = await maas.allocate(
                    system_id=machine.system_id,
                    agent_name=self.gateway_agent_name,
                    comment=f"gateway {self.config.gateway_name} node",
                )
            except NoMatchingMachine:
                continue  # taken since we looked: try the next one
            await work.add(allocated, GATEWAY_POOL_LABEL, "Allocated")
            need -= 1
        if need:
            raise RpcError(
                RpcErrorCode.FAILED_PRECONDITION,
                f"the Ready machines chosen for gateway {self.config.gateway_name} were taken "
                "by someone else meanwhile; resize again",
            )


# -- helpers ---------------------------------------------------------------------------------


def _positive(
    name: str, given: float | None, config: AgentConfig, key: str, default: float
) -> float:
    value = given if given is not None else getattr(config, key, None)
    value = default if value is None else float(value)
    if not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return value


def _state_of(machine: Machine) -> str | None:
    status = machine.status
    return None if status is None else _STATE_OF.get(status)


def _ref_name(ref: Any) -> str:
    return str(getattr(ref, "name", "") or "")


def _boot_disk_gb(machine: Machine) -> float:
    """Size of the boot disk in GB (MAAS's storage constraint applies to it); the total
    storage when MAAS does not say which disk boots."""
    boot = machine.raw.get("boot_disk")
    if isinstance(boot, Mapping):
        size = boot.get("size")
        if isinstance(size, (int, float)) and not isinstance(size, bool) and size > 0:
            return float(size) / 1e9
    return machine.storage_gb


def _event(machine: Machine, pool: str | None, state: str) -> dict[str, Any]:
    event = {"machine": machine.hostname, "systemId": machine.system_id, "state": state}
    if pool is not None:
        event["pool"] = pool
    return event


def _without_pool(emit: EmitProgress) -> EmitProgress:
    """cluster.delete's events are ``{"machine", "systemId", "state"}``."""

    async def send(event: Mapping[str, Any]) -> None:
        await emit({k: v for k, v in event.items() if k != "pool"})

    return send


def _machine_result(tracked: _Tracked) -> dict[str, Any]:
    machine = tracked.machine
    return {
        "systemId": machine.system_id,
        "hostname": machine.hostname,
        "fqdn": machine.fqdn,
        "pool": tracked.pool,
        "ip": machine.ip_addresses[0] if machine.ip_addresses else None,
    }


def _node_result(machine: Machine) -> dict[str, Any]:
    return {
        "systemId": machine.system_id,
        "hostname": machine.hostname,
        "fqdn": machine.fqdn,
        "ip": machine.ip_addresses[0] if machine.ip_addresses else None,
        "state": machine.status_label,
    }
