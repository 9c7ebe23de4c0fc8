"""The agent's side of the tunnel: dial out, stay connected, drain on shutdown.

``run()`` loops: dial (through the proxy when configured), HELLO, serve streams until the
session ends, wait as the backoff says (never less than a GOAWAY's retry-after), dial again.
A hub that stops answering is noticed by the session's keepalive (missed PONG or a write
that stalls) within ``AgentConfig.dead_peer_bound``.

The keepalive adapts to the path: a session that ends because a PING went unanswered is
often the work of a NAT or firewall that forgot an idle flow, so the next session pings twice
as often, down to ``KEEPALIVE_FLOOR`` seconds. The interval learned this way is kept for the
agent's lifetime (a restart starts again from ``ping_interval``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

from agent import __version__, logs
from agent.config import AgentConfig
from agent.credentials import Credential, CredentialStore
from protocol.aio.backoff import Backoff
from protocol.aio.dial import dial
from protocol.aio.proxy import redact_url
from protocol.aio.rpc import RpcHandler, RpcServer, call
from protocol.aio.session import StreamHandler, TunnelSession
from protocol.codes import ErrorCode
from protocol.connection import ConnectionConfig, Role
from protocol.exceptions import (
    ConnectionClosed,
    DialError,
    HubRejected,
    RpcError,
    TlsVerificationError,
)

log = logging.getLogger("pcg.agent")

#: the shortest ping interval the adaptive keepalive goes down to, in seconds
KEEPALIVE_FLOOR = 1.0


class TunnelClient:
    def __init__(
        self,
        config: AgentConfig,
        *,
        stream_handler: StreamHandler | None = None,
        rpc_handler: RpcHandler | None = None,
    ) -> None:
        self.config = config
        self.stream_handler = stream_handler
        self.rpc_handler = rpc_handler
        self.attempts = 0
        self.session: TunnelSession | None = None
        self.connected = asyncio.Event()
        self.credentials = CredentialStore(config.state_dir) if config.state_dir else None
        self.gateway_uid: str | None = None
        self._stopping = asyncio.Event()
        #: sessions the hub sent a graceful GOAWAY on, finishing their streams
        self._retiring: set[asyncio.Task[None]] = set()
        self._backoff = Backoff(config.backoff)
        #: the ping interval in use: config.ping_interval, halved after each silent death
        self.ping_interval = config.ping_interval
        #: this process, as the hub sees it: a new session from the same instance tells the hub
        #: that the instance's older sessions are dead
        self.instance = secrets.token_hex(8)

    def _retire(self, session: TunnelSession) -> None:
        """Let a session the hub sent a graceful GOAWAY on finish its streams in the background,
        while the agent dials a new one at once (PROTOCOL.md §8.2)."""
        log.info(
            "hub is draining this session gateway=%s open_streams=%d; dialing a new one",
            self.config.gateway_name,
            session.stats().open_streams,
        )

        async def finish() -> None:
            drained = await session.drain(self.config.drain_timeout)
            await session.close(
                ErrorCode.NO_ERROR, "drained" if drained else "drain timeout after GOAWAY"
            )

        task = asyncio.get_running_loop().create_task(finish(), name="tunnel-retire")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _wait_retired(self) -> None:
        """Let the sessions the hub retired finish their streams (each ends by its drain)."""
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)

    def stop(self) -> None:
        """Begin a graceful stop: GOAWAY, drain in-flight streams, close."""
        self._stopping.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        config = self.config
        while not self._stopping.is_set():
            self.attempts += 1
            retry_after = 0.0
            delay: float | None = None  # None: as the backoff says
            proxy = config.proxies.proxy_for(config.hub_url)
            log.info(
                "dialing hub gateway=%s attempt=%d url=%s proxy=%s",
                config.gateway_name,
                self.attempts,
                config.hub_url,
                redact_url(proxy) if proxy else "none",
            )
            try:
                authorization, headers, registering = self._authorization()
                session = await self._connect(authorization, headers)
                if registering:
                    await self._register(session)
                    continue  # dial again at once, as the registered gateway
            except DialError as exc:
                level = (
                    logging.ERROR
                    if isinstance(exc, HubRejected | TlsVerificationError)
                    else logging.WARNING
                )
                log.log(level, "hub unreachable gateway=%s error=%s", config.gateway_name, exc)
            except ConnectionClosed as exc:
                log.warning("tunnel handshake failed gateway=%s error=%s", config.gateway_name, exc)
            except RpcError as exc:
                log.error("registration failed gateway=%s error=%s", config.gateway_name, exc)
            else:
                up_since = loop.time()
                self.session = session
                self.connected.set()
                log.info(
                    "tunnel up gateway=%s attempt=%d hub=%s",
                    config.gateway_name,
                    self.attempts,
                    session.peer_info.get("hub", "?"),
                )
                stopped = await self._serve(session)
                self.connected.clear()
                self.session = None
                if stopped:
                    return
                lasted = loop.time() - up_since
                self._backoff.connection_lasted(lasted)
                if session.goaway is not None:
                    retry_after = session.goaway.retry_after_ms / 1000
                if not session.closed:  # retired by a graceful GOAWAY: a new session at once,
                    # unless sessions are being retired as fast as they come (then: backoff)
                    if lasted >= config.backoff_reset_after:
                        delay = retry_after
                else:
                    reason = session.close_reason
                    log.warning(
                        "tunnel down gateway=%s after=%.1fs reason=%s",
                        config.gateway_name,
                        lasted,
                        reason,
                    )
                    if reason is not None and reason.code is ErrorCode.PEER_UNRESPONSIVE:
                        self._shorten_keepalive()
            if delay is None:
                delay = self._backoff.next_delay(retry_after)
            log.info("reconnecting gateway=%s in=%.2fs", config.gateway_name, delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopping.wait()
        await self._wait_retired()  # stopped between sessions

    def _shorten_keepalive(self) -> None:
        floor = min(KEEPALIVE_FLOOR, self.config.ping_interval)
        shorter = max(floor, self.ping_interval / 2)
        if shorter < self.ping_interval:
            log.warning(
                "keepalive gateway=%s ping_interval=%.1fs->%.1fs reason=the path dropped a "
                "silent session; a NAT or firewall idle timeout is likely shorter than the "
                "interval (set ping_interval below it to skip this learning)",
                self.config.gateway_name,
                self.ping_interval,
                shorter,
            )
            self.ping_interval = shorter

    def _authorization(self) -> tuple[str, dict[str, str], bool]:
        """(Authorization header, extra headers, registering?) for the next attempt."""
        config = self.config
        if config.token:
            return f"Bearer {config.token}", {}, False
        stored = self.credentials.load() if self.credentials else None
        if stored is not None:
            logs.register_secret(stored.secret)
            self.gateway_uid = stored.uid
            return f"Bearer {stored.secret}", {}, False
        if config.pairing_code and config.install_id:
            headers = {"Pcg-Gateway-Name": config.gateway_name, "Pcg-Install-Id": config.install_id}
            return f"Pairing {config.pairing_code}", headers, True
        raise DialError(
            f"no credential in {config.state_dir} and no pairing_code to register with: "
            "give the agent a pairing code (rerun the installer) or restore the credential file"
        )

    async def _register(self, session: TunnelSession) -> None:
        """Present the pairing code over the tunnel; keep the credential Palette answers."""
        config = self.config
        assert self.credentials is not None and config.install_id is not None
        params = {
            "pairingCode": config.pairing_code,
            "name": config.gateway_name,
            "installId": config.install_id,
            "agentVersion": __version__,
            "maas": {"apiEndpoint": config.maas_api_endpoint, "apiKey": config.maas_api_key},
            "cloudConfig": {
                "domain": config.domain,
                "azs": [config.zone],
                "resourcePool": config.resource_pool,
                "size": config.node_count,
            },
        }
        try:
            answer = await call(
                session,
                "overlord.register",
                params,
                idempotency_key=config.install_id,
                deadline=config.open_timeout * 3,
            )
        finally:
            await session.close()
        logs.register_secret(str(answer["credential"]))
        self.credentials.save(Credential(str(answer["uid"]), str(answer["credential"])))
        self.gateway_uid = str(answer["uid"])
        log.info(
            "registered gateway=%s uid=%s credential_file=%s",
            config.gateway_name,
            self.gateway_uid,
            self.credentials.path,
        )

    async def _connect(self, authorization: str, headers: dict[str, str]) -> TunnelSession:
        config = self.config
        ws = await dial(
            config.hub_url,
            authorization=authorization,
            headers=headers,
            ca_bundle=config.ca_bundle,
            proxies=config.proxies,
            open_timeout=config.open_timeout,
            user_agent=f"pcg-agent/{__version__}",
        )
        session = TunnelSession(
            ws,
            ConnectionConfig(
                Role.CLIENT,
                config.tunnel_settings,
                info={
                    "agent": f"pcg-agent/{__version__}",
                    "gateway": config.gateway_name,
                    "instance": self.instance,
                },
                ping_interval=self.ping_interval,
                ping_timeout=config.ping_timeout,
                window_growth_budget=config.window_growth_budget,
            ),
            stream_handler=self.stream_handler,
            rpc_server=RpcServer(self.rpc_handler) if self.rpc_handler else None,
            write_timeout=config.write_timeout,
            label=config.gateway_name,
        )
        try:
            await session.start(handshake_timeout=config.open_timeout)
        except BaseException:
            await session.close()
            raise
        return session

    async def _serve(self, session: TunnelSession) -> bool:
        """Wait for the session to end or be retired by the hub (False), or for a stop
        request, then drain (True)."""
        ended = asyncio.ensure_future(session.wait_closed())
        stopping = asyncio.ensure_future(self._stopping.wait())
        goaway = asyncio.ensure_future(session.goaway_received.wait())
        try:
            await asyncio.wait({ended, stopping, goaway}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            goaway.cancel()
        if not self._stopping.is_set():
            if not session.closed:  # a graceful GOAWAY: the hub drains this session
                self._retire(session)
            return False
        ended.cancel()
        open_streams = session.stats().open_streams
        log.info(
            "stopping gateway=%s open_streams=%d drain_timeout=%.0fs",
            self.config.gateway_name,
            open_streams,
            self.config.drain_timeout,
        )
        await session.go_away(ErrorCode.SHUTTING_DOWN, "agent stopping", retry_after_ms=0)
        drained = await session.drain(self.config.drain_timeout)
        if not drained:
            log.warning(
                "drain timeout gateway=%s abandoned_streams=%d",
                self.config.gateway_name,
                session.stats().open_streams,
            )
        await session.close(ErrorCode.NO_ERROR, "agent stopped")
        await self._wait_retired()
        return True
