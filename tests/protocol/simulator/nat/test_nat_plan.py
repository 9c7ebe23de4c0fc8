"""The NAT topology's pure parts: the plan, the rules, the netlink messages, the proxy config."""

from __future__ import annotations

import ipaddress
import os
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.simulator.cli import build_parser
from protocol.simulator.cli import main as pcg_sim
from protocol.simulator.nat import (
    CommandFailed,
    Host,
    Impairment,
    Link,
    NatPlan,
    NatTopology,
    NetnsUnavailable,
    PlanError,
    ProxySettings,
    Side,
    StaleFlowAction,
    netns,
    nfqueue,
)
from protocol.simulator.nat.firewall import (
    impairment_rules,
    parse_comments,
    router_rules,
    stale_rules,
)
from protocol.simulator.nat.impair import parse_netem
from protocol.simulator.nat.proxy import TinyProxy, render_config
from protocol.simulator.nat.topology import IFNAME_MAX, PREFIX_PATTERN

prefixes = st.from_regex(PREFIX_PATTERN, fullmatch=True)
networks = st.builds(
    lambda address, length: ipaddress.IPv4Network((address, length), strict=False),
    st.integers(0, 2**32 - 1),
    st.integers(8, 22),
)
proxies = st.none() | st.just(ProxySettings())


@given(prefixes, networks, proxies)
def test_every_name_fits_ifnamsiz_and_carries_the_prefix(
    prefix: str, network: ipaddress.IPv4Network, proxy: ProxySettings | None
) -> None:
    plan = NatPlan(prefix=prefix, network=network, proxy=proxy)
    assert all(len(name) <= IFNAME_MAX for name in plan.all_ifnames)
    assert all(name.startswith(f"{prefix}-") for name in plan.all_ifnames + plan.all_namespaces)
    used = {plan.bridge_ifname}
    for link in plan.links:
        used |= {link.host_ifname, link.router_ifname}
    assert used <= set(plan.all_ifnames)
    assert len(used) == 2 * len(plan.links) + 1
    assert {plan.namespace(host) for host in plan.hosts} <= set(plan.all_namespaces)


@given(prefixes, networks, proxies)
def test_addresses_are_inside_the_network_and_never_overlap(
    prefix: str, network: ipaddress.IPv4Network, proxy: ProxySettings | None
) -> None:
    plan = NatPlan(prefix=prefix, network=network, proxy=proxy)
    public, private = plan.public_segment, plan.private_segment
    assert public.subnet_of(network) and private.subnet_of(network)
    assert not public.overlaps(private)
    addresses = [plan.router_public_address, plan.router_private_address]
    addresses += [plan.address(host) for host in plan.hosts if host is not Host.ROUTER]
    assert len(set(addresses)) == len(addresses)
    for address in addresses:
        assert address in network
        segment = public if address in public else private
        assert address not in (segment.network_address, segment.broadcast_address)
    for link in plan.links:
        segment = public if link.host is Host.PUBLIC else private
        assert link.host_address.network == segment
    for route in plan.routes:
        host_segment = public if route.host is Host.PUBLIC else private
        assert route.via in host_segment  # every gateway is on-link


@given(prefixes, prefixes)
def test_two_prefixes_never_share_a_name(first: str, second: str) -> None:
    if first == second:
        return
    one, two = NatPlan(prefix=first), NatPlan(prefix=second)
    assert not set(one.all_namespaces) & set(two.all_namespaces)
    assert not set(one.all_ifnames) & set(two.all_ifnames)


def test_default_plan_is_the_documented_one() -> None:
    plan = NatPlan()
    assert plan.network == ipaddress.IPv4Network("198.19.0.0/16")
    assert plan.namespace(Host.GATEWAY) == "pcg-gateway"
    assert str(plan.address(Host.PUBLIC)) == "198.19.1.2"
    assert str(plan.address(Host.ROUTER)) == "198.19.1.1"
    assert str(plan.router_private_address) == "198.19.2.1"
    assert str(plan.address(Host.GATEWAY)) == "198.19.2.10"
    assert str(plan.address(Host.MAAS)) == "198.19.2.20"
    assert plan.hosts == (Host.PUBLIC, Host.ROUTER, Host.GATEWAY, Host.MAAS)
    with pytest.raises(PlanError, match="proxy not enabled"):
        plan.address(Host.PROXY)
    proxied = NatPlan(proxy=ProxySettings())
    assert str(proxied.address(Host.PROXY)) == "198.19.2.30"
    assert proxied.egress_source == proxied.address(Host.PROXY)
    assert NatPlan().egress_source is None


