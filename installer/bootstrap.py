"""Install the gateway: allocate and deploy its machines, then wait for Palette to see it.

1. Allocate ``node_count`` qualifying Ready machines of the zone + pool (smallest first, each
   by system_id, so what preflight counted is what gets taken), with
   ``agent_name = pcg-gw:<name>`` (the agent's resize uses the same).
2. Deploy them with a cloud-init user_data that installs and starts the agent with its config:
   the Palette tunnel URL, the pairing code and this install's id, the MAAS endpoint and key,
   proxies, domain/zone/pool, node count; and the Palette CA when one is configured. Never the
   Palette password: it is used only here, to sign in for status.
3. Wait for Deployed, machine by machine, with progress.
4. Check each machine's FQDN resolves from this host. The installer never logs in to the
   machines (the agent boots from cloud-init and dials out), so a name that does not resolve
   is a warning that explains MAAS DNS and delegation, not a failure.
5. Wait until Palette lists the gateway (by install id, else by name) as Running and its MAAS
   cloud account exists.

Any failure, Ctrl-C or SIGTERM: every machine this run allocated is released (and only
those), the configuration stays for a rerun, and the error says what to fix.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent.cloudinit import STATE_DIR, render_gateway_user_data
from installer.config import InstallConfig
from installer.exceptions import InstallFailed, InstallInterrupted, PaletteApiError, PaletteError
from installer.machines import Placement, Survey
from installer.palette import PaletteClient
from installer.progress import InstallProgress
from protocol.maas.client import MaasClient
from protocol.maas.exceptions import Conflict, MaasError
from protocol.maas.models import FAILURE_STATUSES, Machine, NodeStatus

log = logging.getLogger("pcg.installer")

#: where a node's cloud-init puts the Palette CA, for the agent's ca_bundle
NODE_CA_PATH = "/etc/pcg/ca.pem"
DISTRO_SERIES = "jammy"


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. MAAS clients poll a deploying machine every 3-5 s and give it 30 minutes."""

    poll_interval: float = 5.0
    deploy: float = 1800.0
    register: float = 900.0
    dns: float = 5.0

    def __post_init__(self) -> None:
        for name in ("poll_interval", "deploy", "register", "dns"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be > 0 seconds")


@dataclass(frozen=True, slots=True)
class Node:
    system_id: str
    hostname: str
    fqdn: str
    address: str
    resolves: bool


@dataclass(frozen=True, slots=True)
class InstallResult:
    install_id: str
    gateway_uid: str
    state: str
    cloud_account_uid: str
    nodes: tuple[Node, ...]
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "installId": self.install_id,
            "gatewayUid": self.gateway_uid,
            "state": self.state,
            "cloudAccountUid": self.cloud_account_uid,
            "nodes": [
                {
                    "systemId": n.system_id,
                    "hostname": n.hostname,
                    "fqdn": n.fqdn,
                    "address": n.address,
                    "fqdnResolves": n.resolves,
                }
                for n in self.nodes
            ],
            "warnings": list(self.warnings),
        }


def new_install_id() -> str:
    """128 random bits, hex: joins the nodes of one install at registration."""
    return secrets.token_hex(16)


def agent_config(config: InstallConfig, install_id: str) -> dict[str, Any]:
    """The agent's config (agent/config.py keys) for every node of this install."""
    values: dict[str, Any] = {
        "gateway_name": config.name,
        "hub_url": config.tunnel_url,
        "pairing_code": config.pairing_code,
        "install_id": install_id,
        "maas_api_endpoint": config.maas_endpoint,
        "maas_api_key": config.maas_api_key,
        "domain": config.domain,
        "zone": config.zone,
        "resource_pool": config.resource_pool,
        "node_count": config.node_count,
        "state_dir": STATE_DIR,
    }
    for key in ("https_proxy", "http_proxy", "no_proxy"):
        value = getattr(config, key)
        if value:
            values[key] = value
    if config.palette_ca_file:
        values["ca_bundle"] = NODE_CA_PATH
    return values


