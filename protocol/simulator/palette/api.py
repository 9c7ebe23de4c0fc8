"""The REST API of the Palette simulator (README.md next to this file lists every call)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from protocol.exceptions import RpcError
from protocol.rpc import RpcErrorCode

if TYPE_CHECKING:
    from protocol.simulator.palette.server import PaletteSimulator

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def routes(sim: PaletteSimulator) -> list[web.RouteDef]:
    from protocol.simulator.palette.server import PaletteError

    def api(handler: Callable[[web.Request], Awaitable[Any]], *, auth: bool = True) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            ref = secrets.token_hex(6)
            try:
                if auth:
                    token = request.headers.get("Authorization", "")
                    if token not in sim.tokens:
                        raise PaletteError(
                            401, "Unauthorized", "log in first: POST /v1/auth/authenticate"
                        )
                result = await handler(request)
            except PaletteError as exc:
                return exc.response(ref)
            if isinstance(result, web.StreamResponse):
                return result
            return web.json_response(result)

        return wrapped

    async def body(request: web.Request) -> Any:
        try:
            return await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise PaletteError(400, "BadRequest", "the body must be JSON") from None

    def overlord_or_404(uid: str) -> Any:
        overlord = sim.state.overlords.get(uid)
        if overlord is None:
            raise PaletteError(404, "OverlordNotFound", f"no private cloud gateway with uid {uid}")
        return overlord

    async def authenticate(request: web.Request) -> Any:
        data = await body(request)
        email, password = data.get("emailId"), data.get("password")
        if not isinstance(email, str) or not isinstance(password, str):
            raise PaletteError(400, "BadRequest", "give emailId and password")
        return {"Authorization": sim.login(email, password), "isMfa": False}

    async def pairing_code(request: web.Request) -> Any:
        cloud_type = request.query.get("cloudType", "maas")
        if cloud_type != "maas":
            raise PaletteError(400, "BadRequest", f"cloudType {cloud_type!r}: only maas here")
        return {"pairingCode": sim.issue_pairing_code()}

    async def validate_pairing(request: web.Request) -> Any:
        data = await body(request)
        entry = sim.check_pairing_code(str(data.get("pairingCode", "")), None)
        return {"valid": True, "expiresAt": sim.clock.iso(entry.issued_at + 24 * 3600)}

    async def list_overlords(request: web.Request) -> Any:
        return {"items": sim.overlords()}

    async def get_overlord(request: web.Request) -> Any:
        overlord = overlord_or_404(request.match_info["uid"])
        return overlord.to_api(sim.clock, sim.live_sessions(overlord))

    async def delete_overlord(request: web.Request) -> Any:
        await sim.delete_overlord(overlord_or_404(request.match_info["uid"]))
        return web.Response(status=204)

    async def cloud_config(request: web.Request) -> Any:
        overlord = overlord_or_404(request.match_info["uid"])
        data = await body(request)
        size = data.get("size")
        if type(size) is not int:
            raise PaletteError(400, "BadRequest", f"size={size!r} must be 1 or 3")
        return await sim.resize(overlord, size)

    async def list_accounts(request: web.Request) -> Any:
        return {"items": sim.cloud_accounts()}

    async def get_account(request: web.Request) -> Any:
        account = sim.state.cloud_accounts.get(request.match_info["uid"])
        if account is None:
            raise PaletteError(404, "CloudAccountNotFound", "no such MAAS cloud account")
        return account.to_api()

    methods = {
        "azs": "maas.zones",
        "resourcePools": "maas.resource_pools",
        "domains": "maas.domains",
        "subnets": "maas.subnets",
    }

    async def account_property(request: web.Request) -> Any:
        what = request.match_info["what"]
        if what not in methods:
            raise PaletteError(404, "NotFound", f"properties are {', '.join(methods)}")
        overlord = sim.state.overlord_of_account(request.match_info["uid"])
        if overlord is None:
            raise PaletteError(404, "CloudAccountNotFound", "no such MAAS cloud account")
        try:
            items = await sim.call_gateway(overlord, methods[what], {}, deadline=30)
        except RpcError as exc:
            if exc.code == RpcErrorCode.UNAVAILABLE:
                raise PaletteError(503, "OverlordUnavailable", exc.message) from None
            raise PaletteError(502, "GatewayError", exc.message, exc.details) from None
        return {"items": items}

    async def create_cluster(request: web.Request) -> Any:
        cluster = sim.create_cluster(await body(request))
        return web.json_response({"uid": cluster.uid}, status=201)

    def cluster_or_404(uid: str) -> Any:
        cluster = sim.state.clusters.get(uid)
        if cluster is None:
            raise PaletteError(404, "ClusterNotFound", f"no cluster with uid {uid}")
        return cluster

    async def list_clusters(request: web.Request) -> Any:
        return {"items": [c.to_api(sim.clock) for c in sim.state.clusters.values()]}

    async def get_cluster(request: web.Request) -> Any:
        return cluster_or_404(request.match_info["uid"]).to_api(sim.clock)

    async def delete_cluster(request: web.Request) -> Any:
        sim.delete_cluster(cluster_or_404(request.match_info["uid"]))
        return web.json_response({}, status=202)

    async def advance_clock(request: web.Request) -> Any:
        data = await body(request)
        sim.clock.advance(float(data.get("seconds", 0)))
        return {"now": sim.clock.iso()}

    return [
        web.post("/v1/auth/authenticate", api(authenticate, auth=False)),
        web.get("/v1/overlords/pairing/code", api(pairing_code)),
        web.post("/v1/overlords/pairing/validate", api(validate_pairing)),
        web.get("/v1/overlords", api(list_overlords)),
        web.get("/v1/overlords/{uid}", api(get_overlord)),
        web.delete("/v1/overlords/{uid}", api(delete_overlord)),
        web.put("/v1/overlords/maas/{uid}/cloudconfig", api(cloud_config)),
        web.get("/v1/cloudaccounts/maas", api(list_accounts)),
        web.get("/v1/cloudaccounts/maas/{uid}", api(get_account)),
        web.get("/v1/cloudaccounts/maas/{uid}/properties/{what}", api(account_property)),
        web.post("/v1/spectroclusters/maas", api(create_cluster)),
        web.get("/v1/spectroclusters", api(list_clusters)),
        web.get("/v1/spectroclusters/{uid}", api(get_cluster)),
        web.delete("/v1/spectroclusters/{uid}", api(delete_cluster)),
        web.post("/v1/sim/clock/advance", api(advance_clock, auth=False)),
    ]
