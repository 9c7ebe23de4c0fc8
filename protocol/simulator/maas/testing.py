"""Helpers for tests that need a MAAS: start a simulator on 127.0.0.1 and a client for it.

In a conftest::

    @pytest.fixture
    async def maas_sim():
        async with running_simulator() as sim:
            yield sim

    async def test_x(maas_sim):
        async with client_for(maas_sim) as maas:
            machine = await maas.allocate(cpu_count=4)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from protocol.maas.apikey import ApiKey
from protocol.maas.client import MaasClient
from protocol.maas.retry import RetryPolicy
from protocol.simulator.maas.core import Timings
from protocol.simulator.maas.faults import Faults
from protocol.simulator.maas.inventory import Inventory
from protocol.simulator.maas.server import MaasSimulator

__all__ = ["FAST_RETRY", "client_for", "running_simulator"]

#: retries without real waiting, for tests
FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, jitter=False)


@asynccontextmanager
async def running_simulator(
    inventory: Inventory | None = None,
    *,
    api_key: ApiKey | str | None = None,
    timings: Timings | None = None,
    faults: Faults | None = None,
    state_file: str | Path | None = None,
) -> AsyncIterator[MaasSimulator]:
    """A started simulator on 127.0.0.1 (free port) with fast timings; stopped on exit."""
    simulator = MaasSimulator(
        inventory,
        api_key,
        timings or Timings.fast(),
        faults=faults,
        state_file=state_file,
    )
    await simulator.start("127.0.0.1", 0)
    try:
        yield simulator
    finally:
        await simulator.stop()


def client_for(
    simulator: MaasSimulator, *, api_key: ApiKey | str | None = None, **overrides: Any
) -> MaasClient:
    """A client for ``simulator`` (its key unless ``api_key``), fast retries, no proxy from the
    environment; ``overrides`` go to :class:`MaasClient`."""
    options: dict[str, Any] = {"retry": FAST_RETRY, "trust_env": False, "timeout": 5.0}
    options.update(overrides)
    return MaasClient(simulator.url, api_key or simulator.api_key, **options)
