"""The adaptive keepalive: each session that dies of silence halves the ping interval, down to
a floor (the NAT idle-timeout case itself runs on real namespaces in tests/faults)."""

from __future__ import annotations

import logging

import pytest

from agent.config import AgentConfig
from agent.tunnel import KEEPALIVE_FLOOR, TunnelClient


def client(interval: float) -> TunnelClient:
    config = AgentConfig(
        gateway_name="gw", hub_url="wss://h/v1/tunnel", token="abcdef", ping_interval=interval
    )
    return TunnelClient(config)


async def test_silent_deaths_halve_the_interval_down_to_the_floor(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tunnel = client(10.0)
    seen = []
    with caplog.at_level(logging.WARNING):
        for _ in range(6):
            tunnel._shorten_keepalive()
            seen.append(tunnel.ping_interval)
    assert seen == [5.0, 2.5, 1.25, KEEPALIVE_FLOOR, KEEPALIVE_FLOOR, KEEPALIVE_FLOOR]
    assert "ping_interval=10.0s->5.0s" in caplog.text and "idle timeout" in caplog.text


async def test_an_interval_already_below_the_floor_is_kept() -> None:
    tunnel = client(0.5)
    tunnel._shorten_keepalive()
    assert tunnel.ping_interval == 0.5
