"""Open the agent's websocket to the hub: TLS, bearer token, proxy, clear errors."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import Mapping
from urllib.parse import SplitResult, unquote, urlsplit

from websockets.exceptions import InvalidHandshake, InvalidStatus

from protocol.aio.channel import ProxyRefused, WebSocketChannel
from protocol.aio.proxy import ProxySettings, redact_url
from protocol.exceptions import DialError, HubRejected, ProxyError, TlsVerificationError


def _error_body(body: bytes | bytearray | None) -> tuple[str, str]:
    """(message, code) from a refusal's JSON error envelope, if it has one."""
    try:
        data = json.loads(body or b"")
    except ValueError:
        return "", ""
    if not isinstance(data, dict):
        return "", ""
    return str(data.get("message", ""))[:300], str(data.get("code", ""))


def tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """Verify the hub against ``ca_bundle`` when given, else the system's trust store."""
    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        raise TlsVerificationError(
            f"cannot load the CA bundle {ca_bundle!r}: {exc}; point ca_bundle at a PEM file"
        ) from exc


async def dial(
    url: str,
    *,
    authorization: str | None = None,
    token: str | None = None,
    ca_bundle: str | None = None,
    proxies: ProxySettings | None = None,
    open_timeout: float = 10.0,
    max_message_size: int = 1024 * 1024,
    headers: Mapping[str, str] | None = None,
    user_agent: str = "pcg-agent",
) -> WebSocketChannel:
    """Open the websocket; raises a :class:`DialError` whose message says what to fix.

    ``authorization`` is the whole header value (``Pairing <code>``, ``Bearer <credential>``);
    ``token`` is short for ``authorization=f"Bearer {token}"``. Neither appears in an error.
    """
    if authorization is None:
        if token is None:
            raise DialError("dial needs authorization or token")
        authorization = f"Bearer {token}"
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise DialError(f"hub URL {url!r} must look like wss://host[:port]/path")
    proxy = (proxies or ProxySettings()).proxy_for(url)
    tls = tls_context(ca_bundle) if parts.scheme == "wss" else None
    target = f"{parts.hostname}:{parts.port or (443 if tls else 80)}"
    via = f" through proxy {redact_url(proxy)}" if proxy else ""
    all_headers = {"Authorization": authorization, **(headers or {})}
    channel: WebSocketChannel | None = None
    try:
        async with asyncio.timeout(open_timeout):
            channel = await _open(parts, tls, proxy, max_message_size)
            await channel.handshake(url, all_headers, user_agent)
        return channel
    except BaseException as exc:
        if channel is not None:
            channel.abort()
        if isinstance(exc, Exception):
            raise _explain(exc, target, via, proxy) from None
        raise


async def _open(
    hub: SplitResult, tls: ssl.SSLContext | None, proxy: str | None, max_size: int
) -> WebSocketChannel:
    """A connected channel to the hub: TCP (through the proxy's CONNECT when given), then TLS."""
    loop = asyncio.get_running_loop()
    host = hub.hostname or ""
    port = hub.port or (443 if tls else 80)

    def make() -> WebSocketChannel:
        return WebSocketChannel(max_size=max_size)

    if proxy is None:
        _, channel = await loop.create_connection(make, host, port, ssl=tls)
        return channel
    via = urlsplit(proxy)
    if via.scheme not in ("http", "https") or not via.hostname:
        raise DialError(
            f"proxy {redact_url(proxy)} is not an HTTP proxy URL; use "
            "http://[user:password@]host:port (or https://)"
        )
    proxy_tls = ssl.create_default_context() if via.scheme == "https" else None
    proxy_host, proxy_port = via.hostname or "", via.port or (443 if proxy_tls else 80)
    transport, channel = await loop.create_connection(make, proxy_host, proxy_port, ssl=proxy_tls)
    connect_headers = {}
    if via.username is not None:
        secret = f"{unquote(via.username)}:{unquote(via.password or '')}"
        connect_headers["Proxy-Authorization"] = "Basic " + base64.b64encode(
            secret.encode()
        ).decode("ascii")
    try:
        authority = f"[{host}]" if ":" in host else host
        await channel.proxy_connect(f"{authority}:{port}", connect_headers)
        if tls is not None:
            tls_transport = await loop.start_tls(transport, channel, tls, server_hostname=host)
            if tls_transport is None:
                raise ConnectionError("the connection closed while TLS started")
            channel.use_transport(tls_transport)
    except BaseException:
        transport.abort()
        raise
    return channel


def _explain(exc: Exception, target: str, via: str, proxy: str | None) -> Exception:
    """The :class:`DialError` that says what went wrong with one dial, and what to do."""
    if isinstance(exc, DialError):
        return exc
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TlsVerificationError(
            f"TLS certificate of the hub {target} did not verify: {exc.verify_message}; "
            "set ca_bundle to the CA that signed it (or fix the hub's certificate)"
        )
    if isinstance(exc, ProxyRefused):
        hint = (
            "check the proxy user and password in https_proxy"
            if exc.status in (401, 407)
            else "check that the proxy allows CONNECT to this host and port"
        )
        return ProxyError(
            f"proxy {redact_url(proxy or '')} answered HTTP {exc.status} to CONNECT {target}; "
            f"{hint}"
        )
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        reason, code = _error_body(exc.response.body)
        if status in (401, 403, 409):
            detail = f": {code}: {reason}" if reason else ""
            return HubRejected(
                f"hub {target} refused the agent's credentials (HTTP {status}){detail}; "
                "re-register the gateway or fix the token in the agent config",
                status,
                code,
            )
        return DialError(f"hub {target}{via} answered HTTP {status} to the websocket")
    if isinstance(exc, ssl.SSLError):
        return TlsVerificationError(f"TLS with the hub {target} failed: {exc}")
    if isinstance(exc, (OSError, TimeoutError, InvalidHandshake)):
        reason = str(exc) or type(exc).__name__
        return DialError(f"cannot reach the hub {target}{via}: {reason}")
    return DialError(f"cannot reach the hub {target}{via}: {exc!r:.200}")
