"""Open the agent's websocket to the hub: TLS, bearer token, proxy, clear errors."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

import websockets
from websockets.asyncio.client import ClientConnection, connect

from protocol.aio.proxy import ProxySettings, redact_url
from protocol.exceptions import DialError, HubRejected, ProxyError, TlsVerificationError

#: websocket write buffer high-water mark: big enough that bulk transfers rarely wait on it
WRITE_LIMIT = 1024 * 1024


def _error_body(body: bytes | bytearray | None) -> tuple[str, str]:
    """(message, code) from a refusal's JSON error envelope, if it has one."""
    import json

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
) -> ClientConnection:
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
    try:
        return await connect(
            url,
            additional_headers=all_headers,
            user_agent_header=user_agent,
            ssl=tls,
            proxy=proxy,
            compression=None,  # a tunnel of mostly-compressed bytes: deflate costs CPU for nothing
            max_size=max_message_size,
            ping_interval=None,  # the tunnel protocol runs its own keepalive (PROTOCOL.md §7)
            open_timeout=open_timeout,
            close_timeout=2,
            write_limit=WRITE_LIMIT,
        )
    except ssl.SSLCertVerificationError as exc:
        raise TlsVerificationError(
            f"TLS certificate of the hub {target} did not verify: {exc.verify_message}; "
            "set ca_bundle to the CA that signed it (or fix the hub's certificate)"
        ) from None
    except websockets.exceptions.InvalidProxyStatus as exc:
        status = exc.response.status_code
        hint = (
            "check the proxy user and password in https_proxy"
            if status in (401, 407)
            else "check that the proxy allows CONNECT to this host and port"
        )
        raise ProxyError(
            f"proxy {redact_url(proxy or '')} answered HTTP {status} to CONNECT {target}; {hint}"
        ) from None
    except websockets.exceptions.ProxyError as exc:
        raise ProxyError(f"proxy {redact_url(proxy or '')} failed: {exc}") from None
    except websockets.exceptions.InvalidStatus as exc:
        status = exc.response.status_code
        reason, code = _error_body(exc.response.body)
        if status in (401, 403, 409):
            detail = f": {code}: {reason}" if reason else ""
            raise HubRejected(
                f"hub {target} refused the agent's credentials (HTTP {status}){detail}; "
                "re-register the gateway or fix the token in the agent config",
                status,
                code,
            ) from None
        raise DialError(f"hub {target}{via} answered HTTP {status} to the websocket") from None
    except ssl.SSLError as exc:
        raise TlsVerificationError(f"TLS with the hub {target} failed: {exc}") from None
    except (OSError, TimeoutError, websockets.exceptions.InvalidHandshake) as exc:
        reason = str(exc) or type(exc).__name__
        raise DialError(f"cannot reach the hub {target}{via}: {reason}") from None
