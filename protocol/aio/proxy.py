"""Which proxy, if any, a connection to a URL goes through (curl's rules).

``no_proxy`` is a comma-separated list; an entry matches a host when it is ``*``, the host
itself, a domain suffix of it (``example.com`` and ``.example.com`` both match
``a.example.com`` and ``example.com``), an IP address equal to it, or a CIDR block holding it.
An entry may carry a port (``host:port``) and then matches only that port. Matching is
case-insensitive and ignores a trailing dot. The proxy for ``wss``/``https`` comes from
``https_proxy``, for ``ws``/``http`` from ``http_proxy``; lower-case environment variables
win over upper-case ones, as in curl.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class ProxySettings:
    https_proxy: str | None = None
    http_proxy: str | None = None
    no_proxy: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ProxySettings:
        env = os.environ if environ is None else environ

        def pick(name: str) -> str | None:
            return env.get(name.lower()) or env.get(name.upper()) or None

        return cls(pick("https_proxy"), pick("http_proxy"), pick("no_proxy"))

    def merged_over(self, fallback: ProxySettings) -> ProxySettings:
        """These settings where set, ``fallback`` (usually the environment) elsewhere."""
        return ProxySettings(
            self.https_proxy or fallback.https_proxy,
            self.http_proxy or fallback.http_proxy,
            self.no_proxy if self.no_proxy is not None else fallback.no_proxy,
        )

    def proxy_for(self, url: str) -> str | None:
        """The proxy URL to use for ``url``, or None to connect directly."""
        parts = urlsplit(url)
        secure = parts.scheme in ("wss", "https")
        proxy = self.https_proxy if secure else self.http_proxy
        if not proxy or parts.hostname is None:
            return None
        port = parts.port or (443 if secure else 80)
        if bypasses(parts.hostname, port, self.no_proxy or ""):
            return None
        return proxy if "://" in proxy else f"http://{proxy}"


def _split_entry(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [v6]:port or [v6]
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return host, int(port) if port.isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        if port.isdigit():
            return host, int(port)
    return entry, None


def bypasses(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``host:port`` is excluded from proxying by ``no_proxy`` (module docstring)."""
    host = host.strip("[]").rstrip(".").lower()
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        pattern, entry_port = _split_entry(entry)
        if entry_port is not None and entry_port != port:
            continue
        pattern = pattern.rstrip(".")
        if "/" in pattern:
            if address is None:
                continue
            try:
                if address in ipaddress.ip_network(pattern, strict=False):
                    return True
            except ValueError:
                continue
            continue
        if address is not None:
            try:
                if address == ipaddress.ip_address(pattern):
                    return True
            except ValueError:
                pass
            continue
        suffix = pattern.lstrip(".")
        if host == suffix or host.endswith("." + suffix):
            return True
    return False


def redact_url(url: str) -> str:
    """``url`` with any password replaced, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return parts._replace(netloc=netloc).geturl()
