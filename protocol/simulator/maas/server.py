"""``MaasSimulator``: a MAAS region you can start inside a test (or from ``pcg-sim maas``).

::

    sim = MaasSimulator(Inventory.default(), api_key="ck:tk:secret", timings=Timings.fast())
    url = await sim.start("127.0.0.1", 0)        # -> "http://127.0.0.1:40123/MAAS"
    sim.faults.unavailable(2, retry_after=1)     # the next two API requests get 503
    sim.on_deployed = lambda machine, user_data: ...
    ...
    await sim.stop()

or ``async with MaasSimulator(...) as sim:`` (starts on 127.0.0.1, a free port). Without an
``api_key`` a random one is made; read it from :attr:`api_key`.
"""

from __future__ import annotations

import secrets
import string
from pathlib import Path
from types import TracebackType

from aiohttp import web

from protocol.maas.apikey import ApiKey
from protocol.simulator.maas.app import build_app
from protocol.simulator.maas.boot import AgentBooter
from protocol.simulator.maas.core import DeployedHook, ReleasedHook, SimulatorCore, Timings
from protocol.simulator.maas.faults import Faults
from protocol.simulator.maas.inventory import Inventory
from protocol.simulator.maas.state import SimMachine

__all__ = ["MaasSimulator", "random_api_key"]


def random_api_key() -> ApiKey:
    """A key shaped like MAAS's: 18, 18 and 32 letters and digits."""
    alphabet = string.ascii_letters + string.digits

    def part(length: int) -> str:
        return "".join(secrets.choice(alphabet) for _ in range(length))

    return ApiKey(part(18), part(18), part(32))


class MaasSimulator:
    def __init__(
        self,
        inventory: Inventory | None = None,
        api_key: ApiKey | str | None = None,
        timings: Timings | None = None,
        *,
        faults: Faults | None = None,
        state_file: str | Path | None = None,
        on_deployed: DeployedHook | None = None,
        on_released: ReleasedHook | None = None,
        boot_agents: bool = False,
        boot_dir: str | Path | None = None,
    ) -> None:
        """``state_file``: loaded at construction if it exists (it then wins over
        ``inventory``), written after every change and on stop. ``boot_agents``: a machine
        that reaches Deployed runs the agent of its cloud-init user_data as a subprocess
        (see boot.py), with its files and log under ``boot_dir`` (default: a temporary dir)."""
        if api_key is None:
            key = random_api_key()
        elif isinstance(api_key, ApiKey):
            key = api_key
        else:
            key = ApiKey.parse(api_key)
        self.api_key = key
        self.core = SimulatorCore(
            inventory=inventory or Inventory.default(),
            api_keys=[key],
            timings=timings or Timings(),
            faults=faults or Faults(),
            state_file=None if state_file is None else Path(state_file),
            on_deployed=on_deployed,
            on_released=on_released,
        )
        if boot_agents:
            self.core.booter = AgentBooter(boot_dir)
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    # -- run ------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0: a free port); returns the MAAS endpoint URL."""
        if self._runner is not None:
            raise RuntimeError(f"MaasSimulator already running at {self._url}")
        runner = web.AppRunner(build_app(self.core), handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        bound = runner.addresses[0]
        bound_host = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        self._url = f"http://{bound_host}:{bound[1]}/MAAS"
        self.core.resume()
        return self._url

    async def stop(self) -> None:
        """Stop listening, cancel timers and hook tasks, write the state file if any."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        await self.core.close()

    async def __aenter__(self) -> MaasSimulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- inspect and steer ----------------------------------------------------------------

    @property
    def url(self) -> str:
        """The MAAS endpoint, e.g. ``http://127.0.0.1:40123/MAAS``."""
        if self._url is None:
            raise RuntimeError("MaasSimulator is not running; await start() first")
        return self._url

    @property
    def control_url(self) -> str:
        return self.url + "/sim/"

    @property
    def faults(self) -> Faults:
        return self.core.faults

    @property
    def timings(self) -> Timings:
        return self.core.timings

    @timings.setter
    def timings(self, value: Timings) -> None:
        self.core.timings = value

    @property
    def on_deployed(self) -> DeployedHook | None:
        return self.core.on_deployed

    @on_deployed.setter
    def on_deployed(self, hook: DeployedHook | None) -> None:
        self.core.on_deployed = hook

    @property
    def on_released(self) -> ReleasedHook | None:
        return self.core.on_released

    @on_released.setter
    def on_released(self, hook: ReleasedHook | None) -> None:
        self.core.on_released = hook

    @property
    def booter(self) -> AgentBooter | None:
        """The agent booter when ``boot_agents`` is on (its ``agents``, ``log_path()``)."""
        return self.core.booter

    @property
    def machines(self) -> list[SimMachine]:
        return list(self.core.machines.values())

    def machine(self, ident: str) -> SimMachine:
        """By system_id, hostname or fqdn; KeyError if unknown."""
        machine = self.core.state.find(ident)
        if machine is None:
            raise KeyError(f"no simulated machine {ident!r}")
        return machine

    def user_data(self, ident: str) -> str | None:
        """The cloud-init user_data the machine was last deployed with, decoded."""
        return self.machine(ident).user_data_text

    def add_api_key(self, key: ApiKey | str) -> ApiKey:
        parsed = key if isinstance(key, ApiKey) else ApiKey.parse(key)
        self.core.verifier.add_key(parsed)
        return parsed

    def save_state(self, path: str | Path | None = None) -> Path:
        """Write the state (to ``path``, else the configured state file)."""
        target = self.core.save(None if path is None else Path(path))
        if target is None:
            raise ValueError("no state file configured; pass a path")
        return target
