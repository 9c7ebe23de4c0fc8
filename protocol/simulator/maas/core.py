"""What the simulated MAAS does, without HTTP: allocate, deploy, release, and the timers that
move a machine from Deploying to Deployed and from Releasing to Ready.

Hooks for embedding code (tests, the end-to-end harness):

* ``on_deployed(machine, user_data)``: called once a machine reaches Deployed, with the machine
  and its cloud-init user_data decoded to text (None if the deploy carried none). May be a plain
  function or return an awaitable, which is run as a task and cancelled on stop. Exceptions are
  logged, never raised into the simulator.
* ``on_released(machine)``: the same, when a machine is back to Ready after a release.

The machine passed is the simulator's live object: read it, do not change it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.maas.apikey import ApiKey
from protocol.maas.models import NodeStatus, PowerState
from protocol.simulator.maas.boot import AgentBooter
from protocol.simulator.maas.constraints import NodeQuery
from protocol.simulator.maas.faults import Faults
from protocol.simulator.maas.inventory import Inventory
from protocol.simulator.maas.oauth import OAuthVerifier
from protocol.simulator.maas.state import (
    RELEASE_NOOP,
    TRANSITIONS,
    Event,
    IllegalTransition,
    SimMachine,
    SimState,
    transition,
)

__all__ = [
    "DeployedHook",
    "NoAddressAvailable",
    "NoMachineAvailable",
    "ReleasedHook",
    "SimulatorCore",
    "Timings",
]

log = logging.getLogger("protocol.simulator.maas")

DeployedHook = Callable[[SimMachine, str | None], Awaitable[None] | None]
ReleasedHook = Callable[[SimMachine], Awaitable[None] | None]

KNOWN_SERIES = ("bionic", "focal", "jammy", "noble")
DEFAULT_SERIES = "jammy"
OWNER = "admin"


@dataclass(frozen=True, slots=True)
class Timings:
    """Seconds a simulated machine spends Deploying and Releasing."""

    deploy: float = 20.0
    release: float = 3.0

    def __post_init__(self) -> None:
        if self.deploy < 0 or self.release < 0:
            raise ValueError(
                f"timings must be >= 0 seconds, got deploy={self.deploy} release={self.release}"
            )

    @classmethod
    def fast(cls) -> Timings:
        """For tests: a deployment takes a tenth of a second."""
        return cls(deploy=0.1, release=0.05)


class NoMachineAvailable(Exception):
    """allocate found nothing; ``str()`` is MAAS's 409 text."""


class NoAddressAvailable(Exception):
    """deploy found no free address in the machine's subnet; ``str()`` is the 503 text."""


