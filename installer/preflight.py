"""Preflight: every prerequisite of the product doc checked before any machine is touched.

Every check runs and every result is kept, so one run lists every failure. A check whose input
is wrong is reported as failed; a check that cannot run because another failed (no login, no
MAAS connection) is reported as skipped and names what to fix first. Palette and MAAS are
checked concurrently. Nothing here allocates, deploys or changes anything.

=====================  =================================================================
check id               what
=====================  =================================================================
host.platform          the installer runs on Linux x86-64
settings.<path>        a setting of pcg.yaml that is wrong on its own (name, proxies, ...)
palette.endpoint       https, a host, no path, no trailing '/'
palette.login          the user signs in (and is not an SSO-only user)
palette.pairingCode    the code is valid, unused and unexpired
palette.gatewayName    no gateway of that name exists in Palette yet
maas.endpoint          scheme, host, port, ending in /MAAS; MAAS answers there
maas.apiKey            3 parts; an authenticated call works
maas.domain/zone/pool  the chosen domain, zone and resource pool exist
maas.machines          enough Ready machines of 4 CPU / 8192 MiB / 60 GiB in zone + pool
network.podCidr        valid, overlaps neither the service range nor a MAAS subnet
network.serviceIpRange valid, overlaps neither the pod CIDR nor a MAAS subnet
maas.ips               enough unreserved addresses in the machines' subnet(s)
proxy.noProxy          with a proxy set, the MAAS host is in no_proxy (warning)
=====================  =================================================================
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import platform
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from installer import fields
from installer.config import InstallConfig
from installer.exceptions import (
    LoginRejected,
    PairingCodeRejected,
    PaletteError,
    SsoUserNotAllowed,
)
from installer.machines import Placement, Survey, subnet_ids
from installer.palette import PaletteClient
from protocol.aio.proxy import bypasses
from protocol.maas.apikey import ApiKey
from protocol.maas.client import MaasClient
from protocol.maas.exceptions import AuthError, MaasError
from protocol.maas.models import Machine, Subnet
from protocol.maas.retry import RetryPolicy


class Status(enum.StrEnum):
    OK = "ok"
    WARNING = "warning"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Check:
    id: str
    title: str
    status: Status
    message: str
    #: the pcg.yaml setting to change, when one is at fault
    setting: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "status": self.status.value,
            "message": self.message,
            "setting": self.setting,
        }


@dataclass(frozen=True, slots=True)
class PreflightReport:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status is Status.FAILED)

    @property
    def warnings(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status is Status.WARNING)

    def get(self, check_id: str) -> Check:
        for check in self.checks:
            if check.id == check_id:
                return check
        raise KeyError(check_id)

    def to_json(self) -> dict[str, Any]:
        counts = {status.value: 0 for status in Status}
        for check in self.checks:
            counts[check.status.value] += 1
        return {"ok": self.ok, "counts": counts, "checks": [c.to_json() for c in self.checks]}


@dataclass(frozen=True, slots=True)
class HostFacts:
    system: str
    machine: str

    @classmethod
    def current(cls) -> HostFacts:
        return cls(platform.system(), platform.machine())


def check_host(host: HostFacts) -> Check:
    title = "installer host is Linux x86-64"
    if host.system == "Linux" and host.machine.lower() in ("x86_64", "amd64"):
        return Check("host.platform", title, Status.OK, f"{host.system} {host.machine}")
    return Check(
        "host.platform",
        title,
        Status.FAILED,
        f"this host is {host.system} {host.machine}; the installer runs on an up-to-date Linux "
        "x86-64 system (ARM and macOS on Apple Silicon are not supported): run it from such a "
        "laptop, workstation or jump box",
    )


#: pcg.yaml setting -> the check that reports a problem with it
_CHECK_OF_SETTING = {
    "palette.endpoint": "palette.endpoint",
    "palette.pairingCode": "palette.pairingCode",
    "maas.apiEndpoint": "maas.endpoint",
    "maas.apiKey": "maas.apiKey",
    "environment.podCidr": "network.podCidr",
    "environment.serviceIpRange": "network.serviceIpRange",
}

_TITLES = {
    "host.platform": "installer host is Linux x86-64",
    "palette.endpoint": "Palette endpoint is https with no trailing '/'",
    "palette.login": "Palette sign-in works (local, non-SSO user)",
    "palette.pairingCode": "pairing code is valid and unexpired",
    "palette.gatewayName": "gateway name is free in Palette",
    "maas.endpoint": "MAAS API endpoint (scheme, host, port, /MAAS) answers",
    "maas.apiKey": "MAAS API key has 3 parts and works",
    "maas.domain": "MAAS domain exists",
    "maas.zone": "MAAS availability zone exists",
    "maas.pool": "MAAS resource pool exists",
    "maas.machines": "enough Ready machines in zone + pool",
    "network.podCidr": "pod CIDR is valid and overlaps nothing",
    "network.serviceIpRange": "service IP range is valid and overlaps nothing",
    "maas.ips": "enough free IP addresses in the machines' subnet",
    "proxy.noProxy": "MAAS bypasses the proxy",
}


@dataclass
class _Results:
    checks: dict[str, Check] = field(default_factory=dict)

    def add(self, check_id: str, status: Status, message: str, setting: str | None = None) -> None:
        title = _TITLES.get(check_id, f"setting {check_id.removeprefix('settings.')}")
        self.checks[check_id] = Check(check_id, title, status, message, setting)

    def ok(self, check_id: str) -> bool:
        check = self.checks.get(check_id)
        return check is not None and check.status in (Status.OK, Status.WARNING)

    def has(self, check_id: str) -> bool:
        return check_id in self.checks


@dataclass
class _MaasFacts:
    survey: Survey | None = None
    subnets: list[Subnet] = field(default_factory=list)
    subnets_known: bool = False


async def preflight(
    config: InstallConfig,
    *,
    host: HostFacts | None = None,
    request_timeout: float = 20.0,
    retry: RetryPolicy | None = None,
) -> PreflightReport:
    """Run every check against ``config``; never raises for a failed check."""
    results = _Results()
    results.add("host.platform", **_fields_of(check_host(host or HostFacts.current())))
    for problem in config.problems():
        check_id = _CHECK_OF_SETTING.get(problem.field, f"settings.{problem.field}")
        if not results.has(check_id):
            results.add(check_id, Status.FAILED, problem.message, problem.field)
    facts = _MaasFacts()
    await asyncio.gather(
        _palette_checks(config, results, request_timeout),
        _maas_checks(config, results, facts, request_timeout, retry),
    )
    _network_checks(config, results, facts)
    _ip_checks(results, facts)
    _proxy_check(config, results)
    order = sorted(k for k in results.checks if k.startswith("settings."))
    order[:0] = ["host.platform"]
    order += [k for k in _TITLES if k in results.checks and k != "host.platform"]
    return PreflightReport(tuple(results.checks[k] for k in order))


def _fields_of(check: Check) -> dict[str, Any]:
    return {"status": check.status, "message": check.message, "setting": check.setting}


def _bad(results: _Results, *settings: str) -> list[str]:
    """The settings among ``settings`` that already failed on their own."""
    failed = {c.setting for c in results.checks.values() if c.status is Status.FAILED}
    return [s for s in settings if s in failed]


def _skip_because(results: _Results, check_id: str, reason: str) -> None:
    results.add(check_id, Status.SKIPPED, f"not checked: {reason}")


# -- Palette --------------------------------------------------------------------------------


async def _palette_checks(config: InstallConfig, results: _Results, request_timeout: float) -> None:
    if not results.has("palette.endpoint"):
        results.add("palette.endpoint", Status.OK, config.palette_endpoint, "palette.endpoint")
    endpoint = config.palette_endpoint
    if _bad(results, "palette.endpoint"):
        # only a trailing '/'? then check the rest with it removed: one run, every failure
        endpoint = fields.repaired_palette_endpoint(config.palette_endpoint) or ""
    bad = _bad(results, "palette.username", "palette.password", "palette.caFile")
    if not endpoint:
        bad.insert(0, "palette.endpoint")
    if bad:
        reason = f"fix {', '.join(bad)} first"
        for check_id in ("palette.login", "palette.pairingCode", "palette.gatewayName"):
            if not results.has(check_id):
                _skip_because(results, check_id, reason)
        return
    async with PaletteClient(
        endpoint, ca_file=config.palette_ca_file, timeout=request_timeout
    ) as palette:
        try:
            await palette.login(config.username, config.password)
        except SsoUserNotAllowed as exc:
            results.add("palette.login", Status.FAILED, str(exc), "palette.username")
        except LoginRejected as exc:
            results.add("palette.login", Status.FAILED, str(exc), "palette.password")
        except PaletteError as exc:
            results.add("palette.login", Status.FAILED, str(exc), "palette.endpoint")
        else:
            where = "" if endpoint == config.palette_endpoint else f" (at {endpoint})"
            results.add("palette.login", Status.OK, f"signed in as {config.username}{where}")
        if not results.ok("palette.login"):
            for check_id in ("palette.pairingCode", "palette.gatewayName"):
                if not results.has(check_id):
                    _skip_because(results, check_id, "the Palette sign-in failed")
            return
        if not results.has("palette.pairingCode"):
            try:
                expires = await palette.validate_pairing_code(config.pairing_code)
            except PairingCodeRejected as exc:
                results.add("palette.pairingCode", Status.FAILED, str(exc), "palette.pairingCode")
            except PaletteError as exc:
                results.add("palette.pairingCode", Status.FAILED, str(exc), "palette.pairingCode")
            else:
                results.add(
                    "palette.pairingCode",
                    Status.OK,
                    f"valid until {expires}" if expires else "valid",
                )
        if not _bad(results, "name"):
            try:
                overlords = await palette.overlords()
            except PaletteError as exc:
                results.add("palette.gatewayName", Status.FAILED, str(exc))
            else:
                _gateway_name_check(config, results, overlords)
        else:
            _skip_because(results, "palette.gatewayName", "fix name first")


def _gateway_name_check(
    config: InstallConfig, results: _Results, overlords: list[dict[str, Any]]
) -> None:
    for overlord in overlords:
        metadata = overlord.get("metadata") or {}
        if metadata.get("name") == config.name:
            state = (overlord.get("status") or {}).get("state", "?")
            results.add(
                "palette.gatewayName",
                Status.FAILED,
                f"a gateway named {config.name!r} already exists in Palette (state {state}): "
                "delete it under Tenant Settings > Private Cloud Gateways, or choose another "
                "name",
                "name",
            )
            return
    results.add("palette.gatewayName", Status.OK, f"no gateway named {config.name!r} yet")


# -- MAAS -----------------------------------------------------------------------------------


_MAAS_DEPENDENT = ("maas.domain", "maas.zone", "maas.pool", "maas.machines", "maas.ips")


async def _maas_checks(
    config: InstallConfig,
    results: _Results,
    facts: _MaasFacts,
    request_timeout: float,
    retry: RetryPolicy | None,
) -> None:
    endpoint = config.maas_endpoint
    if _bad(results, "maas.apiEndpoint"):
        # only the path is wrong (no /MAAS)? check the rest at MAAS's root all the same
        endpoint = fields.repaired_maas_endpoint(config.maas_endpoint) or ""
    if not endpoint:
        _skip_because(results, "maas.apiKey", "fix maas.apiEndpoint first")
        for check_id in _MAAS_DEPENDENT:
            _skip_because(results, check_id, "fix maas.apiEndpoint first")
        return
    key: ApiKey | None = None if _bad(results, "maas.apiKey") else ApiKey.parse(config.maas_api_key)
    policy = retry or RetryPolicy(attempts=2, base_delay=0.5, max_delay=2.0)
    # the key is needed to build a client; a placeholder checks reachability when it is bad
    placeholder = ApiKey("x" * 18, "x" * 18, "x" * 32)
    async with MaasClient(
        endpoint, key or placeholder, timeout=request_timeout, retry=policy
    ) as maas:
        try:
            version = await maas.version()
        except MaasError as exc:
            message = f"MAAS does not answer at {endpoint}: {exc}"
            if endpoint != config.maas_endpoint:  # keep the syntax problem first
                message = f"{results.checks['maas.endpoint'].message}; and {message}"
            results.add("maas.endpoint", Status.FAILED, message, "maas.apiEndpoint")
            reason = "MAAS is not reachable"
            if key is not None:
                _skip_because(results, "maas.apiKey", reason)
            for check_id in _MAAS_DEPENDENT:
                _skip_because(results, check_id, reason)
            return
        if endpoint == config.maas_endpoint:
            results.add(
                "maas.endpoint",
                Status.OK,
                f"MAAS {version.version or '?'} at {endpoint}",
                "maas.apiEndpoint",
            )
        if key is None:
            for check_id in _MAAS_DEPENDENT:
                _skip_because(results, check_id, "fix maas.apiKey first")
            return
        try:
            zones = await maas.list_zones()
        except AuthError as exc:
            results.add(
                "maas.apiKey",
                Status.FAILED,
                f"MAAS refused the API key ({key.fingerprint}): {exc}. Create a key in the MAAS "
                "web console under My Preferences > API keys",
                "maas.apiKey",
            )
            for check_id in _MAAS_DEPENDENT:
                _skip_because(results, check_id, "the MAAS API key does not work")
            return
        except MaasError as exc:
            results.add("maas.apiKey", Status.FAILED, str(exc), "maas.apiKey")
            for check_id in _MAAS_DEPENDENT:
                _skip_because(results, check_id, "MAAS answered with an error")
            return
        results.add("maas.apiKey", Status.OK, f"authenticated (key {key.fingerprint})")
        try:
            pools, domains, subnets, machines = await asyncio.gather(
                maas.list_resource_pools(),
                maas.list_domains(),
                maas.list_subnets(),
                maas.list_machines(),
            )
        except MaasError as exc:
            for check_id in _MAAS_DEPENDENT:
                results.add(check_id, Status.FAILED, f"cannot read MAAS: {exc}")
            return
        facts.subnets, facts.subnets_known = subnets, True
        _exists(results, "maas.domain", "domain", config.domain, [d.name for d in domains])
        _exists(results, "maas.zone", "availability zone", config.zone, [z.name for z in zones])
        _exists(
            results, "maas.pool", "resource pool", config.resource_pool, [p.name for p in pools]
        )
        _machine_check(config, results, facts, machines)
        if facts.survey is not None and facts.survey.qualifying:
            try:
                check = await ip_check(maas, config, facts.survey, subnets)
            except MaasError as exc:
                results.add("maas.ips", Status.FAILED, f"cannot read MAAS's free addresses: {exc}")
            else:
                results.checks["maas.ips"] = check


def _exists(results: _Results, check_id: str, what: str, value: str, names: list[str]) -> None:
    setting = {"maas.domain": "maas.domain", "maas.zone": "maas.availabilityZone"}.get(
        check_id, "maas.resourcePool"
    )
    if _bad(results, setting):
        _skip_because(results, check_id, f"fix {setting} first")
    elif value in names:
        results.add(check_id, Status.OK, f"{what} {value!r}", setting)
    else:
        results.add(
            check_id,
            Status.FAILED,
            f"MAAS has no {what} {value!r}; it has: {', '.join(sorted(names)) or 'none'}. "
            f"Set {setting} to one of them",
            setting,
        )


def _machine_check(
    config: InstallConfig, results: _Results, facts: _MaasFacts, machines: list[Machine]
) -> None:
    missing = [c for c in ("maas.zone", "maas.pool") if not results.ok(c)]
    if missing or _bad(results, "maas.nodeCount"):
        reason = "fix " + ", ".join(missing or ["maas.nodeCount"]) + " first"
        _skip_because(results, "maas.machines", reason)
        return
    survey = Survey.of(machines, Placement(config.zone, config.resource_pool))
    facts.survey = survey
    enough = len(survey.qualifying) >= config.node_count
    results.add(
        "maas.machines",
        Status.OK if enough else Status.FAILED,
        survey.explain(config.node_count),
        "maas.nodeCount" if enough else None,
    )


# -- networks -------------------------------------------------------------------------------


def _network_checks(config: InstallConfig, results: _Results, facts: _MaasFacts) -> None:
    ranges = (
        ("network.podCidr", "environment.podCidr", "pod CIDR", config.pod_cidr),
        ("network.serviceIpRange", "environment.serviceIpRange", "service IP range",
         config.service_range),
    )  # fmt: skip
    for check_id, setting, what, value in ranges:
        if results.has(check_id):  # failed on its own, or overlapping the other range
            continue
        network = ipaddress.IPv4Network(value)
        clashes = [s for s in facts.subnets if fields.networks_overlap(s.cidr, str(network))]
        if clashes:
            listed = ", ".join(
                s.cidr if s.name in ("", s.cidr) else f"{s.cidr} ({s.name})" for s in clashes
            )
            results.add(
                check_id,
                Status.FAILED,
                f"{what} {value} overlaps MAAS subnet(s) {listed}: the machines' network must "
                f"not be reused inside the cluster; choose a range outside it",
                setting,
            )
        elif setting == "environment.podCidr" and value == fields.DEFAULT_POD_CIDR:
            results.add(
                check_id,
                Status.WARNING,
                f"pod CIDR {value} is the MAAS Kubernetes pack's default: make sure no network "
                "of the machines MAAS manages uses it (MAAS subnets checked"
                f"{'' if facts.subnets_known else ': not, MAAS was not readable'})",
                setting,
            )
        elif not facts.subnets_known:
            results.add(
                check_id,
                Status.SKIPPED,
                f"{what} {value} is valid; overlap with MAAS subnets not checked: MAAS was not "
                "readable",
                setting,
            )
        else:
            results.add(check_id, Status.OK, f"{value} overlaps no MAAS subnet", setting)


def _ip_checks(results: _Results, facts: _MaasFacts) -> None:
    """What to say about free addresses when the check could not run inside _maas_checks."""
    if results.has("maas.ips"):
        return
    if facts.survey is None:
        _skip_because(results, "maas.ips", "the machine check did not run")
    else:
        _skip_because(results, "maas.ips", "no machine qualifies to take an address")


def needed_addresses(chosen: Iterable[Machine], node_count: int) -> dict[int | None, int]:
    """Addresses each subnet must have free: one per node, plus one in the first node's
    subnet for the Kubernetes API server endpoint of a 3-node gateway (product doc)."""
    needs: dict[int | None, int] = {}
    first: int | None = None
    for index, machine in enumerate(chosen):
        ids = subnet_ids(machine)
        subnet = ids[0] if ids else None
        if index == 0:
            first = subnet
        needs[subnet] = needs.get(subnet, 0) + 1
    if node_count == 3 and needs:
        needs[first] = needs.get(first, 0) + 1
    return needs


async def ip_check(
    maas: MaasClient, config: InstallConfig, survey: Survey, subnets: list[Subnet]
) -> Check:
    """The free-address check; separate so that it can run while the MAAS client is open."""
    chosen = survey.qualifying[: config.node_count]
    needs = needed_addresses(chosen, config.node_count)
    by_id = {s.id: s for s in subnets}
    problems, seen = [], []
    for subnet_id, count in needs.items():
        if subnet_id is None:
            problems.append(
                f"{count} machine(s) have no subnet on their boot interface: link it to a "
                "MAAS subnet"
            )
            continue
        ranges = await maas.unreserved_ip_ranges(subnet_id)
        free = sum(r.num_addresses for r in ranges)
        cidr = by_id[subnet_id].cidr if subnet_id in by_id else f"subnet {subnet_id}"
        seen.append(f"{cidr}: {free} free, {count} needed")
        if free < count:
            problems.append(
                f"subnet {cidr} has {free} unreserved address(es), {count} needed "
                f"({config.node_count} node(s)"
                f"{' + 1 for the API server endpoint' if config.node_count == 3 else ''}); "
                "free addresses in MAAS (shrink a reserved or dynamic range, release machines)"
            )
    if problems:
        return Check("maas.ips", _TITLES["maas.ips"], Status.FAILED, "; ".join(problems))
    return Check("maas.ips", _TITLES["maas.ips"], Status.OK, "; ".join(seen))


def _proxy_check(config: InstallConfig, results: _Results) -> None:
    if not (config.https_proxy or config.http_proxy):
        results.add("proxy.noProxy", Status.OK, "no proxy configured")
        return
    try:
        parts = urlsplit(config.maas_endpoint)
        host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        host, port = "", 0
    if not host or _bad(results, "environment.noProxy"):
        _skip_because(results, "proxy.noProxy", "fix maas.apiEndpoint / environment.noProxy first")
        return
    if bypasses(host, port, config.no_proxy):
        results.add(
            "proxy.noProxy", Status.OK, f"MAAS host {host} is in no_proxy", "environment.noProxy"
        )
        return
    results.add(
        "proxy.noProxy",
        Status.WARNING,
        f"a proxy is set but the MAAS host {host} is not in No Proxy "
        f"({config.no_proxy or 'empty'}): the gateway would reach MAAS through the proxy. "
        f"Add {host} (or its network) to environment.noProxy",
        "environment.noProxy",
    )