def user_data(config: InstallConfig, install_id: str) -> str:
    """The node's ``#cloud-config``: the agent's (agent/cloudinit.py), plus the CA file."""
    text = render_gateway_user_data(agent_config(config, install_id))
    if not config.palette_ca_file:
        return text
    document = yaml.safe_load(text)
    pem = Path(config.palette_ca_file).expanduser().read_text(encoding="utf-8")
    document["write_files"].insert(0, {"path": NODE_CA_PATH, "permissions": "0644",
                                       "content": pem})  # fmt: skip
    return "#cloud-config\n" + yaml.safe_dump(document, sort_keys=False)


@dataclass
class _Run:
    config: InstallConfig
    install_id: str
    progress: InstallProgress
    timeouts: Timeouts
    allocated: list[str] = field(default_factory=list)
    hostnames: dict[str, str] = field(default_factory=dict)
    released: list[str] = field(default_factory=list)
    unreleased: list[str] = field(default_factory=list)
    #: the machine of an allocate request in flight: it may be ours even if no answer came
    pending: str | None = None
    registered_overlord: bool = False
    warnings: list[str] = field(default_factory=list)


async def install(
    config: InstallConfig,
    *,
    install_id: str,
    progress: InstallProgress,
    timeouts: Timeouts | None = None,
) -> InstallResult:
    """Install the gateway; on any failure or cancellation release what was allocated and
    raise InstallFailed / InstallInterrupted."""
    config.validated()
    run = _Run(config, install_id, progress, timeouts or Timeouts())
    maas = MaasClient(config.maas_endpoint, config.maas_api_key)
    palette = PaletteClient(config.palette_endpoint, ca_file=config.palette_ca_file)
    try:
        try:
            await palette.login(config.username, config.password)
            machines = await _allocate(maas, run)
            deployed = await _deploy(maas, run, machines)
            nodes = await _check_names(run, deployed)
            uid, state, account = await _wait_for_palette(palette, run)
        except asyncio.CancelledError:
            await _release_in_new_task(maas, run, "interrupted")
            raise InstallInterrupted(
                f"the install was interrupted; {_released(run)}",
                hint=_hint(run, interrupted=True),
            ) from None
        except Exception as exc:  # whatever it is, the machines go back first
            await _release_in_new_task(maas, run, "failed")
            if isinstance(exc, InstallFailed | MaasError | PaletteError):
                message = str(exc)
            else:
                log.exception("install.unexpected")
                message = f"unexpected error ({exc.__class__.__name__}: {exc})"
            raise InstallFailed(f"{message}\n{_released(run)}", hint=_hint(run)) from None
    finally:
        await asyncio.gather(maas.close(), palette.close(), return_exceptions=True)
    return InstallResult(install_id, uid, state, account, tuple(nodes), tuple(run.warnings))


# -- steps ----------------------------------------------------------------------------------


async def _allocate(maas: MaasClient, run: _Run) -> list[Machine]:
    config = run.config
    run.progress.step(
        f"Allocating {config.node_count} machine(s) in zone {config.zone!r}, pool "
        f"{config.resource_pool!r} (MAAS owner tag {config.agent_name})"
    )
    ready = await maas.list_machines(
        zone=config.zone, pool=config.resource_pool, status=NodeStatus.READY
    )
    survey = Survey.of(ready, Placement(config.zone, config.resource_pool))
    taken: list[Machine] = []
    for candidate in survey.qualifying:
        if len(taken) == config.node_count:
            break
        run.pending = candidate.system_id
        try:
            machine = await maas.allocate(
                system_id=candidate.system_id,
                zone=config.zone,
                pool=config.resource_pool,
                agent_name=config.agent_name,
                comment=f"private cloud gateway {config.name}, install {run.install_id}",
            )
        except Conflict:
            log.info("install.allocate-lost system_id=%s", candidate.system_id)
            continue  # taken by someone else since the listing: try the next one
        run.allocated.append(machine.system_id)
        run.pending = None
        run.hostnames[machine.system_id] = machine.hostname
        log.info("install.allocated system_id=%s hostname=%s", machine.system_id, machine.hostname)
        run.progress.machine(machine.system_id, machine.hostname, "Allocated")
        taken.append(machine)
    if len(taken) < config.node_count:
        raise InstallFailed(
            f"only {len(taken)} of {config.node_count} machine(s) could be allocated: "
            + survey.explain(config.node_count)
        )
    return taken


