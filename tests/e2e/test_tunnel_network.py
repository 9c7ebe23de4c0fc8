"""The agent's way out: a real tinyproxy, NO_PROXY, proxy auth, and TLS verification."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.origin import Origin
from tests.support.processes import AgentProcess, HubProcess, Tinyproxy
from tests.support.tls import Pki

from .conftest import GATEWAY, agent_config, relayed_ok


@pytest.fixture
def tls_hub(tmp_path: Path, token: str, pki: Pki) -> Iterator[HubProcess]:
    process = HubProcess(
        tmp_path,
        {GATEWAY: token},
        tls=(pki.server_cert, pki.server_key),
        ping_interval=1.0,
        ping_timeout=1.0,
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture
def tinyproxy(tmp_path: Path) -> Iterator[Callable[..., Tinyproxy]]:
    """Start a real tinyproxy (optionally with basic auth); stopped after the test."""
    started: list[Tinyproxy] = []

    def start(auth: tuple[str, str] | None = None) -> Tinyproxy:
        try:
            proxy = Tinyproxy(tmp_path, auth)
        except FileNotFoundError as exc:
            pytest.skip(str(exc))
        proxy.start()
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


async def test_agent_reaches_the_hub_through_tinyproxy(
    tls_hub: HubProcess,
    pki: Pki,
    origin: Origin,
    agents: Callable[..., AgentProcess],
    token: str,
    tinyproxy: Callable[..., Tinyproxy],
) -> None:
    proxy = tinyproxy()
    config = agent_config(
        tls_hub, token, origin.port, ca_bundle=str(pki.ca_cert), https_proxy=proxy.url
    )
    agent = agents(config)
    await agent.wait_log("tunnel up")
    assert f"proxy={proxy.url}" in agent.log
    assert proxy.connects_to(tls_hub.port) == 1, proxy.log
    assert await relayed_ok(tls_hub, origin)


async def test_no_proxy_covering_the_hub_goes_direct(
    tls_hub: HubProcess,
    pki: Pki,
    origin: Origin,
    agents: Callable[..., AgentProcess],
    token: str,
    tinyproxy: Callable[..., Tinyproxy],
) -> None:
    proxy = tinyproxy()
    config = agent_config(tls_hub, token, origin.port, ca_bundle=str(pki.ca_cert))
    # from the environment, as users set it; a CIDR entry covers the hub's address
    env = {"HTTPS_PROXY": proxy.url, "NO_PROXY": "example.com,127.0.0.0/8"}
    agent = agents(config, env)
    await agent.wait_log("tunnel up")
    assert "proxy=none" in agent.log
    assert proxy.connects_to(tls_hub.port) == 0, proxy.log
    assert await relayed_ok(tls_hub, origin)


async def test_wrong_proxy_credentials_give_a_clear_error_naming_the_proxy(
    tls_hub: HubProcess,
    pki: Pki,
    origin: Origin,
    agents: Callable[..., AgentProcess],
    token: str,
    tinyproxy: Callable[..., Tinyproxy],
) -> None:
    proxy = tinyproxy(("alice", "right-horse-battery"))
    wrong = proxy.url.replace("http://", "http://alice:wrong-password@")
    config = agent_config(
        tls_hub, token, origin.port, ca_bundle=str(pki.ca_cert), https_proxy=wrong
    )
    agent = agents(config)
    await agent.wait_log("hub unreachable")
    line = next(x for x in agent.log.splitlines() if "hub unreachable" in x)
    assert f"proxy http://alice:***@127.0.0.1:{proxy.port}" in line
    assert "HTTP 401" in line and "password" in line
    assert "wrong-password" not in agent.log
    # and with the right ones it works
    right = proxy.url.replace("http://", "http://alice:right-horse-battery@")
    good = agents({**config, "gateway_name": GATEWAY, "https_proxy": right, "log_level": "INFO"})
    await good.wait_log("tunnel up")
    assert "right-horse-battery" not in good.log


async def test_wss_with_the_ca_configured_connects(
    tls_hub: HubProcess,
    pki: Pki,
    origin: Origin,
    agents: Callable[..., AgentProcess],
    token: str,
) -> None:
    agent = agents(agent_config(tls_hub, token, origin.port, ca_bundle=str(pki.ca_cert)))
    await agent.wait_log("tunnel up")
    assert tls_hub.tunnel_url.startswith("wss://")
    assert await relayed_ok(tls_hub, origin)


async def test_wss_without_the_ca_refuses_with_a_clear_tls_error(
    tls_hub: HubProcess, origin: Origin, agents: Callable[..., AgentProcess], token: str
) -> None:
    agent = agents(agent_config(tls_hub, token, origin.port))
    await agent.wait_log("hub unreachable")
    line = next(x for x in agent.log.splitlines() if "hub unreachable" in x)
    assert "level=error" in line
    assert f"TLS certificate of the hub 127.0.0.1:{tls_hub.port} did not verify" in line
    assert "set ca_bundle" in line
    assert agent.count("tunnel up") == 0


async def test_a_wrong_token_is_refused_by_the_hub(
    hub: HubProcess, origin: Origin, agents: Callable[..., AgentProcess], token: str
) -> None:
    agent = agents(agent_config(hub, token + "-wrong", origin.port))
    await agent.wait_log("hub unreachable")
    assert "refused the agent's credentials (HTTP 401)" in agent.log
    assert token not in agent.log
