"""The agent survives the hub: restarts, freezes, garbage, and its own graceful stop."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from protocol.aio.backoff import BackoffPolicy
from tests.support.net import fetch_via_connect, free_port, splice
from tests.support.origin import Origin
from tests.support.processes import AgentProcess, HubProcess

from .conftest import GATEWAY, agent_config, relayed_ok


async def test_agent_reconnects_after_hub_restart_within_its_backoff(
    hub: HubProcess, origin: Origin, agents: Callable[..., AgentProcess], token: str
) -> None:
    config = agent_config(hub, token, origin.port)
    agent = agents(config)
    await agent.wait_log("tunnel up")
    assert await relayed_ok(hub, origin)
    hub.kill()
    await agent.wait_log("tunnel down")
    attempts_before = agent.count("dialing hub")
    down_since = time.monotonic()
    await asyncio.sleep(4.0)
    hub.start()
    back_at = time.monotonic()
    up_at = await agent.wait_log("tunnel up", timeout=5, count=2)
    downtime = back_at - down_since
    attempts = agent.count("dialing hub") - attempts_before
    policy = BackoffPolicy(config["backoff_base"], config["backoff_cap"])
    print(f"reconnected {up_at - back_at:.2f}s after the hub came back; {attempts} attempts")
    assert up_at - back_at <= 2.0, f"took {up_at - back_at:.2f}s to reconnect"
    assert attempts <= policy.max_attempts(downtime) + 1, f"{attempts} attempts in {downtime:.1f}s"
    # the delays the agent chose follow the policy: within [base, cap]
    import re

    delays = [float(d) for d in re.findall(r"reconnecting .* in=([\d.]+)s", agent.log)]
    assert delays and all(policy.base <= d <= policy.cap for d in delays), delays
    assert await relayed_ok(hub, origin)


class SwitchableForwarder:
    """A TCP forwarder (think load balancer) whose target can be changed for new flows."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return

        await splice((reader, writer), (up_reader, up_writer))

    async def stop(self) -> None:
        if self.server:
            self.server.close()


@pytest.fixture
async def forwarder(hub: HubProcess) -> AsyncIterator[SwitchableForwarder]:
    fwd = SwitchableForwarder(hub.port)
    await fwd.start()
    yield fwd
    await fwd.stop()


async def test_frozen_hub_is_detected_and_the_agent_moves_to_a_fresh_one(
    hub: HubProcess,
    origin: Origin,
    agents: Callable[..., AgentProcess],
    token: str,
    forwarder: SwitchableForwarder,
    tmp_path: Path,
) -> None:
    config = agent_config(hub, token, origin.port)
    config["hub_url"] = f"ws://127.0.0.1:{forwarder.port}/v1/tunnel"
    agent = agents(config)
    await agent.wait_log("tunnel up")
    fresh = HubProcess(tmp_path, {GATEWAY: token}, ping_interval=1.0, ping_timeout=1.0)
    fresh.start()
    try:
        hub.freeze()
        frozen_at = time.monotonic()
        forwarder.target = fresh.port  # new connections reach the fresh hub
        bound = config["ping_interval"] + config["ping_timeout"]
        down_at = await agent.wait_log("tunnel down", timeout=bound + 5)
        print(f"frozen hub detected after {down_at - frozen_at:.2f}s (bound {bound}s)")
        assert down_at - frozen_at <= bound + 1.0
        assert "PEER_UNRESPONSIVE" in agent.log
        await agent.wait_log("tunnel up", timeout=5, count=2)
        assert await relayed_ok(fresh, origin)
    finally:
        hub.thaw()
        fresh.stop()


async def test_malformed_frames_end_the_session_not_the_agent(
    hub: HubProcess, origin: Origin, agents: Callable[..., AgentProcess], token: str
) -> None:
    agent = agents(agent_config(hub, token, origin.port))
    await agent.wait_log("tunnel up")
    for garbage in (b"\xc1\xc1", b"\x93\x2a\x01\xc0", b"\x92\x03\x63"):  # bad, unknown, truncated
        async with aiohttp.ClientSession() as http:
            url = f"{hub.api_url}/gateways/{GATEWAY}/debug/raw"
            async with http.post(url, data=garbage) as response:
                assert response.status == 200
        ups = agent.count("tunnel up")
        await agent.wait_log("tunnel up", timeout=5, count=ups + 1)
    assert agent.count("code=PROTOCOL_ERROR") >= 3, agent.log[-2000:]
    assert agent.proc is not None and agent.proc.poll() is None, "the agent must not crash"
    assert await relayed_ok(hub, origin)