async def _deploy(maas: MaasClient, run: _Run, machines: list[Machine]) -> list[Machine]:
    config = run.config
    document = user_data(config, run.install_id)
    run.progress.step(f"Deploying {len(machines)} machine(s) ({DISTRO_SERIES}) with the agent")
    for machine in machines:
        deployed = await maas.deploy(
            machine.system_id,
            distro_series=DISTRO_SERIES,
            user_data=document,
            agent_name=config.agent_name,
            comment=f"private cloud gateway {config.name}",
        )
        run.progress.machine(machine.system_id, machine.hostname, deployed.status_label)
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_wait_deployed(maas, run, m)) for m in machines]
    except* InstallFailed as failures:
        raise failures.exceptions[0] from None
    except* MaasError as failures:
        raise failures.exceptions[0] from None
    return [task.result() for task in tasks]


async def _wait_deployed(maas: MaasClient, run: _Run, machine: Machine) -> Machine:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + run.timeouts.deploy
    while True:
        current = await maas.get_machine(machine.system_id)
        address = current.ip_addresses[0] if current.ip_addresses else ""
        run.progress.machine(
            current.system_id, current.hostname, current.status_label, address=address
        )
        if current.status is NodeStatus.DEPLOYED:
            return current
        if current.status in FAILURE_STATUSES:
            run.progress.machine(current.system_id, current.hostname, "Failed")
            raise InstallFailed(
                f"machine {current.hostname} ({current.system_id}) went to "
                f"{current.status_label!r}"
                f"{': ' + current.status_message if current.status_message else ''}. Look at "
                "its events in MAAS (Machines > the machine > Events), fix the cause (network, "
                "image, storage), then rerun"
            )
        if loop.time() >= deadline:
            raise InstallFailed(
                f"machine {current.hostname} is still {current.status_label!r} after "
                f"{run.timeouts.deploy:g} s; follow its deployment in MAAS and rerun with a "
                "longer --deploy-timeout if it is only slow"
            )
        await asyncio.sleep(run.timeouts.poll_interval)


async def _check_names(run: _Run, machines: list[Machine]) -> list[Node]:
    loop = asyncio.get_running_loop()
    nodes = []
    for machine in machines:
        fqdn = machine.fqdn or f"{machine.hostname}.{run.config.domain}"
        try:
            async with asyncio.timeout(run.timeouts.dns):
                await loop.getaddrinfo(fqdn, None, type=socket.SOCK_STREAM)
            resolves = True
        except (OSError, TimeoutError):
            resolves = False
        address = machine.ip_addresses[0] if machine.ip_addresses else ""
        nodes.append(Node(machine.system_id, machine.hostname, fqdn, address, resolves))
    unresolved = [node.fqdn for node in nodes if not node.resolves]
    if unresolved:
        warning = (
            f"{', '.join(unresolved)} do(es) not resolve from this host. The install goes on "
            "(each agent dials out from its node; the installer never connects to the nodes), "
            f"but you will want the names: MAAS serves DNS for its zone {run.config.domain!r}. "
            "Use the MAAS server as this network's DNS server, or create a DNS delegation for "
            "that zone to the MAAS DNS server in your own DNS server"
        )
        run.warnings.append(warning)
        run.progress.warn(warning)
    return nodes


async def _wait_for_palette(palette: PaletteClient, run: _Run) -> tuple[str, str, str]:
    config = run.config
    run.progress.step(f"Waiting for Palette to show gateway {config.name!r} Running")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + run.timeouts.register
    last_state, last_error = "not registered", ""
    while True:
        try:
            overlord = _find_overlord(await palette.overlords(), run)
            account_uid = ""
            if overlord is not None:
                run.registered_overlord = True
                uid = str(overlord["metadata"]["uid"])
                state = str((overlord.get("status") or {}).get("state", "?"))
                if state != last_state:
                    run.progress.step(f"Palette: gateway {config.name!r} is {state}")
                    log.info("install.palette state=%s uid=%s", state, uid)
                    last_state = state
                account_uid = _account_of(await palette.cloud_accounts(), uid)
                if state == "Running" and account_uid:
                    for system_id, hostname in run.hostnames.items():
                        run.progress.machine(system_id, hostname, "Registered")
                    run.progress.step(f"Palette: MAAS cloud account {account_uid} created")
                    return uid, state, account_uid
        except PaletteApiError as exc:
            if exc.status == 401:
                await palette.login(config.username, config.password)  # token expired
            last_error = str(exc)
        except PaletteError as exc:
            last_error = str(exc)  # transient; try again until the deadline
        if loop.time() >= deadline:
            raise InstallFailed(
                f"Palette does not show gateway {config.name!r} Running with a MAAS cloud "
                f"account after {run.timeouts.register:g} s (last seen: {last_state}"
                f"{'; ' + last_error if last_error else ''}). The nodes must reach Palette at "
                f"{config.tunnel_url} (proxy, firewall, DNS); the agent's log on a node: "
                "journalctl -u pcg-agent"
            )
        await asyncio.sleep(run.timeouts.poll_interval)


