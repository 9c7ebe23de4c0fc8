"""The aiohttp application: MAAS API 2.0 under ``/MAAS/api/2.0/`` and the simulator-only control
endpoint under ``/MAAS/sim/``.

API requests go through, in order: fault injection (latency, dropped connection, 503 or 409 with
Retry-After), the OAuth check (:mod:`protocol.simulator.maas.oauth`), then dispatch on
``(HTTP method, op)`` as MAAS's OperationsHandler does: an unknown pair is a 400
"Unrecognised signature: method=POST op=foo". Errors use MAAS's status codes and texts: 400 JSON
``{field: [messages]}`` for form errors, text/plain otherwise.

The control endpoint is NOT protected by OAuth: it exists for tests and demos only. See
``protocol/maas/README.md`` for its routes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from aiohttp import BodyPartReader, web

from protocol.maas.apikey import ApiKey
from protocol.simulator.maas import control
from protocol.simulator.maas.constraints import parse_allocate, parse_read
from protocol.simulator.maas.core import (
    KNOWN_SERIES,
    NoAddressAvailable,
    NoMachineAvailable,
    SimulatorCore,
)
from protocol.simulator.maas.describe import api_hash, describe
from protocol.simulator.maas.faults import FaultKind
from protocol.simulator.maas.oauth import OAuthRejected
from protocol.simulator.maas.render import (
    API_PREFIX,
    domain_json,
    ip_ranges_json,
    machine_json,
    pool_json,
    subnet_json,
    zone_json,
)
from protocol.simulator.maas.state import IllegalTransition, SimMachine

__all__ = ["CORE_KEY", "build_app"]

log = logging.getLogger("protocol.simulator.maas")

CORE_KEY: web.AppKey[SimulatorCore] = web.AppKey("maas_core", SimulatorCore)
#: the key that signed the request being handled (None: anonymous); aiohttp runs each request
#: in its own task, so the middleware's value is the handler's
_CALLER: ContextVar[ApiKey | None] = ContextVar("maas_sim_caller", default=None)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

VERSION = {
    "capabilities": [
        "networks-management",
        "static-ipaddresses",
        "ipv6-deployment-ubuntu",
        "devices-management",
        "storage-deployment-ubuntu",
        "network-deployment-ubuntu",
        "bridging-interface-ubuntu",
        "bridging-automatic-ubuntu",
        "authenticate-api",
    ],
    "version": "3.5.0",
    "subversion": "pcg-simulator",
}


class ApiError(Exception):
    """Turned into a MAAS-shaped error response by the middleware."""

    def __init__(self, status: int, body: str | dict[str, list[str]], **headers: str) -> None:
        super().__init__(body)
        self.status = status
        self.body = body
        self.headers = headers

    def response(self) -> web.Response:
        if isinstance(self.body, dict):
            response: web.Response = web.json_response(self.body, status=self.status)
        else:
            response = _text(self.body, self.status)
        response.headers.update(self.headers)
        return response


def build_app(core: SimulatorCore) -> web.Application:
    app = web.Application(middlewares=[_api_middleware])
    app[CORE_KEY] = core
    api = API_PREFIX
    routes: list[tuple[str, Handler]] = [
        ("version/", _version),
        ("describe/", _describe),
        ("machines/", _machines),
        ("machines/{system_id}/", _machine),
        ("zones/", _zones),
        ("zones/{name}/", _zone),
        ("resourcepools/", _pools),
        ("resourcepool/{id}/", _pool),
        ("domains/", _domains),
        ("domains/{id}/", _domain),
        ("subnets/", _subnets),
        ("subnets/{id}/", _subnet),
        ("ipranges/", _ipranges),
    ]
    for path, handler in routes:
        app.router.add_route("*", api + path, handler)
    app.router.add_route("*", api + "{tail:.*}", _unknown)
    control.add_routes(app, core)
    return app


# -- middleware ---------------------------------------------------------------------------


@web.middleware
async def _api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(API_PREFIX):
        return await handler(request)
    core = request.app[CORE_KEY]
    if core.faults.latency:
        await asyncio.sleep(core.faults.latency)
    rule = core.faults.take(f"{request.method} {request.path_qs}")
    if rule is not None:
        log.info("maas-sim.fault kind=%s request=%s", rule.kind.value, request.path_qs)
        if rule.kind is FaultKind.DROP:
            if request.transport is not None:
                request.transport.close()
            # aiohttp writes this nowhere (the transport is gone) and logs nothing
            raise web.HTTPServiceUnavailable()
        status = 503 if rule.kind is FaultKind.UNAVAILABLE else 409
        return ApiError(
            status,
            "Service temporarily unavailable (simulated fault); retry later."
            if status == 503
            else "Conflict (simulated fault): retry this request.",
            **{"Retry-After": str(rule.retry_after)},
        ).response()
    try:
        _CALLER.set(core.verifier.verify(request.headers.get("Authorization"), time.time()))
    except OAuthRejected as exc:
        log.info("maas-sim.auth-rejected reason=%s path=%s", exc.reason, request.path)
        rejected = _text(str(exc), 401)
        rejected.headers["WWW-Authenticate"] = 'OAuth realm="OAuth"'
        return rejected
    try:
        response = await handler(request)
    except ApiError as exc:
        response = exc.response()
    response.headers["X-MAAS-API-Hash"] = api_hash()
    return response


def _require_user(request: web.Request) -> None:
    # piston3 "challenges" an anonymous request to an authenticated handler: 401, "Forbidden"
    if _CALLER.get() is None:
        raise ApiError(401, "Forbidden", **{"WWW-Authenticate": 'OAuth realm="OAuth"'})


def _op(request: web.Request, **table: Handler) -> Handler:
    """Pick the handler for (method, op); keys are ``GET``, ``POST_allocate``..."""
    op = request.query.get("op")
    key = request.method if op is None else f"{request.method}_{op}"
    handler = table.get(key)
    if handler is None:
        raise ApiError(400, f"Unrecognised signature: method={request.method} op={op}")
    return handler


# -- helpers ------------------------------------------------------------------------------


def _text(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/plain", charset="utf-8")


async def _form(request: web.Request) -> list[tuple[str, str]]:
    """The POST body as name/value pairs, urlencoded or multipart (python-libmaas)."""
    if request.method != "POST" or not request.can_read_body:
        return []
    if not request.content_type.startswith("multipart/"):
        return [(name, str(value)) for name, value in (await request.post()).items()]
    # python-libmaas always sends multipart, base64 transfer-encoded parts, and a part without
    # a name when there are no parameters (Django ignores it; aiohttp's post() refuses it).
    pairs: list[tuple[str, str]] = []
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name is None:
            continue
        value = await part.read(decode=True)
        pairs.append((part.name, bytes(value).decode(part.get_charset("utf-8"), "replace")))
    return pairs


def _get(pairs: list[tuple[str, str]], name: str, default: str | None = None) -> str | None:
    return next((value for key, value in pairs if key == name), default)


def _bool(pairs: list[tuple[str, str]], name: str) -> bool:
    return (_get(pairs, name) or "").strip().lower() in ("1", "true", "yes", "on")


def _not_found(model: str) -> ApiError:
    return ApiError(404, f"No {model} matches the given query.")


def _machine_or_404(request: web.Request) -> SimMachine:
    machine = request.app[CORE_KEY].machines.get(request.match_info["system_id"])
    if machine is None:
        raise _not_found("Machine")
    return machine


def _json(data: Any) -> web.Response:
    return web.json_response(data)


# -- anonymous ----------------------------------------------------------------------------


async def _version(request: web.Request) -> web.StreamResponse:
    _op(request, GET=_version)
    return _json(VERSION)


async def _describe(request: web.Request) -> web.StreamResponse:
    _op(request, GET=_describe)
    return _json(describe(f"{request.scheme}://{request.host}"))


async def _unknown(request: web.Request) -> web.StreamResponse:
    return _text(f"Unknown API endpoint: {request.path}.", 404)


# -- machines -----------------------------------------------------------------------------


async def _machines(request: web.Request) -> web.StreamResponse:
    _require_user(request)
    handler = _op(request, GET=_list_machines, POST_allocate=_allocate, POST_release=_release_many)
    return await handler(request)


async def _list_machines(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE_KEY]
    pairs = [(k, v) for k, v in request.query.items() if k != "op"]
    query, errors = parse_read(pairs, core.state)
    if errors:
        raise ApiError(400, errors)
    return _json([machine_json(core.state, m) for m in core.machines.values() if query.matches(m)])


async def _allocate(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE_KEY]
    pairs = await _form(request)
    query, errors = parse_allocate(pairs, core.state)
    if errors:
        raise ApiError(400, errors)
    try:
        machine = core.allocate(
            query,
            agent_name=_get(pairs, "agent_name", "") or "",
            comment=_get(pairs, "comment"),
            dry_run=_bool(pairs, "dry_run"),
        )
    except NoMachineAvailable:
        described = query.describe()
        system_id = _get(pairs, "system_id")
        if not described:
            message = "No machine available."
        elif system_id is not None:
            message = f"No machine with system ID {system_id} available."
        else:
            grouped: dict[str, list[str]] = {}
            for name, value in pairs:
                grouped.setdefault(name, []).append(value)
            message = (
                f"No available machine matches constraints: {list(grouped.items())} "
                f'(resolved to "{described}")'
            )
        raise ApiError(409, message) from None
    return _json(machine_json(core.state, machine, constraints_by_type={}))


async def _release_many(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE_KEY]
    pairs = await _form(request)
    ids = list(dict.fromkeys(value for name, value in pairs if name == "machines"))
    unknown = [system_id for system_id in ids if system_id not in core.machines]
    if unknown:
        raise ApiError(400, f"Unknown machine(s): {', '.join(unknown)}.")
    try:
        released = core.release_many(
            [core.machines[system_id] for system_id in ids], comment=_get(pairs, "comment")
        )
    except IllegalTransition as exc:
        raise ApiError(409, str(exc)) from None
    return _json(released)


async def _machine(request: web.Request) -> web.StreamResponse:
    _require_user(request)
    handler = _op(request, GET=_read_machine, POST_deploy=_deploy, POST_release=_release)
    return await handler(request)


async def _read_machine(request: web.Request) -> web.StreamResponse:
    return _json(machine_json(request.app[CORE_KEY].state, _machine_or_404(request)))


async def _deploy(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE_KEY]
    machine = _machine_or_404(request)
    pairs = await _form(request)
    series = _get(pairs, "distro_series") or None
    if series is not None and series.rpartition("/")[2] not in KNOWN_SERIES:
        choices = ", ".join(f"'ubuntu/{name}'" for name in KNOWN_SERIES)
        raise ApiError(
            400,
            {"distro_series": [f"'{series}' is not a valid distro_series.  It should be one "
                               f"of: '', {choices}."]},
        )  # fmt: skip
    user_data: bytes | None = None
    encoded = _get(pairs, "user_data")
    if encoded:
        try:
            user_data = base64.b64decode(encoded.encode("ascii", "replace"))
        except (binascii.Error, ValueError):
            raise ApiError(400, {"user_data": ["User data must be base64 encoded."]}) from None
    try:
        core.deploy(
            machine,
            user_data=user_data,
            distro_series=series,
            hwe_kernel=_get(pairs, "hwe_kernel") or None,
            agent_name=_get(pairs, "agent_name", "") or "",
        )
    except IllegalTransition as exc:
        raise ApiError(409, str(exc)) from None
    except NoAddressAvailable as exc:
        raise ApiError(503, str(exc)) from None
    return _json(machine_json(core.state, machine))


async def _release(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE_KEY]
    machine = _machine_or_404(request)
    pairs = await _form(request)
    try:
        core.release(machine, comment=_get(pairs, "comment"))
    except IllegalTransition as exc:
        raise ApiError(409, str(exc)) from None
    return _json(machine_json(core.state, machine))


# -- zones, pools, domains, subnets -------------------------------------------------------


async def _zones(request: web.Request) -> web.StreamResponse:
    _require_user(request)
    _op(request, GET=_zones)
    return _json([zone_json(zone) for zone in request.app[CORE_KEY].state.inventory.zones])


async def _zone(request: web.Request) -> web.StreamResponse:
    _require_user(request)
    _op(request, GET=_zone)
    zone = request.app[CORE_KEY].state.zone(request.match_info["name"])
    if zone is None:
        raise _not_found("Zone")
    return _json(zone_json(zone))


async def _pools(request: web.Request) -> web.StreamResponse:
    _require_user(request)
    _op(request, GET=_pools)
    return _json([pool_json(pool) for pool in request.app[CORE_KEY].state.inventory.pools])


async def _pool(request: web.Request) -> web.StreamResponse:
    _require_user(request)
    _op(request, GET=_pool)
    wanted = request.match_info["id"]
    pools = request.app[CORE_KEY].state.inventory.pools
    pool = next((p for p in pools if str(p.id) == wanted), None)
    if pool is None:
        raise _not_found("ResourcePool")
    return _json(pool_json(pool))


async def _domains(request: web.Request) -> web.StreamResponse:
    _require_user(request)
    _op(request, GET=_domains)
    state = request.app[CORE_KEY].state
    return _json([domain_json(state, domain) for domain in state.inventory.domains])


async def _domain(request: web.Request) -> web.StreamResponse:
    _require_user(request)
    _op(request, GET=_domain)
    state = request.app[CORE_KEY].state
    wanted = request.match_info["id"]
    domain = next((d for d in state.inventory.domains if str(d.id) == wanted), None)
    if domain is None:
        raise _not_found("Domain")
    return _json(domain_json(state, domain))


async def _subnets(request: web.Request) -> web.StreamResponse:
    _require_user(request)
    _op(request, GET=_subnets)
    return _json([subnet_json(s) for s in request.app[CORE_KEY].state.inventory.subnets])


async def _subnet(request: web.Request) -> web.StreamResponse:
    _require_user(request)
    state = request.app[CORE_KEY].state
    wanted = request.match_info["id"]
    subnet = next((s for s in state.inventory.subnets if str(s.id) == wanted), None)
    if subnet is None:
        raise _not_found("Subnet")

    async def read(_: web.Request) -> web.StreamResponse:
        return _json(subnet_json(subnet))

    async def unreserved(_: web.Request) -> web.StreamResponse:
        return _json(
            [
                {"start": str(first), "end": str(first + count - 1), "num_addresses": count}
                for first, count in state.unreserved(subnet)
            ]
        )

    return await _op(request, GET=read, GET_unreserved_ip_ranges=unreserved)(request)


async def _ipranges(request: web.Request) -> web.StreamResponse:
    _require_user(request)
    _op(request, GET=_ipranges)
    return _json(ip_ranges_json(request.app[CORE_KEY].state))
