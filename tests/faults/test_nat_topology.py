"""The NAT topology on real namespaces: firewall, masquerade, and every knob, measured."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from protocol.simulator.cli import main as pcg_sim
from protocol.simulator.nat import (
    CommandFailed,
    Host,
    ImpairmentBackend,
    Link,
    NatPlan,
    NatTopology,
    Side,
    StaleFlowAction,
    TopologyExists,
)
from protocol.simulator.nat.netns import list_namespaces, tool
from tests.faults.nat_lab import TcpLab, unique_prefix

pytestmark = [pytest.mark.requires_netns, pytest.mark.timeout(60)]

Lab = Callable[[NatTopology], TcpLab]


def rtt(line: str) -> float:
    kind, value = line.split()[:2]
    assert kind == "ECHO", line
    return float(value)


def test_public_host_cannot_open_connections_into_the_private_lan(
    nat: NatTopology, tcp: Lab
) -> None:
    lab = tcp(nat)
    gateway = lab.serve(Host.GATEWAY, 7001)
    maas = lab.serve(Host.MAAS, 7001)
    # the public host even has a route to the private LAN via the router: the firewall drops it
    for target in (Host.GATEWAY, Host.MAAS, Host.ROUTER):
        outcome = lab.connect(Host.PUBLIC, nat.address(target), 7001, timeout=0.7)
        assert outcome.startswith("FAIL"), (target, outcome)
    assert not [line for line in gateway.drain() + maas.drain() if line.startswith("ACCEPT")]


def test_private_hosts_reach_the_public_host_through_masquerade(nat: NatTopology, tcp: Lab) -> None:
    lab = tcp(nat)
    server = lab.serve(Host.PUBLIC, 7002)
    for client in (Host.GATEWAY, Host.MAAS):
        outcome = lab.connect(client, nat.address(Host.PUBLIC), 7002)
        assert outcome.startswith("OK"), outcome
        # the server sees the router's public address, never the private one
        assert server.expect("ACCEPT").split()[1] == nat.address(Host.ROUTER)


def test_gateway_and_maas_share_a_lan(nat: NatTopology, tcp: Lab) -> None:
    lab = tcp(nat)
    server = lab.serve(Host.MAAS, 7003)
    assert lab.connect(Host.GATEWAY, nat.address(Host.MAAS), 7003).startswith("OK")
    assert server.expect("ACCEPT").split()[1] == nat.address(Host.GATEWAY)  # no NAT on the LAN


def test_conntrack_flush_blackholes_an_established_flow(nat: NatTopology, tcp: Lab) -> None:
    lab = tcp(nat)
    server = lab.serve(Host.PUBLIC, 7004)
    client = lab.session(Host.GATEWAY, nat.address(Host.PUBLIC), 7004, timeout=1.0)
    client.send("before")
    client.expect("ECHO")
    server.expect("DATA")
    assert any("dport=7004" in entry for entry in nat.conntrack_entries())

    nat.flush_conntrack()
    assert not any("dport=7004" in entry for entry in nat.conntrack_entries())
    client.send("after")
    # documented: the router forgets the flow, its packets are INVALID (tcp_loose=0) and are
    # dropped in both directions; nobody gets a reset, the data never arrives
    assert client.expect("TIMEOUT", timeout=3) == "TIMEOUT"
    assert server.drain(wait=0.2).count("DATA 5") == 0
    assert not any("dport=7004" in entry for entry in nat.conntrack_entries())
    # new flows are fine
    assert lab.connect(Host.GATEWAY, nat.address(Host.PUBLIC), 7004).startswith("OK")


def test_stale_flow_reset_makes_the_sender_fail_fast(nat: NatTopology, tcp: Lab) -> None:
    nat.set_stale_flow_action(StaleFlowAction.RESET)
    assert nat.stale_flow_action() is StaleFlowAction.RESET
    lab = tcp(nat)
    lab.serve(Host.PUBLIC, 7005)
    client = lab.session(Host.GATEWAY, nat.address(Host.PUBLIC), 7005, timeout=2.0)
    client.send("before")
    client.expect("ECHO")
    nat.flush_conntrack()
    client.send("after")
    assert "ConnectionResetError" in client.expect("ERROR", timeout=3)


def test_idle_timeout_is_per_namespace_and_expires_idle_flows(nat: NatTopology, tcp: Lab) -> None:
    nat.set_idle_timeout(1)
    assert nat.idle_timeout() == 1
    # the sysctl is per network namespace: the gateway host's copy keeps the kernel default
    gateway_copy = nat.run(
        Host.GATEWAY, ["cat", "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established"]
    )
    assert gateway_copy.stdout.strip() != "1"

    lab = tcp(nat)
    lab.serve(Host.PUBLIC, 7006)
    client = lab.session(Host.GATEWAY, nat.address(Host.PUBLIC), 7006, timeout=1.0)
    client.send("fresh")
    client.expect("ECHO")
    time.sleep(2.0)  # idle longer than the timeout: the router forgets the flow
    assert not any("dport=7006" in entry for entry in nat.conntrack_entries())
    client.send("stale")
    assert client.expect("TIMEOUT", timeout=3) == "TIMEOUT"


def _netem_or_skip(nat: NatTopology, backend: ImpairmentBackend) -> None:
    try:
        nat.set_impairment(Side.PUBLIC, delay_ms=1, backend=backend)
    except CommandFailed as exc:
        pytest.skip(f"kernel has no sch_netem ({exc.stderr})")
    nat.clear_impairments()


@pytest.mark.parametrize("backend", [ImpairmentBackend.NETEM, ImpairmentBackend.NFQUEUE])
def test_delay_adds_measured_latency(
    nat: NatTopology, tcp: Lab, backend: ImpairmentBackend
) -> None:
    if backend is ImpairmentBackend.NETEM:
        _netem_or_skip(nat, backend)
    lab = tcp(nat)
    lab.serve(Host.PUBLIC, 7007)
    client = lab.session(Host.GATEWAY, nat.address(Host.PUBLIC), 7007, timeout=2.0)
    client.send("baseline")
    assert rtt(client.expect("ECHO")) < 50

    assert nat.set_impairment(Side.PUBLIC, delay_ms=120, backend=backend) is backend
    assert nat.impairment(Side.PUBLIC).delay_ms == 120
    client.send("one way")
    assert rtt(client.expect("ECHO")) >= 120

    nat.set_impairment(Side.PRIVATE, delay_ms=80, backend=backend)
    client.send("both ways")
    assert rtt(client.expect("ECHO")) >= 200

    nat.clear_impairments()
    assert not nat.impairment(Side.PUBLIC).active
    client.send("cleared")
    assert rtt(client.expect("ECHO")) < 50


def test_full_loss_blocks_and_is_read_back(nat: NatTopology, tcp: Lab) -> None:
    lab = tcp(nat)
    lab.serve(Host.PUBLIC, 7008)
    nat.set_impairment(Side.PUBLIC, loss_percent=100)
    assert nat.impairment(Side.PUBLIC).loss_percent == 100
    assert lab.connect(Host.GATEWAY, nat.address(Host.PUBLIC), 7008, timeout=0.7).startswith("FAIL")
    nat.set_impairment(Side.PUBLIC, loss_percent=0)
    assert lab.connect(Host.GATEWAY, nat.address(Host.PUBLIC), 7008).startswith("OK")


def _connect_eventually(lab: TcpLab, address: str, port: int, attempts: int = 4) -> str:
    """After a link comes back, ARP may need a moment: a few bounded attempts."""
    outcome = ""
    for _ in range(attempts):
        outcome = lab.connect(Host.GATEWAY, address, port, timeout=1.0)
        if outcome.startswith("OK"):
            break
    return outcome


@pytest.mark.parametrize("link", [Link.GATEWAY, Link.UPLINK])
def test_link_down_cuts_the_gateway_off_and_up_restores(
    nat: NatTopology, tcp: Lab, link: Link
) -> None:
    lab = tcp(nat)
    lab.serve(Host.PUBLIC, 7009)
    public = nat.address(Host.PUBLIC)
    nat.link_down(link)
    assert not nat.link_is_up(link)
    assert lab.connect(Host.GATEWAY, public, 7009, timeout=0.7).startswith("FAIL")
    nat.link_up(link)
    assert nat.link_is_up(link)
    assert _connect_eventually(lab, public, 7009).startswith("OK")


def test_short_uplink_outage_keeps_established_flows(nat: NatTopology, tcp: Lab) -> None:
    lab = tcp(nat)
    lab.serve(Host.PUBLIC, 7010)
    client = lab.session(Host.GATEWAY, nat.address(Host.PUBLIC), 7010, timeout=5.0)
    client.send("before")
    client.expect("ECHO")
    nat.link_down(Link.UPLINK)
    client.send("during")  # retransmitted by TCP until the cable is back
    time.sleep(0.5)
    nat.link_up(Link.UPLINK)
    # conntrack kept the mapping: the same flow carries on
    assert rtt(client.expect("ECHO", timeout=6)) >= 400


def test_proxy_is_the_only_way_out(nat_proxy: NatTopology, tcp: Lab) -> None:
    proxy = nat_proxy.proxy
    assert proxy is not None and proxy.authorization is not None
    lab = tcp(nat_proxy)
    server = lab.serve(Host.PUBLIC, 7011)
    public = nat_proxy.address(Host.PUBLIC)
    proxy_endpoint = f"{proxy.address}:{proxy.port}"

    for client in (Host.GATEWAY, Host.MAAS):
        outcome = lab.connect(client, public, 7011, timeout=0.7)
        assert outcome.startswith("FAIL"), (client, outcome)

    denied = lab.connect(Host.GATEWAY, public, 7011, proxy=proxy_endpoint)
    assert denied.startswith("FAIL") and "407" in denied

    ok = lab.connect(Host.GATEWAY, public, 7011, proxy=proxy_endpoint, auth=proxy.authorization)
    assert ok.startswith("OK"), ok
    assert server.expect("ACCEPT").split()[1] == nat_proxy.address(Host.ROUTER)
    assert f"CONNECT {public}:7011" in proxy.log()
    assert not [line for line in server.drain() if line.startswith("ACCEPT")][1:]

    pid = proxy.status().pid
    proxy.restart()
    assert proxy.status().pid not in (None, pid)
    again = lab.connect(Host.GATEWAY, public, 7011, proxy=proxy_endpoint, auth=proxy.authorization)
    assert again.startswith("OK"), again


def test_down_after_a_crash_removes_everything_with_the_prefix(
    requires_netns: None, nat_topology: NatTopology, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = NatPlan(prefix=unique_prefix())
    crashed = NatTopology(plan)
    crashed.up()
    with pytest.raises(TopologyExists):
        NatTopology(plan).up()
    orphan = crashed.popen(Host.GATEWAY, ["sleep", "30"])
    del crashed  # the run "crashes": nothing calls down on that object

    assert pcg_sim(["nat", "status", "--prefix", plan.prefix, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["exists"] and len(status["hosts"]) == 4
    gateway = next(host for host in status["hosts"] if host["host"] == "gateway")
    assert gateway["interfaces"][0]["addresses"] == [f"{plan.address(Host.GATEWAY)}/24"]

    listed = subprocess.run(
        [sys.executable, "-m", "protocol.simulator.cli", "nat", "exec", "--prefix", plan.prefix,
         "gateway", "--", "ip", "-4", "-o", "addr", "show"],
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    assert str(plan.address(Host.GATEWAY)) in listed.stdout

    assert pcg_sim(["nat", "down", "--prefix", plan.prefix]) == 0
    assert orphan.wait(timeout=5) != 0  # killed with its namespace
    assert not [name for name in list_namespaces() if name.startswith(f"{plan.prefix}-")]
    NatTopology(plan).down()  # twice is fine
    assert pcg_sim(["nat", "status", "--prefix", plan.prefix]) == 0
    assert "not up" in capsys.readouterr().out
    # the session topology with another prefix was not touched
    assert nat_topology.plan.namespace(Host.ROUTER) in list_namespaces()


def test_cli_knobs(nat: NatTopology, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = ["--prefix", nat.plan.prefix]
    assert pcg_sim(["nat", "idle-timeout", *prefix, "77"]) == 0
    assert capsys.readouterr().out.strip() == "77"
    assert nat.idle_timeout() == 77
    assert (
        pcg_sim(["nat", "impair", *prefix, "both", "--delay-ms", "5", "--loss-percent", "1"]) == 0
    )
    assert nat.impairment(Side.PRIVATE).loss_percent == 1
    assert pcg_sim(["nat", "link", *prefix, "gateway", "down"]) == 0
    assert not nat.link_is_up(Link.GATEWAY)
    assert pcg_sim(["nat", "status", *prefix]) == 0
    rendered = capsys.readouterr().out
    assert "gateway DOWN" in rendered and "delay 5 ms" in rendered
    assert pcg_sim(["nat", "flush", *prefix]) == 0
    assert pcg_sim(["nat", "proxy-restart", *prefix]) == 1
    assert "has no proxy host" in capsys.readouterr().err


def test_down_removes_a_partial_topology_and_nothing_else(requires_netns: None) -> None:
    prefix = unique_prefix()
    mine, neighbour = f"{prefix}-maas", f"{prefix}y-router"  # "{prefix}y" is another prefix
    for name in (mine, neighbour):
        subprocess.run([tool("ip"), "netns", "add", name], check=True, timeout=10)
    try:
        NatTopology(NatPlan(prefix=prefix)).down()
        present = list_namespaces()
        assert mine not in present and neighbour in present
    finally:
        for name in (mine, neighbour):
            subprocess.run([tool("ip"), "netns", "delete", name], capture_output=True, timeout=10)