async def test_a_graceful_goaway_moves_new_work_to_a_new_session_while_the_old_drains(
    hub: HubProcess, origin: Origin, agents: Callable[..., AgentProcess], token: str
) -> None:
    """PROTOCOL.md §8.2: the agent dials a new session at once; the old one finishes its
    streams, then closes; nothing in flight is lost and no new request waits for the drain."""
    agent = agents(agent_config(hub, token, origin.port))
    await agent.wait_log("tunnel up")
    in_flight = asyncio.create_task(
        fetch_via_connect(hub.connect_addr, GATEWAY, "127.0.0.1", origin.port, "GET", "/delay/3000")
    )
    await asyncio.sleep(0.3)
    async with aiohttp.ClientSession() as http:
        url = f"{hub.api_url}/gateways/{GATEWAY}/debug/goaway"
        async with http.post(url) as response:
            assert response.status == 200
        await agent.wait_log("hub is draining this session", timeout=5)
        await agent.wait_log("tunnel up", timeout=5, count=2)
        assert not in_flight.done(), "the delayed response is still on the old session"
        assert await relayed_ok(hub, origin)  # new work: the new session
        result = await asyncio.wait_for(in_flight, 10)
        assert result.status == 200

        async def sessions() -> int:
            async with http.get(f"{hub.api_url}/gateways") as response:
                return len((await response.json()).get(GATEWAY, []))

        async with asyncio.timeout(5):
            while await sessions() != 1:  # the old session closed once drained
                await asyncio.sleep(0.05)
    assert "tunnel down" not in agent.log
    # the session lasted less than backoff_reset_after, so the redial waited the backoff
    delay = float(re.findall(r"reconnecting gateway=\S+ in=([0-9.]+)s", agent.log)[0])
    assert delay >= 0.2, "a session retired soon after it came up is redialled with backoff"


async def test_a_session_retired_after_a_long_life_is_replaced_at_once(
    hub: HubProcess, origin: Origin, agents: Callable[..., AgentProcess], token: str
) -> None:
    agent = agents(agent_config(hub, token, origin.port, backoff_reset_after=1.0))
    await agent.wait_log("tunnel up")
    await asyncio.sleep(1.2)  # longer than backoff_reset_after
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{hub.api_url}/gateways/{GATEWAY}/debug/goaway") as response:
            assert response.status == 200
    await agent.wait_log("tunnel up", timeout=5, count=2)
    assert re.findall(r"reconnecting gateway=\S+ in=([0-9.]+)s", agent.log) == ["0.00"]
    assert await relayed_ok(hub, origin)


async def test_sigterm_finishes_in_flight_streams_then_exits_zero(
    hub: HubProcess, origin: Origin, agents: Callable[..., AgentProcess], token: str
) -> None:
    agent = agents(agent_config(hub, token, origin.port))
    await agent.wait_log("tunnel up")
    in_flight = asyncio.create_task(
        fetch_via_connect(hub.connect_addr, GATEWAY, "127.0.0.1", origin.port, "GET", "/delay/1500")
    )
    await asyncio.sleep(0.3)
    stopping = asyncio.create_task(agent.terminate())
    await agent.wait_log("stopping")
    # no new stream is taken once the agent said GOAWAY
    from tests.support.net import ConnectError

    with pytest.raises(ConnectError) as refused:
        await fetch_via_connect(
            hub.connect_addr, GATEWAY, "127.0.0.1", origin.port, "GET", "/small"
        )
    assert refused.value.status == 503
    result = await in_flight
    assert result.status == 200 and result.body == b"delayed"
    assert await stopping == 0
    assert "agent stopped" in agent.log
