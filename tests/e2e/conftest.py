"""Fixtures for end-to-end tests: a hub and agents as real subprocesses on loopback."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from protocol.simulator.palette import PaletteSimulator
from tests.support.net import fetch_via_connect
from tests.support.origin import Origin
from tests.support.processes import AgentProcess, HubProcess
from tests.support.tls import Pki, make_pki

from .palette import ADMIN, MAAS_KEY, PaletteClient

GATEWAY = "gw-test"


@pytest.fixture
def token() -> str:
    return "tok-" + secrets.token_urlsafe(24)


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    server = Origin()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def hub(tmp_path: Path, token: str) -> Iterator[HubProcess]:
    process = HubProcess(tmp_path, {GATEWAY: token}, ping_interval=1.0, ping_timeout=1.0)
    process.start()
    yield process
    process.stop()
    assert token not in process.log_path.read_text(), "the hub logged the agent's token"


async def relayed_ok(hub: HubProcess, origin: Origin) -> bool:
    """One small request through the hub, the tunnel and the agent to the origin."""
    result = await fetch_via_connect(
        hub.connect_addr, GATEWAY, "127.0.0.1", origin.port, "GET", "/small"
    )
    return result.status == 200 and result.body == b"ok"


def agent_config(hub: HubProcess, token: str, origin_port: int, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "gateway_name": GATEWAY,
        "hub_url": hub.tunnel_url,
        "token": token,
        "allowlist": [f"127.0.0.1:{origin_port}"],
        "ping_interval": 1.0,
        "ping_timeout": 1.0,
        "write_timeout": 3.0,
        "open_timeout": 3.0,
        "backoff_base": 0.2,
        "backoff_cap": 1.0,
        "backoff_reset_after": 5.0,
        "drain_timeout": 10.0,
        "log_level": "DEBUG",
    }
    config.update(extra)
    return config


@pytest.fixture
async def palette() -> AsyncIterator[PaletteClient]:
    sim = PaletteSimulator([ADMIN], ["sso@example.com"], unhealthy_after=1.0,
                           ping_interval=0.5, ping_timeout=1.0)  # fmt: skip
    await sim.start()
    async with aiohttp.ClientSession() as http:
        client = PaletteClient(sim, http)
        await client.login()
        yield client
    await sim.stop()


@pytest.fixture
def agents(tmp_path: Path, token: str) -> Iterator[Callable[..., AgentProcess]]:
    """Start `pcg-agent` subprocesses, each in its own folder; at the end, kill them and check
    that no log carries a secret: the hub token, the MAAS key, an Authorization header."""
    started: list[AgentProcess] = []

    def start(
        config: dict[str, Any], env: dict[str, str] | None = None, workdir: Path | None = None
    ) -> AgentProcess:
        folder = workdir or tmp_path / f"agent{len(started)}"
        folder.mkdir(exist_ok=True)
        process = AgentProcess(folder, config, env)
        process.start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
        log = process.log
        assert token not in log, "an agent logged its token"
        assert MAAS_KEY not in log and "s" * 32 not in log, "an agent logged the MAAS key"
        assert "Authorization:" not in log, "an agent logged its Authorization header"


@pytest.fixture
def spawn(agents: Callable[..., AgentProcess]) -> Callable[..., AgentProcess]:
    """The same, under the name the lifecycle tests use."""
    return agents
