"""Boot agents: a simulated machine that reaches Deployed runs the gateway agent its cloud-init
user_data describes, as a local ``pcg-agent`` subprocess, so a whole install runs on one host.

Turned on with ``MaasSimulator(..., boot_agents=True)`` or ``pcg-sim maas --boot-agents``.

What "booting" does with a deployed machine's user_data (a ``#cloud-config`` document):

1. Find the ``write_files`` entry at :data:`AGENT_CONFIG_PATH`. No such entry (a tenant
   machine, no user_data): nothing is started.
2. Give the machine a directory ``<boot dir>/<hostname>/`` with a ``rootfs/`` in it, and write
   every ``write_files`` entry there (``/etc/pcg/ca.pem`` -> ``rootfs/etc/pcg/ca.pem``), with
   its permissions. Paths that would leave ``rootfs/`` are refused.
3. Rewrite the agent config for this host: ``state_dir`` -> ``<machine dir>/state`` (each
   machine keeps its own credential), and every value naming a file written in step 2 (such as
   ``ca_bundle: /etc/pcg/ca.pem``) -> that file under ``rootfs/``.
4. Start ``pcg-agent -c <machine dir>/rootfs/etc/pcg/agent.yaml`` (the ``pcg-agent`` next to
   ``sys.executable``) in its own session, stdout and stderr appended to
   ``<machine dir>/agent.log``, with this process's environment minus every ``PCG_*`` variable
   (so the agent sees exactly its cloud-init config). ``packages`` and ``runcmd`` are not run:
   the agent is already installed here.

The agent is stopped (SIGTERM, then SIGKILL after ``stop_timeout``) when its machine is
released (a real release powers the machine off) and when the simulator stops. The boot
directory is a fresh temporary directory unless one is given (``boot_dir=`` /
``--boot-dir``); a given one is kept, with the agents' logs and credentials.

``protocol`` never imports ``agent``: the config path is kept here as a constant, the same one
``agent/cloudinit.py`` writes.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from protocol.simulator.maas.state import SimMachine

__all__ = ["AGENT_CONFIG_PATH", "AgentBooter", "BootError", "BootPlan", "plan_boot"]

log = logging.getLogger("protocol.simulator.maas.boot")

#: where the gateway node's cloud-init writes the agent config (agent/cloudinit.py,
#: AGENT_CONFIG_PATH); kept here because protocol never imports agent
AGENT_CONFIG_PATH = "/etc/pcg/agent.yaml"


class BootError(ValueError):
    """The user_data cannot be booted; the message says what is wrong with it."""


@dataclass(frozen=True, slots=True)
class WrittenFile:
    path: str
    content: bytes
    mode: int


@dataclass(frozen=True, slots=True)
class BootPlan:
    """What booting a machine needs: its files and the agent config, as found in user_data."""

    files: tuple[WrittenFile, ...]
    agent_config: Mapping[str, Any]


def plan_boot(user_data: str | None) -> BootPlan | None:
    """Parse a cloud-config; None when it carries no agent config (nothing to boot)."""
    if not user_data or not user_data.lstrip().startswith("#cloud-config"):
        return None
    try:
        document = yaml.safe_load(user_data)
    except yaml.YAMLError as exc:
        raise BootError(f"the user_data is not valid YAML: {exc}") from None
    entries = document.get("write_files") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        return None
    files: list[WrittenFile] = []
    config: Any = None
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise BootError(f"a write_files entry has no path: {entry!r:.200}")
        content = _content(entry)
        try:
            mode = int(str(entry.get("permissions", "0644")), 8)
        except ValueError:
            raise BootError(
                f"write_files {entry['path']}: permissions {entry.get('permissions')!r} is not "
                "octal"
            ) from None
        files.append(WrittenFile(entry["path"], content, mode))
        if entry["path"] == AGENT_CONFIG_PATH:
            try:
                config = yaml.safe_load(content)
            except yaml.YAMLError as exc:
                raise BootError(f"{AGENT_CONFIG_PATH} in user_data is not YAML: {exc}") from None
            if not isinstance(config, dict):
                raise BootError(f"{AGENT_CONFIG_PATH} in user_data is not a map of settings")
    if config is None:
        return None
    return BootPlan(tuple(files), config)


def _content(entry: Mapping[str, Any]) -> bytes:
    content = entry.get("content", "")
    encoding = str(entry.get("encoding", "")).lower()
    if encoding in ("b64", "base64"):
        try:
            return base64.b64decode(str(content), validate=True)
        except ValueError:
            raise BootError(f"write_files {entry['path']}: content is not base64") from None
    if encoding not in ("", "text/plain"):
        raise BootError(f"write_files {entry['path']}: encoding {encoding!r} is not supported")
    return str(content).encode("utf-8")


def default_agent_command() -> list[str]:
    return [str(Path(sys.executable).parent / "pcg-agent")]


@dataclass
class BootedAgent:
    machine: str
    directory: Path
    process: subprocess.Popen[bytes]

    @property
    def log_path(self) -> Path:
        return self.directory / "agent.log"


class AgentBooter:
    """Starts and stops the agents of deployed simulated machines (module docstring)."""

    def __init__(
        self,
        boot_dir: str | Path | None = None,
        *,
        command: Sequence[str] | None = None,
        stop_timeout: float = 15.0,
    ) -> None:
        self._owns_dir = boot_dir is None
        self.root = Path(boot_dir) if boot_dir else Path(tempfile.mkdtemp(prefix="pcg-maas-boot-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.command = list(command or default_agent_command())
        self.stop_timeout = stop_timeout
        self.agents: dict[str, BootedAgent] = {}
        self._stopping: set[asyncio.Task[None]] = set()

    def machine_dir(self, machine: SimMachine) -> Path:
        return self.root / machine.hostname

    def log_path(self, machine: SimMachine) -> Path:
        return self.machine_dir(machine) / "agent.log"

    # -- hooks (called by the simulator core) ---------------------------------------------

    def deployed(self, machine: SimMachine) -> None:
        """Boot the agent of a machine that reached Deployed; errors are logged, not raised."""
        try:
            plan = plan_boot(machine.user_data_text)
        except BootError as exc:
            log.warning("maas-sim.boot-refused hostname=%s error=%s", machine.hostname, exc)
            return
        if plan is None:
            log.info("maas-sim.boot-nothing hostname=%s (no agent config in user_data)",
                     machine.hostname)  # fmt: skip
            return
        self._stop_now(machine.system_id)
        try:
            agent = self._start(machine, plan)
        except (OSError, BootError) as exc:
            log.error("maas-sim.boot-failed hostname=%s error=%s", machine.hostname, exc)
            return
        self.agents[machine.system_id] = agent
        log.info(
            "maas-sim.booted hostname=%s pid=%d log=%s",
            machine.hostname,
            agent.process.pid,
            agent.log_path,
        )

    def released(self, machine: SimMachine) -> None:
        """The machine powers off: stop its agent (in the background)."""
        agent = self.agents.pop(machine.system_id, None)
        if agent is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            _terminate_blocking(agent, self.stop_timeout)
            return
        task = loop.create_task(_terminate(agent, self.stop_timeout))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def close(self) -> None:
        """Stop every agent and wait for them; remove the boot dir if it was a temporary one."""
        agents, self.agents = list(self.agents.values()), {}
        await asyncio.gather(
            *(_terminate(agent, self.stop_timeout) for agent in agents),
            *self._stopping,
            return_exceptions=True,
        )
        if self._owns_dir:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- internals ------------------------------------------------------------------------

    def _stop_now(self, system_id: str) -> None:
        agent = self.agents.pop(system_id, None)
        if agent is not None:
            _terminate_blocking(agent, self.stop_timeout)

    def _start(self, machine: SimMachine, plan: BootPlan) -> BootedAgent:
        directory = self.machine_dir(machine)
        rootfs = directory / "rootfs"
        written: dict[str, Path] = {}
        for item in plan.files:
            target = _inside(rootfs, item.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(item.content)
            os.chmod(target, item.mode & 0o777)
            written[item.path] = target
        config: dict[str, Any] = {}
        for key, value in plan.agent_config.items():
            if isinstance(value, str) and value in written:
                value = str(written[value])
            config[key] = value
        state = directory / "state"
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        config["state_dir"] = str(state)
        config_path = written[AGENT_CONFIG_PATH]
        config_path.write_text(yaml.safe_dump(config, sort_keys=True), encoding="utf-8")
        os.chmod(config_path, 0o600)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PCG_")}
        with open(directory / "agent.log", "ab") as log_file:
            process = subprocess.Popen(
                [*self.command, "-c", str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=directory,
                start_new_session=True,
            )
        return BootedAgent(machine.hostname, directory, process)


def _inside(rootfs: Path, path: str) -> Path:
    pure = PurePosixPath(path)
    if not pure.is_absolute() or ".." in pure.parts:
        raise BootError(f"write_files path {path!r} must be absolute, without '..'")
    return rootfs.joinpath(*pure.parts[1:])


async def _terminate(agent: BootedAgent, grace: float) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; the wait runs in a thread."""
    await asyncio.to_thread(_terminate_blocking, agent, grace)
    log.info("maas-sim.agent-stopped hostname=%s code=%s", agent.machine, agent.process.returncode)


def _terminate_blocking(agent: BootedAgent, grace: float) -> None:
    process = agent.process
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        log.warning("maas-sim.agent-kill hostname=%s (no exit after SIGTERM)", agent.machine)
        process.kill()
        process.wait()
