"""A NAT topology on Linux network namespaces, for testing the gateway behind a real NAT.

:class:`NatPlan` (pure) says what to build; :class:`NatTopology` builds it, turns the knobs
(idle timeout, loss/delay, links, conntrack flush, stale-flow action) and runs processes inside
its hosts. ``pcg-sim nat`` is the command line over the same API. See README.md.
"""

from protocol.simulator.nat.exceptions import (
    CommandFailed,
    NatError,
    NetnsUnavailable,
    PlanError,
    TopologyExists,
    TopologyMissing,
)
from protocol.simulator.nat.firewall import Impairment, StaleFlowAction
from protocol.simulator.nat.impair import ImpairmentBackend
from protocol.simulator.nat.network import NatTopology
from protocol.simulator.nat.proxy import TinyProxy
from protocol.simulator.nat.status import TopologyStatus
from protocol.simulator.nat.topology import (
    DEFAULT_NETWORK,
    DEFAULT_PREFIX,
    Host,
    Link,
    NatPlan,
    ProxySettings,
    Side,
)

__all__ = [
    "DEFAULT_NETWORK",
    "DEFAULT_PREFIX",
    "CommandFailed",
    "Host",
    "Impairment",
    "ImpairmentBackend",
    "Link",
    "NatError",
    "NatPlan",
    "NatTopology",
    "NetnsUnavailable",
    "PlanError",
    "ProxySettings",
    "Side",
    "StaleFlowAction",
    "TinyProxy",
    "TopologyExists",
    "TopologyMissing",
    "TopologyStatus",
]