@pytest.mark.parametrize("prefix", ["", "Pcg", "pcg-a", "1pcg", "pcgpcgpcgx", "pc g"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(PlanError, match="prefix"):
        NatPlan(prefix=prefix)


@pytest.mark.parametrize("network", ["198.19.0.0/23", "10.0.0.0/24"])
def test_too_small_networks_are_refused(network: str) -> None:
    with pytest.raises(PlanError, match="too small"):
        NatPlan(network=ipaddress.IPv4Network(network))


def test_proxy_settings_are_validated() -> None:
    with pytest.raises(PlanError, match="port"):
        ProxySettings(port=0)
    with pytest.raises(PlanError, match="both"):
        ProxySettings(user="alice")
    with pytest.raises(PlanError, match="spaces"):
        ProxySettings(user="alice", password="two words")


def test_pulling_a_cable_downs_its_far_end() -> None:
    plan = NatPlan(prefix="pcg")
    assert plan.link_far_end(Link.GATEWAY) == (Host.ROUTER, "pcg-rgw")
    assert plan.link_far_end(Link.UPLINK) == (Host.PUBLIC, "pcg-pub")
    with pytest.raises(PlanError, match="no proxy host"):
        plan.link_far_end(Link.PROXY)
    assert plan.side_ifname(Side.PUBLIC) == "pcg-rpub"
    assert plan.side_ifname(Side.PRIVATE) == "pcg-rlan"


def test_router_drops_unsolicited_traffic_and_masquerades() -> None:
    rules = router_rules(NatPlan(prefix="pcg")).splitlines()
    assert ":FORWARD DROP [0:0]" in rules
    assert "-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT" in rules
    assert "-A FORWARD -i pcg-rlan -o pcg-rpub -m conntrack --ctstate NEW -j ACCEPT" in rules
    assert "-A POSTROUTING -o pcg-rpub -j MASQUERADE" in rules
    assert not [rule for rule in rules if "-i pcg-rpub" in rule and "FORWARD" in rule]


def test_proxy_only_router_lets_out_just_the_proxy_host() -> None:
    rules = router_rules(NatPlan(prefix="pcg", proxy=ProxySettings())).splitlines()
    outbound = [rule for rule in rules if "-o pcg-rpub" in rule and "FORWARD" in rule]
    assert outbound == [
        "-A FORWARD -i pcg-rlan -o pcg-rpub -s 198.19.2.30/32 -m conntrack --ctstate NEW -j ACCEPT"
    ]


def test_knob_rules_read_back_through_their_comments() -> None:
    rules = impairment_rules(Side.PUBLIC, Impairment(120, 2.5), userspace_delay=True)
    assert "--probability 0.025000" in rules[0]
    assert "--queue-bypass" in rules[1]
    listing = "\n".join(rule.replace('"', "") for rule in rules)  # iptables -S drops quotes
    assert parse_comments(listing) == {"loss": "2.5", "delay": "120"}
    netem_rules = impairment_rules(Side.PUBLIC, Impairment(120, 0), userspace_delay=False)
    assert netem_rules == []  # netem does the delay
    assert parse_comments("\n".join(stale_rules(StaleFlowAction.RESET))) == {"stale": "reset"}
    assert any("tcp-reset" in rule for rule in stale_rules(StaleFlowAction.RESET))


@pytest.mark.parametrize(
    ("shown", "expected"),
    [
        ("qdisc netem 8001: root refcnt 2 limit 1000 delay 100ms loss 10%", Impairment(100, 10)),
        ("qdisc netem 8002: root refcnt 2 limit 1000 delay 1s", Impairment(1000, 0)),
        ("qdisc netem 8003: root refcnt 2 limit 1000 delay 500us", Impairment(0.5, 0)),
        ("qdisc netem 8004: root refcnt 2 limit 1000 loss 0.5%", Impairment(0, 0.5)),
        ("qdisc noqueue 0: root refcnt 2", None),
    ],
)
def test_netem_settings_are_parsed(shown: str, expected: Impairment | None) -> None:
    assert parse_netem(shown) == expected


def test_impairments_are_validated() -> None:
    with pytest.raises(ValueError, match="loss"):
        Impairment(loss_percent=101)
    with pytest.raises(ValueError, match="delay"):
        Impairment(delay_ms=-1)
    assert not Impairment().active


def test_nfqueue_messages_round_trip() -> None:
    bind = nfqueue.bind_message(3, seq=7)
    length, msg_type, flags, seq, _ = struct.unpack_from("=IHHII", bind)
    assert length == len(bind) and len(bind) % 4 == 0
    assert msg_type == (nfqueue.NFNL_SUBSYS_QUEUE << 8) | nfqueue.NFQNL_MSG_CONFIG
    assert flags & nfqueue.NLM_F_ACK and seq == 7
    assert struct.unpack_from("!H", bind, 18)[0] == 3  # nfgenmsg res_id, big-endian

    packet_header = struct.pack("!IHB", 4242, 0x0800, 4)
    attribute = struct.pack("=HH", 4 + len(packet_header), nfqueue.NFQA_PACKET_HDR)
    body = b"\0\0\0\1" + attribute + packet_header + b"\0"
    kind = (nfqueue.NFNL_SUBSYS_QUEUE << 8) | nfqueue.NFQNL_MSG_PACKET
    packet = struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body
    error = struct.pack("=IHHII", 36, nfqueue.NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", -16)
    error += b"\0" * 16
    assert list(nfqueue.parse(packet + error)) == [("packet", 4242), ("error", 16)]

    verdict = nfqueue.verdict_message(3, 4242)
    assert struct.unpack_from("!II", verdict, 24) == (nfqueue.NF_ACCEPT, 4242)


def test_tinyproxy_config_listens_on_the_proxy_host_and_allows_the_lan() -> None:
    plan = NatPlan(prefix="pcg", proxy=ProxySettings(port=3128, user="alice", password="s3cret"))
    assert plan.proxy is not None
    state_dir = Path("state")
    config = render_config(plan.proxy, plan.address(Host.PROXY), plan.private_segment, state_dir)
    lines = config.splitlines()
    assert "Port 3128" in lines and "Listen 198.19.2.30" in lines
    assert "Allow 198.19.2.0/24" in lines and "BasicAuth alice s3cret" in lines
    assert f'LogFile "{state_dir / "tinyproxy.log"}"' in lines
    assert not [line for line in lines if line.startswith("ConnectPort")]
    proxy = TinyProxy(plan, plan.proxy, state_dir)
    assert proxy.url == "http://alice:s3cret@198.19.2.30:3128"
    assert proxy.authorization == "Basic YWxpY2U6czNjcmV0"
    assert proxy.log_path == state_dir / "tinyproxy.log"
    anonymous = render_config(ProxySettings(), plan.address(Host.PROXY), plan.network, state_dir)
    assert "BasicAuth" not in anonymous


def test_a_topology_object_is_only_a_plan_until_up() -> None:
    topology = NatTopology(NatPlan(prefix="pcgz"))
    assert topology.namespace("gateway") == "pcgz-gateway"
    assert topology.address(Host.MAAS) == "198.19.2.20"
    assert topology.exec_argv(Host.MAAS, ["true"])[-3:] == ["exec", "pcgz-maas", "true"][-3:]
    assert topology.proxy is None


def test_without_root_it_refuses_and_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(NetnsUnavailable, match=r"needs root .*uid 1000.*sudo"):
        netns.check_support()
    assert pcg_sim(["nat", "status", "--prefix", "pcgz"]) == 1
    assert "needs root" in capsys.readouterr().err


def test_missing_tools_name_their_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda *_args, **_kwargs: None)
    with pytest.raises(NetnsUnavailable, match="apt-get install conntrack"):
        netns.tool("conntrack")


def test_failed_commands_carry_the_command_and_stderr() -> None:
    error = CommandFailed(["ip", "link", "add", "x y"], 2, "RTNETLINK answers: File exists\n")
    assert str(error) == (
        "command failed (exit 2): ip link add 'x y': RTNETLINK answers: File exists"
    )


def test_cli_registers_nat_and_its_actions() -> None:
    parser = build_parser()
    args = parser.parse_args(
        ["nat", "up", "--prefix", "pcgz", "--network", "10.77.0.0/16", "--proxy"]
    )
    assert args.prefix == "pcgz" and args.proxy and callable(args.func)
    assert args.network == ipaddress.IPv4Network("10.77.0.0/16")
    args = parser.parse_args(["nat", "exec", "--prefix", "pcgz", "gateway", "--", "ip", "a"])
    assert args.host == "gateway" and args.argv[-2:] == ["ip", "a"]
    args = parser.parse_args(["nat", "link", "uplink", "down"])
    assert (args.link, args.state, args.prefix) == ("uplink", "down", "pcg")
