"""The router's iptables rules, rendered as ``iptables-restore`` input. Pure: no I/O.

The router behaves like a home or office NAT: it masquerades the private LAN behind its public
address, forwards private->public NEW connections and the ESTABLISHED,RELATED traffic of those
flows back, and drops everything else (FORWARD policy DROP). With a proxy host, only the proxy
host's connections may leave.

Packets of a flow conntrack no longer knows (after a flush or an idle timeout) are INVALID
because ``nf_conntrack_tcp_loose`` is 0 in the router: a mid-stream packet cannot create a new
mapping. They go to the ``STALE`` chain, which drops them (a silent black hole, the common NAT
behaviour) or answers TCP with a reset (:class:`StaleFlowAction`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from protocol.simulator.nat.topology import NatPlan, Side

STALE_CHAIN = "STALE"

#: mangle chain per router side, jumped to from POSTROUTING on that interface's egress
IMPAIR_CHAINS: dict[Side, str] = {Side.PUBLIC: "IMPAIR-PUBLIC", Side.PRIVATE: "IMPAIR-PRIVATE"}

#: NFQUEUE number per side for the userspace delay (queues are per network namespace)
QUEUE_NUMBERS: dict[Side, int] = {Side.PUBLIC: 1, Side.PRIVATE: 2}


class StaleFlowAction(StrEnum):
    DROP = "drop"  # silent: both ends keep retransmitting until their own timeouts
    RESET = "reset"  # TCP reset to whoever sends on the dead flow: fails fast


@dataclass(frozen=True, slots=True)
class Impairment:
    """Delay and loss on one router interface's egress (tc netem semantics)."""

    delay_ms: float = 0.0
    loss_percent: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.delay_ms <= 60_000.0:
            raise ValueError(f"delay {self.delay_ms} ms is not in 0..60000")
        if not 0.0 <= self.loss_percent <= 100.0:
            raise ValueError(f"loss {self.loss_percent}% is not in 0..100")

    @property
    def active(self) -> bool:
        return self.delay_ms > 0 or self.loss_percent > 0


def router_rules(plan: NatPlan) -> str:
    """The router's full ruleset (filter, nat, mangle) for ``iptables-restore``."""
    wan = plan.side_ifname(Side.PUBLIC)
    lan = plan.side_ifname(Side.PRIVATE)
    source = plan.egress_source
    outbound_source = f"-s {source}/32 " if source is not None else ""
    lines = [
        "*filter",
        ":INPUT ACCEPT [0:0]",
        ":FORWARD DROP [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        f":{STALE_CHAIN} - [0:0]",
        # nothing from the public side may open a connection to the router itself
        f"-A INPUT -i {wan} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        f"-A INPUT -i {wan} -j DROP",
        "-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        f"-A FORWARD -m conntrack --ctstate INVALID -j {STALE_CHAIN}",
        # LAN-to-LAN frames are bridged; they only reach iptables if br_netfilter is on
        f"-A FORWARD -i {lan} -o {lan} -j ACCEPT",
        f"-A FORWARD -i {lan} -o {wan} {outbound_source}-m conntrack --ctstate NEW -j ACCEPT",
        *stale_rules(StaleFlowAction.DROP),
        "COMMIT",
        "*nat",
        ":PREROUTING ACCEPT [0:0]",
        ":INPUT ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        ":POSTROUTING ACCEPT [0:0]",
        f"-A POSTROUTING -o {wan} -j MASQUERADE",
        "COMMIT",
        "*mangle",
        ":PREROUTING ACCEPT [0:0]",
        ":INPUT ACCEPT [0:0]",
        ":FORWARD ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        ":POSTROUTING ACCEPT [0:0]",
    ]
    for chain in IMPAIR_CHAINS.values():
        lines.append(f":{chain} - [0:0]")
    for side, chain in IMPAIR_CHAINS.items():
        lines.append(f"-A POSTROUTING -o {plan.side_ifname(side)} -j {chain}")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def stale_rules(action: StaleFlowAction) -> list[str]:
    """Rules (``-A`` lines) of the STALE chain for ``action``."""
    comment = f'-m comment --comment "stale={action.value}"'
    rules = []
    if action is StaleFlowAction.RESET:
        rules.append(f"-A {STALE_CHAIN} -p tcp {comment} -j REJECT --reject-with tcp-reset")
    rules.append(f"-A {STALE_CHAIN} {comment} -j DROP")
    return rules


def impairment_rules(side: Side, impairment: Impairment, *, userspace_delay: bool) -> list[str]:
    """Rules (``-A`` lines) of a side's mangle chain.

    Loss always uses the ``statistic`` match. Delay is only in these rules when it is done in
    userspace (NFQUEUE), i.e. when the kernel has no netem; ``--queue-bypass`` lets packets pass
    when no delayer is bound, so a crashed delayer never blackholes the link.
    """
    chain = IMPAIR_CHAINS[side]
    rules = []
    if impairment.loss_percent > 0:
        probability = impairment.loss_percent / 100.0
        rules.append(
            f"-A {chain} -m statistic --mode random --probability {probability:.6f} "
            f'-m comment --comment "loss={impairment.loss_percent:g}" -j DROP'
        )
    if userspace_delay and impairment.delay_ms > 0:
        rules.append(
            f'-A {chain} -m comment --comment "delay={impairment.delay_ms:g}" '
            f"-j NFQUEUE --queue-num {QUEUE_NUMBERS[side]} --queue-bypass"
        )
    return rules


_COMMENT = re.compile(r'--comment "?(\w+)=([\w.]+)"?')


def parse_comments(listing: str) -> dict[str, str]:
    """``key=value`` comments of ``iptables -S CHAIN`` output (how the knobs are read back)."""
    return dict(_COMMENT.findall(listing))


def stale_ruleset(action: StaleFlowAction) -> str:
    """``iptables-restore --noflush`` input replacing the STALE chain's rules."""
    return "\n".join(["*filter", f"-F {STALE_CHAIN}", *stale_rules(action), "COMMIT"]) + "\n"


def impairment_ruleset(side: Side, impairment: Impairment, *, userspace_delay: bool) -> str:
    """``iptables-restore --noflush`` input replacing a side's impairment rules."""
    rules = impairment_rules(side, impairment, userspace_delay=userspace_delay)
    return "\n".join(["*mangle", f"-F {IMPAIR_CHAINS[side]}", *rules, "COMMIT"]) + "\n"
