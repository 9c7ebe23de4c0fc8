"""Fault-injection fixtures: the NAT topology on real network namespaces, and TCP peers in it.

Tests here need root and network namespaces. Mark them ``@pytest.mark.requires_netns`` (or use
one of the topology fixtures, which skip the same way) and they are skipped elsewhere with the
reason saying what is missing.

Traffic only ever goes to addresses of the namespaces these fixtures create.
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator

import pytest

from protocol.simulator.nat import (
    Link,
    NatPlan,
    NatTopology,
    ProxySettings,
    StaleFlowAction,
)
from tests.faults.nat_lab import TcpLab, unique_prefix

SKIP_PREFIX = "requires root and network namespaces"


@functools.cache
def netns_unavailable() -> str | None:
    """Why network-namespace tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return f"{SKIP_PREFIX}: running as uid {os.geteuid()}, not root"
    missing = [name for name in ("ip", "iptables", "tc", "conntrack") if not _which(name)]
    if missing:
        return f"{SKIP_PREFIX}: missing tools {', '.join(missing)} (iproute2, iptables, conntrack)"
    probe = f"pcgprobe{os.getpid() % 100000}"
    added = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if added.returncode != 0:
        return f"{SKIP_PREFIX}: 'ip netns add' failed: {added.stderr.strip()}"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True)
    return None


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requires_netns: needs root and network namespaces")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("requires_netns") is not None:
            reason = netns_unavailable()
            if reason is not None:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def requires_netns() -> None:
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(reason)


def _bring_up(plan: NatPlan) -> Iterator[NatTopology]:
    topology = NatTopology(plan)
    try:
        topology.up()
        yield topology
    finally:
        topology.down()


@pytest.fixture(scope="session")
def nat_topology(requires_netns: None) -> Iterator[NatTopology]:
    """One topology for the session (no proxy); use ``nat`` to get it with knobs reset."""
    yield from _bring_up(NatPlan(prefix=unique_prefix()))


@pytest.fixture(scope="session")
def nat_proxy_topology(requires_netns: None) -> Iterator[NatTopology]:
    """A proxy-only topology: tinyproxy with BasicAuth is the only way out."""
    if not _which("tinyproxy"):
        pytest.skip(f"{SKIP_PREFIX}: tinyproxy is not installed")
    settings = ProxySettings(port=8888, user="tester", password=secrets.token_hex(8))
    yield from _bring_up(NatPlan(prefix=unique_prefix(), proxy=settings))


def _reset(topology: NatTopology, idle_timeout: int) -> None:
    topology.clear_impairments()
    for link in Link:
        if link is not Link.PROXY or topology.plan.proxy is not None:
            topology.link_up(link)
    topology.set_idle_timeout(idle_timeout)
    topology.set_stale_flow_action(StaleFlowAction.DROP)
    topology.flush_conntrack()


@pytest.fixture
def nat(nat_topology: NatTopology) -> Iterator[NatTopology]:
    """The session topology; every knob is put back after the test."""
    idle_timeout = nat_topology.idle_timeout()
    try:
        yield nat_topology
    finally:
        _reset(nat_topology, idle_timeout)


@pytest.fixture
def nat_proxy(nat_proxy_topology: NatTopology) -> Iterator[NatTopology]:
    idle_timeout = nat_proxy_topology.idle_timeout()
    try:
        yield nat_proxy_topology
    finally:
        _reset(nat_proxy_topology, idle_timeout)


@pytest.fixture
def tcp() -> Iterator[Callable[[NatTopology], TcpLab]]:
    """``tcp(topology)`` gives a TcpLab; every peer it started is killed after the test."""
    labs: list[TcpLab] = []

    def make(topology: NatTopology) -> TcpLab:
        labs.append(TcpLab(topology))
        return labs[-1]

    try:
        yield make
    finally:
        for lab in labs:
            lab.close()
