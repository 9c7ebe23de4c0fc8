"""Relay byte streams to destinations on the allowlist, and nowhere else (deny by default).

An allowlist entry is ``HOST:PORT`` where HOST is a host name, an IPv4 address, an IPv6
address in brackets, or a CIDR block (``10.0.0.0/24:5240``, ``[fd00::/64]:5240``), and PORT
a number or ``*``. A host name matches only that name (case-insensitive), never the
addresses it resolves to, so DNS cannot widen the list.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from agent.exceptions import ConfigError
from protocol.aio.splice import SOCKET_BUFFER, SocketRelay, relay
from protocol.aio.stream import TunnelStream
from protocol.codes import ErrorCode

log = logging.getLogger("pcg.relay")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class AllowEntry:
    host: str | None
    network: Network | None
    port: int | None  # None: any port

    @classmethod
    def parse(cls, text: str) -> AllowEntry:
        raw = text.strip()
        if raw.startswith("["):
            host, _, rest = raw[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else ""
        else:
            host, _, port_text = raw.rpartition(":")
        if not host or not port_text:
            raise ConfigError(
                f"allowlist entry {text!r} must be HOST:PORT (PORT a number or *), "
                "e.g. 10.11.12.13:5240 or maas.example.com:5240"
            )
        port: int | None = None
        if port_text != "*":
            if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise ConfigError(f"allowlist entry {text!r}: port {port_text!r} is not 1-65535")
            port = int(port_text)
        try:
            network = ipaddress.ip_network(host, strict=False)
        except ValueError:
            return cls(host.lower().rstrip("."), None, port)
        return cls(None, network, port)

    def allows(self, host: str, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            try:
                return ipaddress.ip_address(host.strip("[]")) in self.network
            except ValueError:
                return False
        return host.lower().rstrip(".") == self.host


class Allowlist:
    def __init__(self, entries: Iterable[str]) -> None:
        self.entries = tuple(AllowEntry.parse(e) for e in entries)

    def allows(self, host: str, port: int) -> bool:
        return any(entry.allows(host, port) for entry in self.entries)


class Relay:
    """The stream handler for ``kind=tcp`` streams."""

    def __init__(
        self,
        allowlist: Allowlist,
        connect_timeout: float = 10.0,
        socket_buffer: int = SOCKET_BUFFER,
    ) -> None:
        self.allowlist = allowlist
        self.connect_timeout = connect_timeout
        self.socket_buffer = socket_buffer
        self.active = 0

    async def __call__(self, stream: TunnelStream) -> None:
        meta = stream.metadata
        host, port = meta.get("host"), meta.get("port")
        if meta.get("kind") != "tcp" or not isinstance(host, str) or type(port) is not int:
            stream.reset(ErrorCode.REFUSED_STREAM, "expected kind=tcp with host and port")
            return
        if not self.allowlist.allows(host, port):
            log.warning(
                "relay refused stream=%d destination=%s:%d reason=not-on-allowlist",
                stream.stream_id,
                host,
                port,
            )
            stream.reset(
                ErrorCode.DESTINATION_NOT_ALLOWED,
                f"{host}:{port} is not on this gateway's relay allowlist",
            )
            return
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                transport, joined = await loop.create_connection(
                    lambda: SocketRelay(stream, self.socket_buffer), host, port
                )
        except (OSError, TimeoutError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            log.warning("relay connect failed destination=%s:%d reason=%s", host, port, reason)
            stream.reset(ErrorCode.CONNECT_FAILED, f"{host}:{port}: {reason}")
            return
        stream.accept()
        self.active += 1
        try:
            await relay(stream, transport, joined)
        finally:
            self.active -= 1
