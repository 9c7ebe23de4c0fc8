"""``MaasClient``: the MAAS API 2.0 calls the gateway needs, with typed results.

Used by both the agent (which allocates, deploys and releases tenant machines) and the
installer (which checks the MAAS endpoint, the key, zones, pools and free machines)::

    async with MaasClient("http://maas:5240/MAAS", ApiKey.parse(key)) as maas:
        machine = await maas.allocate(cpu_count=4, mem=8192, zone="az1", agent_name="pcg")
        await maas.deploy(machine.system_id, distro_series="jammy", user_data=cloud_config)
        machine = await maas.wait_for_status(machine.system_id, NodeStatus.DEPLOYED)
        await maas.release([machine.system_id])

Every method raises the exceptions of :mod:`protocol.maas.exceptions`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp

from protocol.maas.apikey import ApiKey
from protocol.maas.exceptions import MaasApiError, MachineFailed, MachineWaitTimeout
from protocol.maas.models import (
    FAILURE_STATUSES,
    Domain,
    IpRange,
    MaasVersion,
    Machine,
    NodeStatus,
    ResourcePool,
    Subnet,
    Zone,
)
from protocol.maas.retry import RetryPolicy
from protocol.maas.transport import MaasTransport

__all__ = ["MaasClient"]

log = logging.getLogger("protocol.maas")

T = TypeVar("T")

#: python-libmaas and terraform-provider-maas poll a deploying machine every 3-5 s
DEFAULT_POLL_INTERVAL = 5.0
#: ... and give a deployment 30 minutes
DEFAULT_WAIT_TIMEOUT = 1800.0


class MaasClient:
    """An async client for one MAAS region. Use as ``async with``; or call :meth:`close`."""

    def __init__(
        self,
        endpoint: str,
        api_key: ApiKey | str,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        trust_env: bool = True,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        """``endpoint`` is MAAS's root, e.g. ``http://maas:5240/MAAS``; ``timeout`` applies to
        each request; ``trust_env`` makes aiohttp honour HTTP(S)_PROXY / NO_PROXY."""
        key = api_key if isinstance(api_key, ApiKey) else ApiKey.parse(api_key)
        self._http = MaasTransport(
            endpoint,
            key,
            timeout=timeout,
            retry=retry or RetryPolicy(),
            trust_env=trust_env,
            session=session,
        )

    @property
    def endpoint(self) -> str:
        return self._http.endpoint

    @property
    def api_root(self) -> str:
        return self._http.api_root

    async def __aenter__(self) -> MaasClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.close()

    def __repr__(self) -> str:
        return f"MaasClient({self.endpoint!r}, key={self._http.api_key.fingerprint})"

    # -- version -------------------------------------------------------------------------

    async def version(self) -> MaasVersion:
        """``GET version/``. Not signed: it tells whether MAAS is there, not whether the key
        is good (a bad key would turn it into a 401)."""
        data = await self._http.call(
            "GET", "version/", action="read the MAAS version", signed=False
        )
        return MaasVersion.from_json(data)

    # -- machines ------------------------------------------------------------------------

    async def list_machines(
        self,
        *,
        zone: str | Sequence[str] | None = None,
        pool: str | Sequence[str] | None = None,
        status: NodeStatus | str | Sequence[NodeStatus | str] | None = None,
        hostname: str | Sequence[str] | None = None,
        agent_name: str | None = None,
        tags: Sequence[str] = (),
        system_ids: Sequence[str] = (),
    ) -> list[Machine]:
        """``GET machines/`` with MAAS's filters; several values of one filter mean "any of"
        (tags: "all of")."""
        query: list[tuple[str, str]] = []
        _add(query, "zone", zone)
        _add(query, "pool", pool)
        _add(query, "hostname", hostname)
        _add(query, "agent_name", agent_name)
        _add(query, "tags", tags)
        _add(query, "id", system_ids)
        if status is not None:
            statuses = [status] if isinstance(status, (str, NodeStatus)) else list(status)
            _add(query, "status", [_status_filter(item) for item in statuses])
        data = await self._http.call("GET", "machines/", query=query, action="list machines")
        return _many(data, Machine.from_json)

    async def get_machine(self, system_id: str) -> Machine:
        """``GET machines/{system_id}/``."""
        data = await self._http.call(
            "GET",
            _machine_path(system_id),
            action=f"read machine {system_id!r}",
            subject=f"machine {system_id!r}",
        )
        return Machine.from_json(data)

    async def allocate(
        self,
        *,
        cpu_count: int | None = None,
        mem: int | None = None,
        storage: str | None = None,
        zone: str | None = None,
        pool: str | None = None,
        tags: Sequence[str] = (),
        not_tags: Sequence[str] = (),
        hostname: str | None = None,
        system_id: str | None = None,
        agent_name: str | None = None,
        comment: str | None = None,
        dry_run: bool = False,
    ) -> Machine:
        """``POST machines/?op=allocate``: take one Ready machine meeting every constraint.

        ``cpu_count`` and ``mem`` (MiB) are minimums; ``storage`` is MAAS's
        ``label:sizeGB(tag,...)`` list, e.g. ``"root:60"``; ``tags`` must all be present,
        ``not_tags`` none. With ``dry_run`` MAAS only says which machine it would pick.
        Raises :class:`NoMatchingMachine` when nothing fits.
        """
        form: list[tuple[str, str]] = []
        _add(form, "name", hostname)
        _add(form, "system_id", system_id)
        _add(form, "cpu_count", cpu_count)
        _add(form, "mem", mem)
        _add(form, "storage", storage)
        _add(form, "zone", zone)
        _add(form, "pool", pool)
        _add(form, "tags", tags)
        _add(form, "not_tags", not_tags)
        _add(form, "agent_name", agent_name)
        _add(form, "comment", comment)
        if dry_run:
            form.append(("dry_run", "true"))
        wanted = " ".join(f"{name}={value}" for name, value in form if name != "comment")
        data = await self._http.call(
            "POST",
            "machines/",
            op="allocate",
            form=form,
            action=f"allocate a machine ({wanted or 'no constraints'})",
        )
        machine = Machine.from_json(data)
        log.info(
            "maas.allocated system_id=%s hostname=%s dry_run=%s",
            machine.system_id,
            machine.hostname,
            dry_run,
        )
        return machine

    async def deploy(
        self,
        system_id: str,
        *,
        distro_series: str | None = None,
        user_data: str | bytes | None = None,
        hwe_kernel: str | None = None,
        agent_name: str | None = None,
        comment: str | None = None,
    ) -> Machine:
        """``POST machines/{id}/?op=deploy``. ``user_data`` is the cloud-init document itself;
        it is base64-encoded here, as MAAS expects. Returns the machine, usually Deploying."""
        form: list[tuple[str, str]] = []
        _add(form, "distro_series", distro_series)
        _add(form, "hwe_kernel", hwe_kernel)
        _add(form, "agent_name", agent_name)
        _add(form, "comment", comment)
        if user_data is not None:
            raw = user_data.encode() if isinstance(user_data, str) else bytes(user_data)
            form.append(("user_data", base64.b64encode(raw).decode("ascii")))
        data = await self._http.call(
            "POST",
            _machine_path(system_id),
            op="deploy",
            form=form,
            action=f"deploy machine {system_id!r}",
            subject=f"machine {system_id!r}",
        )
        machine = Machine.from_json(data)
        log.info("maas.deploy system_id=%s status=%s", system_id, machine.status_label)
        return machine

    async def release_machine(
        self,
        system_id: str,
        *,
        comment: str | None = None,
        erase: bool = False,
        force: bool = False,
    ) -> Machine:
        """``POST machines/{id}/?op=release`` for one machine, with MAAS's erase/force."""
        form: list[tuple[str, str]] = []
        _add(form, "comment", comment)
        if erase:
            form.append(("erase", "true"))
        if force:
            form.append(("force", "true"))
        data = await self._http.call(
            "POST",
            _machine_path(system_id),
            op="release",
            form=form,
            action=f"release machine {system_id!r}",
            subject=f"machine {system_id!r}",
        )
        return Machine.from_json(data)

    async def release(
        self, system_ids: Iterable[str], *, comment: str | None = None
    ) -> tuple[str, ...]:
        """``POST machines/?op=release``: release several machines in one request.

        Returns the system_ids MAAS started releasing (Ready ones need nothing and are not
        listed). Any machine in a state that cannot be released fails the whole call with
        :class:`WrongState`; unknown ids give :class:`BadRequest`.
        """
        ids = list(dict.fromkeys(system_ids))
        if not ids:
            return ()
        form: list[tuple[str, str]] = [("machines", system_id) for system_id in ids]
        _add(form, "comment", comment)
        data = await self._http.call(
            "POST",
            "machines/",
            op="release",
            form=form,
            action=f"release machines {', '.join(ids)}",
            subject="machines",
        )
        released = tuple(str(item) for item in data) if isinstance(data, list) else ()
        log.info("maas.release requested=%d started=%d", len(ids), len(released))
        return released

    async def wait_for_status(
        self,
        system_id: str,
        target: NodeStatus | Collection[NodeStatus],
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        max_wait: float = DEFAULT_WAIT_TIMEOUT,
        fail_on: Collection[NodeStatus] = FAILURE_STATUSES,
    ) -> Machine:
        """Poll ``GET machines/{id}/`` until the status is in ``target``.

        Raises :class:`MachineFailed` as soon as the status is in ``fail_on`` (and not a
        target), :class:`MachineWaitTimeout` after ``max_wait`` seconds.
        """
        targets = frozenset([target] if isinstance(target, NodeStatus) else target)
        if not targets:
            raise ValueError("wait_for_status needs at least one target status")
        if poll_interval <= 0 or max_wait < 0:
            raise ValueError(
                f"poll_interval must be > 0 and max_wait >= 0, got {poll_interval} and {max_wait}"
            )
        wanted = " or ".join(sorted(status.label for status in targets))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait
        while True:
            machine = await self.get_machine(system_id)
            status = machine.status
            if status in targets:
                return machine
            if status in fail_on:
                raise MachineFailed(
                    f"Machine {machine.hostname or system_id} ({system_id}) went to "
                    f"{machine.status_label!r} while waiting for {wanted}"
                    f"{': ' + machine.status_message if machine.status_message else ''}. "
                    "Look at the machine's events in MAAS, fix the cause, then release it and "
                    "try again.",
                    machine=machine,
                )
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise MachineWaitTimeout(
                    f"Machine {machine.hostname or system_id} ({system_id}) is still "
                    f"{machine.status_label!r} after {max_wait:g} s of waiting for {wanted}. "
                    "Check its progress in MAAS; wait longer (max_wait) if it is just slow.",
                    machine=machine,
                )
            await asyncio.sleep(min(poll_interval, remaining))

    # -- zones, pools, domains, subnets --------------------------------------------------

    async def list_zones(self) -> list[Zone]:
        data = await self._http.call("GET", "zones/", action="list zones")
        return _many(data, Zone.from_json)

    async def get_zone(self, name: str) -> Zone:
        data = await self._http.call(
            "GET", f"zones/{_seg(name)}/", action=f"read zone {name!r}", subject=f"zone {name!r}"
        )
        return Zone.from_json(data)

    async def list_resource_pools(self) -> list[ResourcePool]:
        data = await self._http.call("GET", "resourcepools/", action="list resource pools")
        return _many(data, ResourcePool.from_json)

    async def get_resource_pool(self, pool_id: int) -> ResourcePool:
        # MAAS names the collection resourcepools/ but one pool resourcepool/{id}/
        data = await self._http.call(
            "GET",
            f"resourcepool/{int(pool_id)}/",
            action=f"read resource pool {pool_id}",
            subject=f"resource pool {pool_id}",
        )
        return ResourcePool.from_json(data)

    async def list_domains(self) -> list[Domain]:
        data = await self._http.call("GET", "domains/", action="list domains")
        return _many(data, Domain.from_json)

    async def list_subnets(self) -> list[Subnet]:
        data = await self._http.call("GET", "subnets/", action="list subnets")
        return _many(data, Subnet.from_json)

    async def get_subnet(self, subnet_id: int | str) -> Subnet:
        data = await self._http.call(
            "GET",
            f"subnets/{_seg(str(subnet_id))}/",
            action=f"read subnet {subnet_id}",
            subject=f"subnet {subnet_id}",
        )
        return Subnet.from_json(data)

    async def unreserved_ip_ranges(self, subnet_id: int | str) -> list[IpRange]:
        """``GET subnets/{id}/?op=unreserved_ip_ranges``: the addresses MAAS has not set aside
        (no reserved or dynamic range, not in use)."""
        data = await self._http.call(
            "GET",
            f"subnets/{_seg(str(subnet_id))}/",
            op="unreserved_ip_ranges",
            action=f"list unreserved IP ranges of subnet {subnet_id}",
            subject=f"subnet {subnet_id}",
        )
        return _many(data, IpRange.from_json)


# -- helpers ----------------------------------------------------------------------------


def _seg(value: str) -> str:
    return quote(value, safe="")


def _machine_path(system_id: str) -> str:
    if not system_id or not isinstance(system_id, str):
        raise ValueError(f"system_id must be a non-empty string, got {system_id!r}")
    return f"machines/{_seg(system_id)}/"


def _status_filter(status: NodeStatus | str) -> str:
    if isinstance(status, NodeStatus):
        return status.filter_value
    return status.strip().lower().replace(" ", "_")


def _add(pairs: list[tuple[str, str]], name: str, value: object) -> None:
    """Append ``name=value``; None and "" are skipped; a list/tuple repeats the name."""
    if value is None or value == "":
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _add(pairs, name, item)
        return
    pairs.append((name, str(value)))


def _many(data: Any, parse: Callable[[Any], T]) -> list[T]:
    if not isinstance(data, list):
        raise MaasApiError(
            f"MAAS answered with {type(data).__name__} where a JSON list was expected; is the "
            "endpoint really MAAS's API root (e.g. http://maas.example.com:5240/MAAS)?",
            status=200,
            method="GET",
            url="",
            body=str(data)[:300],
        )
    return [parse(item) for item in data]
