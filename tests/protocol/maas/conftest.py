"""Fixtures: a MAAS simulator on 127.0.0.1 (fast timings) and a client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from protocol.maas import MaasClient
from protocol.simulator.maas import MaasSimulator
from protocol.simulator.maas.testing import client_for, running_simulator


@pytest.fixture
async def maas_sim() -> AsyncIterator[MaasSimulator]:
    async with running_simulator() as simulator:
        yield simulator


@pytest.fixture
async def maas(maas_sim: MaasSimulator) -> AsyncIterator[MaasClient]:
    async with client_for(maas_sim) as client:
        yield client
