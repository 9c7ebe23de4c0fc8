"""The NAT topology as a plan: names, addresses, links and routes. Pure: no I/O.

::

    {p}-public 198.19.1.2 --- 198.19.1.1 {p}-router 198.19.2.1 ---+--- {p}-gateway 198.19.2.10
                                (MASQUERADE, FORWARD DROP)        +--- {p}-maas    198.19.2.20
                                                                  +--- {p}-proxy   198.19.2.30

Every name starts with the prefix (``pcg`` by default) so two topologies can coexist and
``down`` can find what a crashed run left behind. Every address comes from one network
(``198.19.0.0/16`` by default): the public segment is its second /24, the private LAN its
third. README.md has the full picture.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from enum import StrEnum

from protocol.simulator.nat.exceptions import PlanError

#: Linux IFNAMSIZ is 16 bytes including the trailing NUL.
IFNAME_MAX = 15

#: RFC 2544 reserves 198.18.0.0/15 for benchmarking network devices, which is what this is.
#: The upper half is used because some proxies (e.g. Clash "fake-ip") take 198.18.0.0/16.
DEFAULT_NETWORK = ipaddress.IPv4Network("198.19.0.0/16")
DEFAULT_PREFIX = "pcg"

#: Lowercase letter then letters/digits, no dash: ``{prefix}-`` then never matches another
#: prefix's names, and the longest interface name (``{prefix}-rmaas``) fits IFNAMSIZ.
PREFIX_PATTERN = re.compile(r"[a-z][a-z0-9]{0,8}")

PUBLIC_SEGMENT_INDEX = 1  # 198.19.1.0/24
PRIVATE_SEGMENT_INDEX = 2  # 198.19.2.0/24


class Host(StrEnum):
    """A network namespace of the topology."""

    PUBLIC = "public"  # the Palette side: hub, API, anything "on the internet"
    ROUTER = "router"  # the NAT router: masquerade, stateful firewall, the knobs
    GATEWAY = "gateway"  # the gateway agent's machine, behind the NAT
    MAAS = "maas"  # the MAAS simulator, on the same private LAN as the gateway
    PROXY = "proxy"  # tinyproxy, the only way out when present


class Side(StrEnum):
    """An interface of the router, where loss and delay are applied (on its egress)."""

    PUBLIC = "public"  # router -> public host: slows the gateway's uploads
    PRIVATE = "private"  # router -> private LAN: slows what comes back from the public side


class Link(StrEnum):
    """A cable that can be pulled: the far end goes down, the near end loses carrier."""

    GATEWAY = "gateway"  # the gateway host's LAN cable
    MAAS = "maas"  # the MAAS host's LAN cable
    PROXY = "proxy"  # the proxy host's LAN cable
    UPLINK = "uplink"  # the router's public (WAN) cable


#: Short code per host, used in interface names: ``{prefix}-{code}`` on the host,
#: ``{prefix}-r{code}`` on the router side of the same veth pair.
_CODES: dict[Host, str] = {
    Host.PUBLIC: "pub",
    Host.GATEWAY: "gw",
    Host.MAAS: "maas",
    Host.PROXY: "prx",
}

#: Host number inside its /24.
_HOST_NUMBERS: dict[Host, int] = {
    Host.PUBLIC: 2,
    Host.GATEWAY: 10,
    Host.MAAS: 20,
    Host.PROXY: 30,
}
_ROUTER_NUMBER = 1


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """tinyproxy on the proxy host; with it, the router lets out only the proxy host."""

    port: int = 8888
    user: str | None = None
    password: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise PlanError(f"proxy port {self.port} is not in 1..65535")
        if (self.user is None) != (self.password is None):
            raise PlanError("proxy BasicAuth needs both a user and a password, or neither")
        for label, value in (("user", self.user), ("password", self.password)):
            # tinyproxy's config grammar has no quoting for BasicAuth
            if value is not None and (not value or re.search(r"\s|\"", value)):
                raise PlanError(f"proxy {label} must be non-empty without spaces or quotes")


@dataclass(frozen=True, slots=True)
class VethLink:
    """A veth pair: ``host_ifname`` in ``host``, ``router_ifname`` in the router namespace."""

    host: Host
    host_ifname: str
    host_address: ipaddress.IPv4Interface
    router_ifname: str
    #: the router end's own address (uplink), or None when it is a port of the LAN bridge
    router_address: ipaddress.IPv4Interface | None


@dataclass(frozen=True, slots=True)
class Route:
    host: Host
    destination: str  # "default" or a network in CIDR notation
    via: ipaddress.IPv4Address


@dataclass(frozen=True, slots=True)
class NatPlan:
    """Everything ``up`` creates, derived from a prefix, a network and the proxy choice."""

    prefix: str = DEFAULT_PREFIX
    network: ipaddress.IPv4Network = DEFAULT_NETWORK
    proxy: ProxySettings | None = None
    links: tuple[VethLink, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not PREFIX_PATTERN.fullmatch(self.prefix):
            raise PlanError(
                f"prefix {self.prefix!r} must be 1-9 characters, a lowercase letter then "
                "lowercase letters or digits (it starts every namespace and interface name)"
            )
        if not isinstance(self.network, ipaddress.IPv4Network):
            raise PlanError(f"network {self.network!r} must be an IPv4Network")
        if self.network.prefixlen > 22:
            raise PlanError(
                f"network {self.network} is too small: the topology takes its 2nd and 3rd /24, "
                "so give a /22 or larger (default 198.19.0.0/16)"
            )
        links = [self._link(host) for host in self.hosts if host is not Host.ROUTER]
        object.__setattr__(self, "links", tuple(links))

    # -- names ------------------------------------------------------------------------------

    @property
    def hosts(self) -> tuple[Host, ...]:
        base = (Host.PUBLIC, Host.ROUTER, Host.GATEWAY, Host.MAAS)
        return (*base, Host.PROXY) if self.proxy is not None else base

    def namespace(self, host: Host) -> str:
        return f"{self.prefix}-{host.value}"

    @property
    def all_namespaces(self) -> tuple[str, ...]:
        """Every namespace any plan with this prefix can create, proxy or not (for ``down``)."""
        return tuple(self.namespace(host) for host in Host)

    def host_ifname(self, host: Host) -> str:
        return f"{self.prefix}-{_CODES[host]}"

    def router_ifname(self, host: Host) -> str:
        return f"{self.prefix}-r{_CODES[host]}"

    @property
    def bridge_ifname(self) -> str:
        return f"{self.prefix}-rlan"

    @property
    def all_ifnames(self) -> tuple[str, ...]:
        """Every interface name any plan with this prefix can create (for ``down``)."""
        names = [self.bridge_ifname]
        for host in _CODES:
            names += [self.host_ifname(host), self.router_ifname(host)]
        return tuple(names)

    def side_ifname(self, side: Side) -> str:
        """The router interface whose egress a :class:`Side` impairment applies to."""
        return self.router_ifname(Host.PUBLIC) if side is Side.PUBLIC else self.bridge_ifname

    def link_far_end(self, link: Link) -> tuple[Host, str]:
        """Where to set the link down so the near end sees NO-CARRIER and keeps its routes."""
        if link is Link.UPLINK:
            return Host.PUBLIC, self.host_ifname(Host.PUBLIC)
        host = Host(link.value)
        if host not in self.hosts:
            raise PlanError(f"link {link.value!r}: this topology has no {host.value} host")
        return Host.ROUTER, self.router_ifname(host)

    @property
    def state_dirname(self) -> str:
        """Directory name (under the temp dir) for tinyproxy's config and logs."""
        return f"{self.prefix}-nat"

    # -- addresses --------------------------------------------------------------------------

    def _segment(self, index: int) -> ipaddress.IPv4Network:
        """The network's ``index``-th /24."""
        return ipaddress.IPv4Network((int(self.network.network_address) + index * 256, 24))

    @property
    def public_segment(self) -> ipaddress.IPv4Network:
        return self._segment(PUBLIC_SEGMENT_INDEX)

    @property
    def private_segment(self) -> ipaddress.IPv4Network:
        return self._segment(PRIVATE_SEGMENT_INDEX)

    @property
    def router_public_address(self) -> ipaddress.IPv4Address:
        """What servers on the public host see as the peer of every masqueraded flow."""
        return self.public_segment[_ROUTER_NUMBER]

    @property
    def router_private_address(self) -> ipaddress.IPv4Address:
        """The default gateway of the private hosts."""
        return self.private_segment[_ROUTER_NUMBER]

    def address(self, host: Host) -> ipaddress.IPv4Address:
        """The host's address; for the router, its public one."""
        if host is Host.ROUTER:
            return self.router_public_address
        if host not in self.hosts:
            raise PlanError(f"this topology has no {host.value} host (proxy not enabled)")
        segment = self.public_segment if host is Host.PUBLIC else self.private_segment
        return segment[_HOST_NUMBERS[host]]

    def _interface(self, address: ipaddress.IPv4Address) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(f"{address}/24")

    def _link(self, host: Host) -> VethLink:
        router_address = (
            self._interface(self.router_public_address) if host is Host.PUBLIC else None
        )
        return VethLink(
            host=host,
            host_ifname=self.host_ifname(host),
            host_address=self._interface(self.address(host)),
            router_ifname=self.router_ifname(host),
            router_address=router_address,
        )

    @property
    def bridge_address(self) -> ipaddress.IPv4Interface:
        return self._interface(self.router_private_address)

    @property
    def routes(self) -> tuple[Route, ...]:
        """Private hosts default via the router. The public host also routes the private LAN
        via the router: the worst case of an upstream that forwards private addresses, so the
        firewall (not a missing route) is what keeps unsolicited traffic out."""
        routes = [Route(Host.PUBLIC, str(self.private_segment), self.router_public_address)]
        for host in self.hosts:
            if host not in (Host.PUBLIC, Host.ROUTER):
                routes.append(Route(host, "default", self.router_private_address))
        return tuple(routes)

    @property
    def egress_source(self) -> ipaddress.IPv4Address | None:
        """The only private address the router forwards outward (the proxy host), or None."""
        return self.address(Host.PROXY) if self.proxy is not None else None
