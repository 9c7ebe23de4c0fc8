"""PaletteSimulator: the state, the tunnel hub, registration, gateway health and the work that
Palette does through a gateway (cluster create and delete, resize), with the REST API of
:mod:`protocol.simulator.palette.api` on the same server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from protocol.aio.session import TunnelSession
from protocol.codes import ErrorCode
from protocol.exceptions import RpcError
from protocol.rpc import Request, RpcErrorCode
from protocol.simulator.hub import GatewayUnavailable, Hub, HubConfig, bearer_token
from protocol.simulator.palette.model import (
    PAIRING_ALPHABET,
    PAIRING_CODE_TTL,
    Clock,
    CloudAccount,
    Cluster,
    Overlord,
    PairingCode,
    PaletteState,
    PaletteUser,
    digest,
    new_uid,
)

log = logging.getLogger("pcg.palette")

PAIRING_PREFIX = "pairing:"


class PaletteError(Exception):
    """An API error in Palette's envelope: HTTP status, code and message."""

    def __init__(
        self, status: int, code: str, message: str, details: Mapping[str, Any] | None = None
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = dict(details or {})

    def response(self, ref: str = "") -> web.Response:
        body = {"code": self.code, "message": self.message, "ref": ref, "details": self.details}
        return web.json_response(body, status=self.status)


class PaletteSimulator:
    def __init__(
        self,
        users: Sequence[PaletteUser] = (),
        sso_users: Sequence[str] = (),
        *,
        clock: Clock | None = None,
        tls: tuple[str | Path, str | Path] | None = None,
        unhealthy_after: float = 30.0,
        ping_interval: float = 10.0,
        ping_timeout: float = 10.0,
        state_file: str | Path | None = None,
        cluster_timeout: float = 1800.0,
        retry_cap: float = 5.0,
    ) -> None:
        self.users = {u.email.lower(): u for u in users}
        self.sso_users = {e.lower() for e in sso_users}
        self.clock = clock or Clock()
        self.tls = tls
        self.unhealthy_after = unhealthy_after
        self.cluster_timeout = cluster_timeout
        self.retry_cap = retry_cap
        self.state_file = Path(state_file) if state_file else None
        self.state = (
            PaletteState.load(self.state_file)
            if self.state_file and self.state_file.exists()
            else PaletteState()
        )
        self.tokens: set[str] = set()
        self.hub = Hub(
            self._authenticate_agent,
            HubConfig(ping_interval=ping_interval, ping_timeout=ping_timeout),
            rpc_handler=self._agent_rpc,
        )
        self.hub.session_listeners.append(self._on_session)
        self.url = ""
        self.tunnel_url = ""
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._cluster_tasks: dict[str, asyncio.Task[Any]] = {}

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        from protocol.simulator.palette.api import routes

        app = web.Application()
        app.add_routes(self.hub.routes())
        app.add_routes(routes(self))
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        context: ssl.SSLContext | None = None
        if self.tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
        site = web.TCPSite(self._runner, host, port, ssl_context=context)
        await site.start()
        bound = self._runner.addresses[-1][1]
        secure = context is not None
        self.url = f"{'https' if secure else 'http'}://{host}:{bound}"
        self.tunnel_url = f"{'wss' if secure else 'ws'}://{host}:{bound}/v1/tunnel"
        self._spawn(self._health_loop())
        for cluster in self.state.clusters.values():  # resume work a restart interrupted
            if cluster.state == "Provisioning":
                self._cluster_tasks[cluster.uid] = self._spawn(self._provision(cluster))
            elif cluster.state == "Deleting":
                self._spawn(self._delete_cluster(cluster))
        return self.url

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for sessions in list(self.hub.sessions.values()):
            for session in list(sessions):
                await session.close(ErrorCode.SHUTTING_DOWN, "palette stopping")
        if self._runner is not None:
            await self._runner.cleanup()
        self.save()

    async def __aenter__(self) -> PaletteSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def save(self) -> None:
        if self.state_file is not None:
            self.state.save(self.state_file)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def overlords(self) -> list[dict[str, Any]]:
        return [o.to_api(self.clock, self.live_sessions(o)) for o in self.state.overlords.values()]

    def cloud_accounts(self) -> list[dict[str, Any]]:
        return [a.to_api() for a in self.state.cloud_accounts.values()]

    # ------------------------------------------------------------------ users

    def login(self, email: str, password: str) -> str:
        key = email.lower()
        if key in self.sso_users:
            raise PaletteError(
                403,
                "SsoUserNotAllowed",
                f"{email} signs in with SSO or social sign-on only; the gateway installer cannot "
                "use such credentials. Use or create a local (non-SSO) tenant admin account in "
                "Palette and give its email and password. Once the gateway is running, that "
                "account is no longer used and may be disabled.",
            )
        user = self.users.get(key)
        if user is None or not secrets.compare_digest(user.password, password):
            raise PaletteError(401, "InvalidCredentials", "wrong email or password")
        token = secrets.token_urlsafe(32)
        self.tokens.add(token)
        return token

    # ------------------------------------------------------------------ pairing codes

    def issue_pairing_code(self) -> str:
        while True:
            code = "".join(secrets.choice(PAIRING_ALPHABET) for _ in range(6))
            if code not in self.state.pairing_codes:
                break
        self.state.pairing_codes[code] = PairingCode(code, self.clock.now())
        self.save()
        return code

    def check_pairing_code(self, code: str, install_id: str | None) -> PairingCode:
        """The code, or a PaletteError that says which of invalid, expired or used it is."""
        entry = self.state.pairing_codes.get(code.strip().upper())
        if entry is None:
            raise PaletteError(
                401,
                "PairingCodeInvalid",
                "no such pairing code; check the code shown in Palette under Tenant Settings > "
                "Private Cloud Gateways > Create Private Cloud Gateway > MAAS",
            )
        if entry.used_by_install is not None:
            if install_id is not None and entry.used_by_install == install_id:
                return entry  # another node of the same install joining
            raise PaletteError(
                409,
                "PairingCodeUsed",
                "this pairing code was already used to register a gateway; get a new code "
                "from Palette and rerun the installer",
            )
        age = self.clock.now() - entry.issued_at
        if age > PAIRING_CODE_TTL:
            raise PaletteError(
                401,
                "PairingCodeExpired",
                f"this pairing code expired {int((age - PAIRING_CODE_TTL) // 60)} minutes ago "
                "(codes are valid for 24 hours); get a new code from Palette",
            )
        return entry

    # ------------------------------------------------------------------ agents

    async def _authenticate_agent(self, request: web.Request) -> str | web.Response:
        header = request.headers.get("Authorization", "")
        if header.startswith("Pairing "):
            install_id = request.headers.get("Pcg-Install-Id", "")
            name = request.headers.get("Pcg-Gateway-Name", "")
            if not install_id or not name:
                return PaletteError(
                    400, "BadRequest", "registration needs Pcg-Gateway-Name and Pcg-Install-Id"
                ).response()
            try:
                self.check_pairing_code(header[8:], install_id)
            except PaletteError as exc:
                log.warning("registration refused name=%s reason=%s", name, exc.code)
                return exc.response()
            return PAIRING_PREFIX + install_id
        overlord = self.state.overlord_by_credential(bearer_token(request))
        if overlord is None:
            return PaletteError(
                401,
                "Unauthorized",
                "unknown or revoked gateway credential; the gateway may have been deleted",
            ).response()
        return overlord.uid

    async def _agent_rpc(self, request: Request, progress: Any) -> Any:
        if request.method != "overlord.register":
            raise RpcError(RpcErrorCode.NOT_FOUND, f"Palette has no method {request.method!r}")
        return self.register(request.params)

    def register(self, params: Mapping[str, Any]) -> dict[str, str]:
        """RPC overlord.register: create the gateway (or answer another node of its install)."""
        code = str(params.get("pairingCode", ""))
        install_id = str(params.get("installId", ""))
        name = str(params.get("name", "")).strip()
        maas = params.get("maas") or {}
        if not name or not install_id or not isinstance(maas, Mapping):
            raise RpcError(RpcErrorCode.INVALID_ARGUMENT, "register needs name, installId, maas")
        try:
            entry = self.check_pairing_code(code, install_id)
        except PaletteError as exc:
            raise RpcError(RpcErrorCode.UNAUTHENTICATED, exc.message, {"code": exc.code}) from None
        if entry.overlord_uid is not None and entry.overlord_uid in self.state.overlords:
            # another node of the same install joins the same gateway with its own credential
            overlord = self.state.overlords[entry.overlord_uid]
            credential = secrets.token_urlsafe(32)
            overlord.credential_digests.append(digest(credential))
            self.save()
            return {"uid": overlord.uid, "credential": credential}
        cloud = params.get("cloudConfig") or {}
        credential = secrets.token_urlsafe(32)
        overlord = Overlord(
            uid=new_uid(),
            name=name,
            install_id=install_id,
            created_at=self.clock.now(),
            credential_digests=[digest(credential)],
            cloud_account_uid=new_uid(),
            domain=str(cloud.get("domain", "maas")),
            azs=[str(z) for z in cloud.get("azs", ["default"])],
            resource_pool=str(cloud.get("resourcePool", "default")),
            size=int(cloud.get("size", 1)),
            agent_version=str(params.get("agentVersion", "")),
        )
        account = CloudAccount(
            uid=overlord.cloud_account_uid,
            name=f"{name}-maas",
            api_endpoint=str(maas.get("apiEndpoint", "")),
            api_key=str(maas.get("apiKey", "")),
            overlord_uid=overlord.uid,
        )
        self.state.overlords[overlord.uid] = overlord
        self.state.cloud_accounts[account.uid] = account
        entry.used_by_install = install_id
        entry.overlord_uid = overlord.uid
        self.save()
        log.info("gateway registered name=%s uid=%s state=Pending", name, overlord.uid)
        return {"uid": overlord.uid, "credential": credential}

    def _on_session(self, identity: str, session: TunnelSession, up: bool) -> None:
        overlord = self.state.overlords.get(identity)
        if overlord is None:
            return
        now = self.clock.now()
        overlord.last_heartbeat = now
        if up:
            overlord.ever_connected = True
            overlord.agent_version = session.peer_info.get("agent", "").rpartition("/")[2]
            if overlord.state != "Running":
                log.info("gateway running name=%s uid=%s", overlord.name, overlord.uid)
            overlord.state = "Running"
        self.save()

    def live_sessions(self, overlord: Overlord) -> int:
        return sum(1 for s in self.hub.sessions.get(overlord.uid, []) if s.is_usable)

    async def _health_loop(self) -> None:
        """Heartbeats from live sessions; Unhealthy after unhealthy_after without one."""
        while True:
            now = self.clock.now()
            for overlord in list(self.state.overlords.values()):
                if self.live_sessions(overlord):
                    overlord.last_heartbeat = now
                    if overlord.state != "Running":
                        overlord.state = "Running"
                        log.info("gateway running name=%s uid=%s", overlord.name, overlord.uid)
                elif (
                    overlord.state == "Running"
                    and overlord.last_heartbeat is not None
                    and now - overlord.last_heartbeat > self.unhealthy_after
                ):
                    overlord.state = "Unhealthy"
                    log.warning("gateway unhealthy name=%s uid=%s", overlord.name, overlord.uid)
                    self.save()
            await asyncio.sleep(min(1.0, self.unhealthy_after / 4))

    # ------------------------------------------------------------------ through the gateway

    async def call_gateway(
        self, overlord: Overlord, method: str, params: Mapping[str, Any] | None = None, **kw: Any
    ) -> Any:
        try:
            return await self.hub.call(overlord.uid, method, params, **kw)
        except GatewayUnavailable as exc:
            raise RpcError(RpcErrorCode.UNAVAILABLE, str(exc), {"retryable": True}) from None

    async def _retrying(
        self,
        overlord: Overlord,
        method: str,
        params: Mapping[str, Any],
        key: str,
        record: Any,
        events: list[dict[str, Any]],
    ) -> Any:
        """Call until the gateway answers something other than unavailable (same key).

        A retry attached to an operation under way gets its earlier progress events again
        (PROTOCOL.md §9.3), so ``record`` sees each attempt's events from the start: the caller
        truncates ``events`` back to where this call started before each attempt."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cluster_timeout
        delay = 0.2
        first_event = len(events)
        while True:
            del events[first_event:]  # the gateway replays this operation's events from the start
            try:
                return await self.call_gateway(
                    overlord,
                    method,
                    params,
                    idempotency_key=key,
                    deadline=max(1.0, deadline - loop.time()),
                    on_progress=record,
                )
            except RpcError as exc:
                if exc.code != RpcErrorCode.UNAVAILABLE or loop.time() + delay > deadline:
                    raise
                log.info(
                    "gateway unavailable, retrying method=%s key=%s in=%.1fs", method, key, delay
                )
            await asyncio.sleep(delay)
            delay = min(self.retry_cap, delay * 2)

    def create_cluster(self, body: Mapping[str, Any]) -> Cluster:
        from protocol.simulator.palette.clusters import validate_cluster

        name, spec = validate_cluster(body)
        account_uid = spec["cloudAccountUid"]
        overlord = self.state.overlord_of_account(account_uid)
        if overlord is None:
            raise PaletteError(
                404, "CloudAccountNotFound", f"no MAAS cloud account with uid {account_uid!r}"
            )
        cluster = Cluster(new_uid(), name, account_uid, dict(spec), self.clock.now())
        self.state.clusters[cluster.uid] = cluster
        self.save()
        self._cluster_tasks[cluster.uid] = self._spawn(self._provision(cluster))
        return cluster

    async def _provision(self, cluster: Cluster) -> None:
        from protocol.simulator.palette.clusters import rpc_params

        overlord = self.state.overlord_of_account(cluster.cloud_account_uid)
        if overlord is None:
            cluster.state, cluster.message = "Failed", "its cloud account no longer exists"
            self.save()
            return

        def record(event: Mapping[str, Any]) -> None:
            cluster.events.append(dict(event))
            system_id = str(event.get("systemId", ""))
            if system_id:
                machine = cluster.machines.setdefault(system_id, {"systemId": system_id})
                machine.update(
                    hostname=event.get("machine", machine.get("hostname")),
                    pool=event.get("pool", machine.get("pool")),
                    state=event.get("state"),
                )
            self.save()

        try:
            result = await self._retrying(
                overlord, "cluster.create", rpc_params(cluster), cluster.uid, record, cluster.events
            )
        except RpcError as exc:
            cluster.state, cluster.message = "Failed", exc.message
            log.warning("cluster failed name=%s reason=%s", cluster.name, exc.message)
        else:
            for machine in result.get("machines", []):
                cluster.machines[machine["systemId"]] = {
                    "systemId": machine["systemId"],
                    "hostname": machine.get("hostname"),
                    "pool": machine.get("pool"),
                    "state": "Deployed",
                    "ip": machine.get("ip"),
                }
            cluster.state, cluster.message = "Running", ""
            log.info("cluster running name=%s machines=%d", cluster.name, len(cluster.machines))
        self.save()

    def delete_cluster(self, cluster: Cluster) -> None:
        if cluster.state in ("Deleting", "Deleted"):
            return
        provisioning = self._cluster_tasks.pop(cluster.uid, None)
        if provisioning is not None:
            provisioning.cancel()  # the gateway's cluster.delete waits for its create to stop
        cluster.state = "Deleting"
        self.save()
        self._spawn(self._delete_cluster(cluster))

    async def _delete_cluster(self, cluster: Cluster) -> None:
        overlord = self.state.overlord_of_account(cluster.cloud_account_uid)

        def record(event: Mapping[str, Any]) -> None:
            cluster.events.append(dict(event))
            machine = cluster.machines.get(str(event.get("systemId", "")))
            if machine is not None:
                machine["state"] = event.get("state")

        if overlord is not None:
            try:
                await self._retrying(
                    overlord,
                    "cluster.delete",
                    {"clusterUid": cluster.uid},
                    f"delete:{cluster.uid}",
                    record,
                    cluster.events,
                )
            except RpcError as exc:
                cluster.state, cluster.message = "Failed", f"delete failed: {exc.message}"
                self.save()
                return
        cluster.state, cluster.message = "Deleted", ""
        self.save()

    async def resize(self, overlord: Overlord, size: int) -> dict[str, Any]:
        if size == overlord.size:
            return {"size": size}
        if size < overlord.size:
            raise PaletteError(
                400,
                "ResizeNotSupported",
                f"a gateway cannot shrink from {overlord.size} to {size} nodes: its etcd would "
                "lose quorum; delete and reinstall the gateway instead",
            )
        if (overlord.size, size) != (1, 3):
            raise PaletteError(
                400, "ResizeNotSupported", f"a gateway has 1 or 3 nodes; {size} is not possible"
            )
        try:
            result = await self.call_gateway(
                overlord,
                "gateway.resize",
                {"size": size},
                idempotency_key=f"resize:{overlord.uid}:{size}",
                deadline=self.cluster_timeout,
            )
        except RpcError as exc:
            if exc.code == RpcErrorCode.FAILED_PRECONDITION:
                raise PaletteError(409, "InsufficientMachines", exc.message, exc.details) from None
            if exc.code == RpcErrorCode.UNAVAILABLE:
                raise PaletteError(503, "OverlordUnavailable", exc.message) from None
            raise PaletteError(500, "ResizeFailed", exc.message, exc.details) from None
        overlord.size = size
        self.save()
        return dict(result) if isinstance(result, Mapping) else {"size": size}

    async def delete_overlord(self, overlord: Overlord) -> None:
        busy = self.state.clusters_of(overlord)
        if busy:
            names = ", ".join(sorted(c.name for c in busy))
            raise PaletteError(
                409,
                "OverlordInUse",
                f"gateway {overlord.name} still serves tenant clusters: {names}; delete them "
                "first, then delete the gateway",
                {"clusters": sorted(c.name for c in busy)},
            )
        for session in list(self.hub.sessions.get(overlord.uid, [])):
            with contextlib.suppress(RpcError, Exception):
                from protocol.aio.rpc import call

                await call(session, "agent.decommission", {"reason": "gateway deleted"}, deadline=5)
        overlord.credential_digests.clear()  # revoked: nothing authenticates any more
        del self.state.overlords[overlord.uid]
        self.state.cloud_accounts.pop(overlord.cloud_account_uid, None)
        for session in list(self.hub.sessions.get(overlord.uid, [])):
            await session.close(ErrorCode.UNAUTHORIZED, "gateway deleted")
        self.save()
        log.info("gateway deleted name=%s uid=%s", overlord.name, overlord.uid)