def _find_overlord(overlords: list[dict[str, Any]], run: _Run) -> dict[str, Any] | None:
    by_name = None
    for overlord in overlords:
        metadata = overlord.get("metadata") or {}
        if (metadata.get("annotations") or {}).get("installId") == run.install_id:
            return overlord
        if metadata.get("name") == run.config.name:
            by_name = overlord
    return by_name


def _account_of(accounts: list[dict[str, Any]], overlord_uid: str) -> str:
    for account in accounts:
        metadata = account.get("metadata") or {}
        if (metadata.get("annotations") or {}).get("overlordUid") == overlord_uid:
            return str(metadata.get("uid", ""))
    return ""


# -- cleanup --------------------------------------------------------------------------------


async def _release_in_new_task(maas: MaasClient, run: _Run, why: str) -> None:
    """Release in a task of its own: the caller may be a cancelled task, and a release must
    finish even then."""
    await asyncio.get_running_loop().create_task(_release(maas, run, why))


async def _release(maas: MaasClient, run: _Run, why: str) -> None:
    if run.pending is not None:  # interrupted while allocating: did MAAS give it to us?
        try:
            ours = await maas.list_machines(agent_name=run.config.agent_name)
        except MaasError:
            ours = []
        for machine in ours:
            if machine.system_id == run.pending and machine.status is NodeStatus.ALLOCATED:
                run.allocated.append(machine.system_id)
                run.hostnames[machine.system_id] = machine.hostname
    if not run.allocated:
        return
    names = ", ".join(run.hostnames.get(i, i) for i in run.allocated)
    run.progress.step(f"Releasing the machine(s) this run allocated: {names}")
    try:
        await maas.release(run.allocated, comment=f"pcg-installer: install {why}")
    except MaasError as exc:
        log.error("install.release-failed ids=%s error=%s", ",".join(run.allocated), exc)
        # one by one: a machine in a state that cannot be released must not keep the others
        failed = []
        for system_id in run.allocated:
            try:
                await maas.release_machine(system_id, comment=f"pcg-installer: install {why}")
            except MaasError:
                failed.append(system_id)
        run.unreleased = failed
    run.released = [i for i in run.allocated if i not in run.unreleased]
    for system_id in run.released:
        run.progress.machine(system_id, run.hostnames.get(system_id, system_id), "Released")
    log.info("install.released ids=%s", ",".join(run.released))


def _released(run: _Run) -> str:
    if not run.allocated:
        return "No machine had been allocated."
    parts = []
    if run.released:
        names = ", ".join(run.hostnames.get(i, i) for i in run.released)
        parts.append(f"Released the machine(s) this run allocated: {names}.")
    if run.unreleased:
        names = ", ".join(run.hostnames.get(i, i) for i in run.unreleased)
        parts.append(
            f"Could NOT release {names}: release them in MAAS (Machines, filter by owner tag "
            f"{run.config.agent_name}, Release)."
        )
    return " ".join(parts)


def _hint(run: _Run, *, interrupted: bool = False) -> str:
    lines = []
    if run.registered_overlord:
        lines.append(
            f"The pairing code was used by this attempt: delete gateway {run.config.name!r} in "
            "Palette (Tenant Settings > Private Cloud Gateways), get a new pairing code and put "
            "it into palette.pairingCode before rerunning."
        )
    elif not interrupted:
        lines.append("Fix the cause above (pcg.yaml can be edited), then rerun.")
    return " ".join(lines)
