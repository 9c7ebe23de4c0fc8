"""A simulated MAAS region (API 2.0) for tests and demos.

Python::

    from protocol.simulator.maas import MaasSimulator, Inventory, Timings
    async with MaasSimulator(Inventory.default(), timings=Timings.fast()) as sim:
        ...  # sim.url, sim.api_key, sim.faults, sim.on_deployed, sim.user_data("node-01")

Command line: ``pcg-sim maas --help``. Design notes and the control endpoint:
``protocol/maas/README.md``.
"""

from protocol.simulator.maas.core import DeployedHook, ReleasedHook, Timings
from protocol.simulator.maas.faults import Faults
from protocol.simulator.maas.inventory import Inventory, InventoryError
from protocol.simulator.maas.server import MaasSimulator, random_api_key
from protocol.simulator.maas.state import SimMachine

__all__ = [
    "DeployedHook",
    "Faults",
    "Inventory",
    "InventoryError",
    "MaasSimulator",
    "ReleasedHook",
    "SimMachine",
    "Timings",
    "random_api_key",
]
