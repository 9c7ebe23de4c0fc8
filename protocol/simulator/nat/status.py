"""What ``pcg-sim nat status`` reports: read from the kernel, not from memory."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from protocol.simulator.nat.firewall import Impairment
from protocol.simulator.nat.proxy import ProxyStatus


@dataclass(frozen=True, slots=True)
class InterfaceStatus:
    name: str
    addresses: tuple[str, ...]
    admin_up: bool
    carrier: bool


@dataclass(frozen=True, slots=True)
class HostStatus:
    host: str
    namespace: str
    interfaces: tuple[InterfaceStatus, ...]
    processes: int


@dataclass(frozen=True, slots=True)
class SideStatus:
    interface: str
    impairment: Impairment
    backend: str | None  # "netem", "nfqueue", or None when nothing is applied


@dataclass(frozen=True, slots=True)
class TopologyStatus:
    prefix: str
    network: str
    hosts: tuple[HostStatus, ...]
    idle_timeout: int | None  # nf_conntrack_tcp_timeout_established in the router, seconds
    stale_flows: str | None
    conntrack_entries: int | None
    impairments: dict[str, SideStatus]
    links: dict[str, bool]  # link name -> up
    proxy: ProxyStatus | None

    @property
    def exists(self) -> bool:
        return bool(self.hosts)

    def to_dict(self) -> dict[str, Any]:
        return {"exists": self.exists, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def render(self) -> str:
        if not self.exists:
            return f"NAT topology {self.prefix!r}: not up (no namespace {self.prefix}-*)\n"
        lines = [f"NAT topology {self.prefix!r} on {self.network}"]
        for host in self.hosts:
            lines.append(f"  {host.host:<8} netns {host.namespace}  processes: {host.processes}")
            for iface in host.interfaces:
                state = "up" if iface.admin_up else "down"
                if iface.admin_up and not iface.carrier:
                    state = "no-carrier"
                addresses = ", ".join(iface.addresses) or "-"
                lines.append(f"    {iface.name:<15} {state:<10} {addresses}")
        if self.idle_timeout is None:
            lines.append(
                f"  router namespace missing: a partial topology; "
                f"'pcg-sim nat down --prefix {self.prefix}' removes it"
            )
            return "\n".join(lines) + "\n"
        lines.append(f"  idle timeout (tcp established): {self.idle_timeout} s")
        lines.append(f"  stale flows: {self.stale_flows}")
        lines.append(f"  conntrack entries: {self.conntrack_entries}")
        for side, status in self.impairments.items():
            impairment = status.impairment
            lines.append(
                f"  impairment {side} ({status.interface}): delay {impairment.delay_ms:g} ms, "
                f"loss {impairment.loss_percent:g}% [{status.backend or 'none'}]"
            )
        links = ", ".join(f"{name} {'up' if up else 'DOWN'}" for name, up in self.links.items())
        lines.append(f"  links: {links}")
        if self.proxy is not None:
            proxy = self.proxy
            running = f"pid {proxy.pid}" if proxy.pid is not None else "NOT RUNNING"
            auth = " with BasicAuth" if proxy.authenticated else ""
            lines.append(f"  proxy: tinyproxy {proxy.address}:{proxy.port}{auth}, {running}")
            lines.append(f"    log: {proxy.log_path}")
        return "\n".join(lines) + "\n"
