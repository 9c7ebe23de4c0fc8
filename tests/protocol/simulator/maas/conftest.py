"""Fixtures: a MAAS simulator on 127.0.0.1 with fast timings, and a way to send raw, signed
requests to it (to look at what MAAS would answer, not what the client makes of it)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from protocol.simulator.maas import MaasSimulator
from protocol.simulator.maas.testing import running_simulator


@pytest.fixture
async def maas_sim() -> AsyncIterator[MaasSimulator]:
    async with running_simulator() as simulator:
        yield simulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(trust_env=False) as session:
        yield session