class SimulatorCore:
    def __init__(
        self,
        *,
        inventory: Inventory,
        api_keys: Iterable[ApiKey],
        timings: Timings,
        faults: Faults,
        state_file: Path | None,
        on_deployed: DeployedHook | None = None,
        on_released: ReleasedHook | None = None,
    ) -> None:
        self.timings = timings
        self.faults = faults
        self.verifier = OAuthVerifier(api_keys)
        self.state_file = state_file
        self.on_deployed = on_deployed
        self.on_released = on_released
        if state_file is not None and state_file.exists():
            self.state = SimState.load(state_file)
            log.info("maas-sim.restored state_file=%s machines=%d", state_file, len(self.machines))
        else:
            self.state = SimState.fresh(inventory)
        self._timers: dict[str, asyncio.Task[None]] = {}
        self._hook_tasks: set[asyncio.Task[None]] = set()
        #: boots the agent of a deployed machine (boot.py); None unless boot_agents is on
        self.booter: AgentBooter | None = None

    @property
    def machines(self) -> dict[str, SimMachine]:
        return self.state.machines

    # -- lifecycle of the core itself ---------------------------------------------------

    def resume(self) -> None:
        """Restart the timers of machines that were mid-transition when the state was saved."""
        for machine in self.machines.values():
            if machine.status is NodeStatus.DEPLOYING:
                self._schedule(machine, self.timings.deploy, self._finish_deploy)
            elif machine.status is NodeStatus.RELEASING:
                self._schedule(machine, self.timings.release, self._finish_release)
            elif machine.status is NodeStatus.DEPLOYED and self.booter is not None:
                self.booter.deployed(machine)

    async def close(self) -> None:
        tasks = [*self._timers.values(), *self._hook_tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._timers.clear()
        self._hook_tasks.clear()
        if self.booter is not None:
            await self.booter.close()
        self.save()

    def save(self, path: Path | None = None) -> Path | None:
        target = path or self.state_file
        if target is not None:
            self.state.save(target)
        return target

    # -- operations ---------------------------------------------------------------------

    def allocate(
        self, query: NodeQuery, *, agent_name: str, comment: str | None, dry_run: bool
    ) -> SimMachine:
        ready = [m for m in self.machines.values() if m.status is NodeStatus.READY]
        candidates = [m for m in ready if query.matches(m)]
        if not candidates:
            raise NoMachineAvailable()
        # MAAS picks the cheapest: cpu_count + memory / 1024 (AcquireNodeForm)
        machine = min(candidates, key=lambda m: m.spec.cpu_count + m.spec.memory / 1024.0)
        if not dry_run:
            machine.apply(Event.ALLOCATE)
            machine.owner = OWNER
            machine.agent_name = agent_name
            machine.status_message = f"From 'Ready' to 'Allocated' (to {OWNER})"
            log.info(
                "maas-sim.allocated system_id=%s hostname=%s agent_name=%s comment=%s",
                machine.system_id,
                machine.hostname,
                agent_name or "-",
                comment or "-",
            )
            self.save()
        return machine

    def deploy(
        self,
        machine: SimMachine,
        *,
        user_data: bytes | None,
        distro_series: str | None,
        hwe_kernel: str | None,
        agent_name: str,
    ) -> SimMachine:
        """Raises IllegalTransition (409), NoAddressAvailable (503)."""
        was_ready = machine.status is NodeStatus.READY
        next_status = transition(machine.status, Event.DEPLOY)
        address = machine.ip_address or self.state.assign_address(machine)
        subnet = self.state.subnet(machine.spec.subnet_id)
        if address is None and subnet is not None:
            raise NoAddressAvailable(f"No more IPs available in subnet: {subnet.cidr}.")
        machine.status = next_status
        if was_ready:
            machine.owner = OWNER
            machine.agent_name = agent_name
        osystem, _, series = (distro_series or DEFAULT_SERIES).rpartition("/")
        machine.osystem = osystem or "ubuntu"
        machine.distro_series = series
        machine.hwe_kernel = hwe_kernel
        machine.user_data = user_data
        machine.ip_address = address
        machine.power_state = PowerState.ON
        machine.status_message = "Deploying"
        machine.deployments += 1
        log.info(
            "maas-sim.deploying system_id=%s hostname=%s series=%s user_data_bytes=%d",
            machine.system_id,
            machine.hostname,
            machine.distro_series,
            0 if user_data is None else len(user_data),
        )
        self._schedule(machine, self.timings.deploy, self._finish_deploy)
        self.save()
        return machine

    def release(self, machine: SimMachine, *, comment: str | None = None) -> SimMachine:
        """Raises IllegalTransition (409). Ready or Releasing machines are left alone."""
        if machine.status in RELEASE_NOOP:
            return machine
        machine.apply(Event.RELEASE)
        machine.status_message = "Releasing"
        if self.booter is not None:
            self.booter.released(machine)  # a release powers the machine off
        log.info(
            "maas-sim.releasing system_id=%s hostname=%s comment=%s",
            machine.system_id,
            machine.hostname,
            comment or "-",
        )
        self._schedule(machine, self.timings.release, self._finish_release)
        self.save()
        return machine

    def release_many(self, machines: list[SimMachine], *, comment: str | None) -> list[str]:
        """All or nothing, like MAAS: any machine that cannot be released fails the call."""
        failed = [
            f"{m.system_id} ('{m.status.label}')"
            for m in machines
            if m.status not in RELEASE_NOOP and m.status not in _RELEASABLE
        ]
        if failed:
            raise IllegalTransition(
                "Machine(s) cannot be released in their current state: " + ", ".join(failed) + "."
            )
        released = []
        for machine in machines:
            if machine.status not in RELEASE_NOOP:
                self.release(machine, comment=comment)
                released.append(machine.system_id)
        return released

    # -- timers ---------------------------------------------------------------------------

    def _schedule(
        self, machine: SimMachine, delay: float, step: Callable[[SimMachine], None]
    ) -> None:
        previous = self._timers.pop(machine.system_id, None)
        if previous is not None:
            previous.cancel()
        self._timers[machine.system_id] = asyncio.get_running_loop().create_task(
            self._after(delay, machine, step), name=f"maas-sim-{machine.hostname}"
        )

    async def _after(
        self, delay: float, machine: SimMachine, step: Callable[[SimMachine], None]
    ) -> None:
        await asyncio.sleep(delay)
        self._timers.pop(machine.system_id, None)
        step(machine)

    def _finish_deploy(self, machine: SimMachine) -> None:
        if machine.status is not NodeStatus.DEPLOYING:
            return
        if self.faults.should_fail_deploy(machine.system_id, machine.hostname):
            machine.apply(Event.DEPLOY_FAILED)
            machine.status_message = "Failed deployment: installation failed (simulated fault)"
            log.warning(
                "maas-sim.deploy-failed system_id=%s hostname=%s",
                machine.system_id,
                machine.hostname,
            )
            self.save()
            return
        machine.apply(Event.DEPLOYED)
        machine.status_message = "Deployed"
        log.info(
            "maas-sim.deployed system_id=%s hostname=%s ip=%s",
            machine.system_id,
            machine.hostname,
            machine.ip_address,
        )
        self.save()
        if self.booter is not None:
            self.booter.deployed(machine)
        if self.on_deployed is not None:
            self._run_hook("on_deployed", self.on_deployed, machine, machine.user_data_text)

    def _finish_release(self, machine: SimMachine) -> None:
        if machine.status is not NodeStatus.RELEASING:
            return
        machine.apply(Event.RELEASED)
        machine.owner = None
        machine.agent_name = ""
        machine.ip_address = None
        machine.power_state = PowerState.OFF
        machine.osystem = ""
        machine.distro_series = ""
        machine.hwe_kernel = None
        machine.status_message = "Released"
        log.info("maas-sim.released system_id=%s hostname=%s", machine.system_id, machine.hostname)
        self.save()
        if self.on_released is not None:
            self._run_hook("on_released", self.on_released, machine)

    def _run_hook(self, name: str, hook: Callable[..., Any], *args: Any) -> None:
        try:
            result = hook(*args)
        except Exception:
            log.exception("maas-sim.hook-failed hook=%s", name)
            return
        if inspect.isawaitable(result):
            task = asyncio.get_running_loop().create_task(self._await_hook(name, result))
            self._hook_tasks.add(task)
            task.add_done_callback(self._hook_tasks.discard)

    async def _await_hook(self, name: str, awaitable: Awaitable[Any]) -> None:
        try:
            await awaitable
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("maas-sim.hook-failed hook=%s", name)


#: statuses a release can start from (per the transition table)
_RELEASABLE = frozenset(status for status, event in TRANSITIONS if event is Event.RELEASE)
