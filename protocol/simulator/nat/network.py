"""The live topology: build it from a :class:`NatPlan`, turn its knobs, run things in it.

::

    topology = NatTopology(NatPlan(prefix="pcgt1"))
    topology.up()
    try:
        server = topology.popen(Host.PUBLIC, [sys.executable, "-m", "http.server", "-b",
                                topology.address(Host.PUBLIC), "8080"])
        topology.wait_listening(Host.PUBLIC, 8080)
        topology.run(Host.GATEWAY, [sys.executable, "-c", "import urllib.request; ..."])
    finally:
        topology.down()

``down`` works from what exists (namespaces named ``{prefix}-<host>``), so a new object with the
same prefix cleans up after a crashed run.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from protocol.simulator.nat import netns
from protocol.simulator.nat.exceptions import (
    NetnsUnavailable,
    PlanError,
    TopologyExists,
    TopologyMissing,
)
from protocol.simulator.nat.firewall import (
    STALE_CHAIN,
    Impairment,
    StaleFlowAction,
    parse_comments,
    router_rules,
    stale_ruleset,
)
from protocol.simulator.nat.impair import ImpairmentBackend, RouterImpairments
from protocol.simulator.nat.proxy import TinyProxy
from protocol.simulator.nat.status import HostStatus, InterfaceStatus, SideStatus, TopologyStatus
from protocol.simulator.nat.topology import Host, Link, NatPlan, ProxySettings, Side

IDLE_TIMEOUT_SYSCTL = "net.netfilter.nf_conntrack_tcp_timeout_established"

#: sysctls of the router namespace (all per-namespace on current kernels)
ROUTER_SYSCTLS: dict[str, str] = {
    "net.ipv4.ip_forward": "1",
    # a mid-stream TCP packet must not create a conntrack entry: once a flow is forgotten
    # (flush, idle timeout) its packets are INVALID instead of silently re-masqueraded
    "net.netfilter.nf_conntrack_tcp_loose": "0",
}
#: exist only when br_netfilter is loaded; 0 keeps bridged LAN traffic out of iptables
BRIDGE_SYSCTLS = ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables")


def default_state_dir(plan: NatPlan) -> Path:
    return Path(tempfile.gettempdir()) / plan.state_dirname


class NatTopology:
    """A NAT topology on network namespaces. Needs root for everything but :attr:`plan`."""

    def __init__(
        self,
        plan: NatPlan | None = None,
        *,
        state_dir: Path | None = None,
        impairment_backend: ImpairmentBackend = ImpairmentBackend.AUTO,
    ) -> None:
        self.plan = plan if plan is not None else NatPlan()
        self.state_dir = state_dir if state_dir is not None else default_state_dir(self.plan)
        self.impairment_backend = impairment_backend
        self._impairments = RouterImpairments(self.plan, self.state_dir)
        self._proxy = (
            TinyProxy(self.plan, self.plan.proxy, self.state_dir)
            if self.plan.proxy is not None
            else None
        )

    @classmethod
    def attach(cls, prefix: str, *, state_dir: Path | None = None) -> NatTopology:
        """The topology ``up`` built with this prefix, from the plan it saved in its state dir
        (the default plan for that prefix when the state dir is gone)."""
        plan = NatPlan(prefix=prefix)
        state_dir = state_dir if state_dir is not None else default_state_dir(plan)
        try:
            saved = json.loads((state_dir / "plan.json").read_text())
        except FileNotFoundError:
            return cls(plan, state_dir=state_dir)
        proxy = ProxySettings(**saved["proxy"]) if saved.get("proxy") else None
        network = ipaddress.IPv4Network(saved["network"])
        return cls(NatPlan(prefix=prefix, network=network, proxy=proxy), state_dir=state_dir)

    # -- hosts -----------------------------------------------------------------------------

    def namespace(self, host: Host | str) -> str:
        return self.plan.namespace(Host(host))

    def address(self, host: Host | str) -> str:
        """The host's IPv4 address (the router's public one for :attr:`Host.ROUTER`)."""
        return str(self.plan.address(Host(host)))

    def exec_argv(self, host: Host | str, argv: Sequence[str]) -> list[str]:
        """``ip netns exec <namespace> argv...``, to hand to any process launcher."""
        return netns.exec_argv(self.namespace(host), argv)

    def popen(self, host: Host | str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside ``host``; keyword arguments go to :class:`subprocess.Popen`.

        ``ip netns exec`` execs the command in place, so the Popen's pid is the command's pid.
        Processes still running at :meth:`down` are killed with their namespace.
        """
        return subprocess.Popen(self.exec_argv(host, argv), **kwargs)

    def run(
        self,
        host: Host | str,
        argv: Sequence[str],
        *,
        timeout: float = 30.0,
        check: bool = False,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside ``host`` to completion, capturing text stdout and stderr."""
        return subprocess.run(
            self.exec_argv(host, argv),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def wait_listening(self, host: Host | str, port: int, *, timeout: float = 5.0) -> None:
        """Block until a TCP listener on ``port`` exists inside ``host``."""
        netns.wait_tcp_listening(self.namespace(host), port, timeout=timeout)

    @property
    def proxy(self) -> TinyProxy | None:
        return self._proxy

    # -- lifecycle -------------------------------------------------------------------------

    def existing_namespaces(self) -> list[str]:
        """The namespaces with this prefix that exist now (any host, proxy or not)."""
        present = netns.list_namespaces()
        return [name for name in self.plan.all_namespaces if name in present]

    def up(self, *, replace: bool = False) -> None:
        """Build the topology. With ``replace``, tear down a previous one with this prefix."""
        netns.check_support()
        existing = self.existing_namespaces()
        if existing and not replace:
            raise TopologyExists(
                f"namespaces {', '.join(existing)} already exist; run "
                f"'pcg-sim nat down --prefix {self.plan.prefix}' or pick another prefix"
            )
        self.down()
        try:
            self._build()
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        """Kill every process in the prefix's namespaces and delete them, then delete any
        interface of this prefix left in the root namespace and the state dir. Idempotent."""
        netns.check_support()
        namespaces = self.existing_namespaces()
        for name in namespaces:
            netns.terminate(netns.namespace_pids(name))
        if self._proxy is not None:
            self._proxy.stop()
        for side in Side:
            self._impairments.forget(side)
        for name in namespaces:
            netns.delete_namespace(name)
        # up creates interfaces inside the namespaces; these would be from an older or broken run
        for ifname in sorted(set(self.plan.all_ifnames) & _root_ifnames()):
            netns.run(["ip", "link", "delete", ifname], check=False)
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def _build(self) -> None:
        plan = self.plan
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        saved = {
            "prefix": plan.prefix,
            "network": str(plan.network),
            "proxy": None
            if plan.proxy is None
            else {
                "port": plan.proxy.port,
                "user": plan.proxy.user,
                "password": plan.proxy.password,
            },
        }
        plan_path = self.state_dir / "plan.json"
        plan_path.touch(mode=0o600)
        plan_path.write_text(json.dumps(saved, indent=2) + "\n")

        router = plan.namespace(Host.ROUTER)
        for host in plan.hosts:
            name = plan.namespace(host)
            netns.add_namespace(name)
            # IPv4 only: no link-local addresses, router solicitations or DAD on the links
            for key in ("net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"):
                netns.write_sysctl(name, key, "1", missing_ok=True)
            netns.run(["ip", "-n", name, "link", "set", "lo", "up"])

        bridge = plan.bridge_ifname
        netns.run(["ip", "-n", router, "link", "add", bridge, "type", "bridge"])
        netns.run(["ip", "-n", router, "addr", "add", str(plan.bridge_address), "dev", bridge])
        netns.run(["ip", "-n", router, "link", "set", bridge, "up"])

        for link in plan.links:
            host_ns = plan.namespace(link.host)
            # both ends are created directly in their namespaces: nothing in the root namespace
            netns.run(
                [
                    "ip",
                    "-n",
                    host_ns,
                    "link",
                    "add",
                    link.host_ifname,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    link.router_ifname,
                    "netns",
                    router,
                ]
            )
            netns.run(
                [
                    "ip",
                    "-n",
                    host_ns,
                    "addr",
                    "add",
                    str(link.host_address),
                    "dev",
                    link.host_ifname,
                ]
            )
            netns.run(["ip", "-n", host_ns, "link", "set", link.host_ifname, "up"])
            if link.router_address is not None:
                netns.run(
                    [
                        "ip",
                        "-n",
                        router,
                        "addr",
                        "add",
                        str(link.router_address),
                        "dev",
                        link.router_ifname,
                    ]
                )
            else:
                netns.run(["ip", "-n", router, "link", "set", link.router_ifname, "master", bridge])
            netns.run(["ip", "-n", router, "link", "set", link.router_ifname, "up"])

        for host in plan.hosts:
            self._apply_routes(host)

        for key, value in ROUTER_SYSCTLS.items():
            netns.write_sysctl(router, key, value)
        for key in BRIDGE_SYSCTLS:
            netns.write_sysctl(router, key, "0", missing_ok=True)
        netns.iptables_restore(router, router_rules(plan), replace_all=True)

        if self._proxy is not None:
            self._proxy.write_config()
            self._proxy.start()

    def _apply_routes(self, host: Host) -> None:
        for route in self.plan.routes:
            if route.host is host:
                netns.run(
                    [
                        "ip",
                        "-n",
                        self.plan.namespace(host),
                        "route",
                        "replace",
                        route.destination,
                        "via",
                        str(route.via),
                    ]
                )

    def _require_up(self) -> str:
        router = self.plan.namespace(Host.ROUTER)
        if router not in netns.list_namespaces():
            raise TopologyMissing(
                f"NAT topology {self.plan.prefix!r} is not up (no namespace {router!r}); "
                f"run 'pcg-sim nat up --prefix {self.plan.prefix}' first"
            )
        return router

    # -- knobs -----------------------------------------------------------------------------

    def idle_timeout(self) -> int:
        """Seconds an idle established TCP flow stays in the router's conntrack table."""
        value = netns.read_sysctl(self._require_up(), IDLE_TIMEOUT_SYSCTL)
        if value is None:
            raise TopologyMissing(f"{IDLE_TIMEOUT_SYSCTL} does not exist in the router namespace")
        return int(value)

    def set_idle_timeout(self, seconds: int) -> None:
        """Set the router's idle timeout for established TCP flows (per namespace; the
        kernel default is 432000 s = 5 days). A flow picks it up at its next packet."""
        if seconds < 1:
            raise ValueError(f"idle timeout {seconds} s must be at least 1 s")
        netns.write_sysctl(self._require_up(), IDLE_TIMEOUT_SYSCTL, str(seconds))

    def flush_conntrack(self) -> None:
        """Forget every flow the router tracks, as a router reboot would. Established flows
        then die as :meth:`stale_flow_action` says (silently by default)."""
        netns.run(["conntrack", "-F"], namespace=self._require_up())

    def conntrack_entries(self) -> list[str]:
        """The router's conntrack table, one ``conntrack -L`` line per flow."""
        listing = netns.run(["conntrack", "-L"], namespace=self._require_up())
        return [line for line in listing.stdout.splitlines() if line.strip()]

    def stale_flow_action(self) -> StaleFlowAction:
        listing = netns.run(["iptables", "-w", "-S", STALE_CHAIN], namespace=self._require_up())
        return StaleFlowAction(parse_comments(listing.stdout).get("stale", "drop"))

    def set_stale_flow_action(self, action: StaleFlowAction) -> None:
        """What the router does with packets of flows it forgot: drop them (default) or answer
        TCP with a reset so the sender fails fast."""
        netns.iptables_restore(self._require_up(), stale_ruleset(StaleFlowAction(action)))

    def impairment(self, side: Side | str) -> Impairment:
        self._require_up()
        return self._impairments.get(Side(side))[0]

    def set_impairment(
        self,
        side: Side | str,
        *,
        delay_ms: float = 0.0,
        loss_percent: float = 0.0,
        backend: ImpairmentBackend | None = None,
    ) -> ImpairmentBackend | None:
        """Delay and/or drop packets leaving the router on ``side`` (both zero clears).
        Returns the backend used: netem, or nfqueue when the kernel has no netem."""
        self._require_up()
        impairment = Impairment(delay_ms=delay_ms, loss_percent=loss_percent)
        chosen = backend if backend is not None else self.impairment_backend
        return self._impairments.set(Side(side), impairment, chosen)

    def clear_impairments(self) -> None:
        self._require_up()
        for side in Side:
            self._impairments.clear(side)

    def link_is_up(self, link: Link | str) -> bool:
        host, ifname = self.plan.link_far_end(Link(link))
        self._require_up()
        shown = netns.run(["ip", "-n", self.plan.namespace(host), "-j", "link", "show", ifname])
        return "UP" in json.loads(shown.stdout)[0].get("flags", [])

    def set_link(self, link: Link | str, up: bool) -> None:
        """Pull (or plug back) a cable: the far end goes down, so the near end loses carrier
        but keeps its addresses and routes, and the router keeps its conntrack entries.
        :attr:`Link.UPLINK` is the router's public cable (far end: the public host)."""
        host, ifname = self.plan.link_far_end(Link(link))
        self._require_up()
        state = "up" if up else "down"
        netns.run(["ip", "-n", self.plan.namespace(host), "link", "set", ifname, state])
        if up:
            # setting a link down drops its gateway routes; the kernel restores only connected ones
            self._apply_routes(host)

    def link_down(self, link: Link | str) -> None:
        self.set_link(link, up=False)

    def link_up(self, link: Link | str) -> None:
        self.set_link(link, up=True)

    # -- status ----------------------------------------------------------------------------

    def status(self) -> TopologyStatus:
        """What exists now, read from the kernel."""
        netns.check_support()
        present = set(self.existing_namespaces())
        hosts = tuple(
            _host_status(host, self.plan.namespace(host))
            for host in Host
            if self.plan.namespace(host) in present
        )
        router_up = self.plan.namespace(Host.ROUTER) in present
        idle_timeout = stale = entries = None
        impairments: dict[str, SideStatus] = {}
        links: dict[str, bool] = {}
        if router_up:
            idle_timeout = self.idle_timeout()
            stale = self.stale_flow_action().value
            try:
                entries = len(self.conntrack_entries())
            except NetnsUnavailable:
                entries = None  # conntrack tool missing
            for side in Side:
                impairment, backend = self._impairments.get(side)
                impairments[side.value] = SideStatus(
                    self.plan.side_ifname(side), impairment, backend.value if backend else None
                )
            for link in Link:
                try:
                    far_host, _ = self.plan.link_far_end(link)
                except PlanError:
                    continue  # no proxy host in this plan
                if self.plan.namespace(far_host) in present:
                    links[link.value] = self.link_is_up(link)
        proxy = self._proxy.status() if self._proxy is not None and hosts else None
        return TopologyStatus(
            prefix=self.plan.prefix,
            network=str(self.plan.network),
            hosts=hosts,
            idle_timeout=idle_timeout,
            stale_flows=stale,
            conntrack_entries=entries,
            impairments=impairments,
            links=links,
            proxy=proxy,
        )


def _host_status(host: Host, namespace: str) -> HostStatus:
    shown = netns.run(["ip", "-n", namespace, "-j", "addr", "show"], check=False)
    interfaces = []
    for entry in json.loads(shown.stdout or "[]"):
        if entry.get("ifname") == "lo":
            continue
        flags = entry.get("flags", [])
        interfaces.append(
            InterfaceStatus(
                name=entry.get("ifname", "?"),
                addresses=tuple(
                    f"{info['local']}/{info['prefixlen']}"
                    for info in entry.get("addr_info", [])
                    if info.get("family") == "inet"
                ),
                admin_up="UP" in flags,
                carrier="LOWER_UP" in flags,
            )
        )
    return HostStatus(
        host=host.value,
        namespace=namespace,
        interfaces=tuple(interfaces),
        processes=len(netns.namespace_pids(namespace)),
    )


def _root_ifnames() -> set[str]:
    shown = netns.run(["ip", "-j", "link", "show"], check=False)
    return {entry.get("ifname", "") for entry in json.loads(shown.stdout or "[]")}
