"""``gateway.resize``: the gateway's own nodes, held in MAAS under ``pcg-gw:<gateway_name>``.

* **Agent name.** Gateway nodes are allocated with ``agent_name = "pcg-gw:<gateway_name>"``
  (:func:`gateway_agent_name`; the installer uses the same name).
* **Resize** only goes 1 -> 3. The current size is the number of machines held under the
  gateway's agent name, or ``config.node_count`` when MAAS holds none (a gateway installed
  without that agent name). New nodes are chosen before anything is allocated: when MAAS lacks
  two qualifying Ready machines the call fails with ``failed_precondition`` and nothing is
  touched. On a later failure only the nodes this resize added are released, never a Deployed
  gateway node.
* **Requirements.** Which machines qualify is :mod:`agent.node_requirements`, which the
  installer's preflight asks too, so both agree on every machine.
* **Secrets.** A new node's cloud-init carries what it needs to register (pairing code, MAAS
  key), never this agent's credential.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from agent.cloudinit import render_gateway_user_data
from agent.config import AgentConfig
from agent.maas_access import OpenMaas, run_once
from agent.maas_errors import invalid_argument, maas_error_to_rpc
from agent.machine_work import HELD, Deployer, MachineWork, ref_name, state_of
from agent.node_requirements import requirement_text, shortfalls
from agent.operations import EmitProgress, OperationRegistry
from agent.rpc import Progress
from protocol.exceptions import RpcError
from protocol.maas.client import MaasClient
from protocol.maas.exceptions import NoMatchingMachine
from protocol.maas.models import Machine, NodeStatus
from protocol.rpc import Request, RpcErrorCode

__all__ = [
    "GATEWAY_AGENT_PREFIX",
    "GATEWAY_POOL_LABEL",
    "GatewayNodes",
    "gateway_agent_name",
]

log = logging.getLogger("pcg.agent.maas")

GATEWAY_AGENT_PREFIX: Final = "pcg-gw:"
GATEWAY_POOL_LABEL: Final = "gateway"

#: why a machine does not qualify as a gateway node, in the order the error lists them
_REASONS: Final = {
    "cpu": "too few CPUs",
    "memory": "too little memory",
    "storage": "too little storage",
    "placement": "wrong zone/pool",
    "status": "not Ready",
}


def gateway_agent_name(gateway_name: str) -> str:
    """The MAAS agent name of a gateway's nodes (installer and resize alike)."""
    return f"{GATEWAY_AGENT_PREFIX}{gateway_name}"


@dataclass(eq=False, slots=True)
class GatewayNodes:
    """The ``gateway.resize`` RPC method (:meth:`resize`) of the gateway ``config`` names."""

    config: AgentConfig
    registry: OperationRegistry
    open_maas: OpenMaas
    deployer: Deployer
    #: one resize at a time
    _resize_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    @property
    def agent_name(self) -> str:
        return gateway_agent_name(self.config.gateway_name)

    @property
    def _comment(self) -> str:
        """The MAAS comment on a gateway node's allocation and deployment."""
        return f"gateway {self.config.gateway_name} node"

    async def resize(self, request: Request, progress: Progress) -> dict[str, Any]:
        size = request.params.get("size")
        if isinstance(size, bool) or size not in (1, 3):
            raise invalid_argument(f"size={size!r}: a gateway has 1 node (no HA) or 3 (HA)")
        assert isinstance(size, int)
        return await run_once(
            self.registry, request, progress, lambda emit: self._resize(size, emit)
        )

    async def _resize(self, size: int, emit: EmitProgress) -> dict[str, Any]:
        agent_name = self.agent_name
        async with self._resize_lock, self.open_maas() as maas:
            held = [m for m in await maas.list_machines(agent_name=agent_name) if m.status in HELD]
            current = len(held) if held else self.config.node_count
            if size < current:
                raise RpcError(
                    RpcErrorCode.FAILED_PRECONDITION,
                    f"gateway {self.config.gateway_name} has {current} nodes; shrinking to "
                    f"{size} is not supported (etcd needs its quorum): only 1 -> 3 is",
                )
            need = size - current
            work = MachineWork(emit)
            for machine in held:
                if machine.status is not NodeStatus.DEPLOYED:
                    await work.add(machine, GATEWAY_POOL_LABEL, state_of(machine) or "")
            if need == 0 and not work.machines:
                return {"nodes": [_node_result(m) for m in held]}
            if need:
                self._check_node_config()
                chosen = await self._choose_machines(maas, size, need)
            else:
                chosen = []
            log.info(
                "gateway.resize gateway=%s from=%d to=%d resumed=%d",
                self.config.gateway_name,
                current,
                size,
                len(work.machines),
            )
            try:
                await self._allocate_nodes(maas, chosen, need, work)
                user_data = render_gateway_user_data(self.node_config())
                for tracked in list(work.machines.values()):
                    if tracked.state == "Allocated":
                        await self.deployer.deploy(
                            maas,
                            work,
                            tracked,
                            user_data,
                            agent_name=agent_name,
                            comment=self._comment,
                        )
                await self.deployer.wait_deployed(maas, work, self.deployer.poll_interval)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = maas_error_to_rpc(exc, f"gateway.resize of {self.config.gateway_name}")
                log.warning("gateway.resize failed error=%s", error)
                raise await self.deployer.fail(
                    maas, agent_name, work, error, only=list(work.machines)
                ) from exc
            nodes = [m for m in await maas.list_machines(agent_name=agent_name) if m.status in HELD]
        return {"nodes": [_node_result(m) for m in sorted(nodes, key=lambda m: m.hostname)]}

    def _check_node_config(self) -> None:
        missing = [
            name
            for name in ("pairing_code", "install_id", "maas_api_endpoint", "maas_api_key")
            if not getattr(self.config, name)
        ]
        if missing:
            raise RpcError(
                RpcErrorCode.FAILED_PRECONDITION,
                f"this agent's config lacks {', '.join(missing)}, which a new gateway node "
                "needs to register and reach MAAS; nothing was allocated",
            )

    def node_config(self) -> dict[str, Any]:
        """The agent config of a new gateway node: this agent's, for a 3-node gateway, without
        this agent's own credential (a new node registers with the pairing code and install id).
        The CA bundle is a path on this node, so it is not carried over."""
        config = self.config
        proxies = config.proxies
        return {
            "gateway_name": config.gateway_name,
            "hub_url": config.hub_url,
            "pairing_code": config.pairing_code,
            "install_id": config.install_id,
            "domain": config.domain,
            "zone": config.zone,
            "resource_pool": config.resource_pool,
            "node_count": 3,
            "maas_api_endpoint": config.maas_api_endpoint,
            "maas_api_key": config.maas_api_key,
            "https_proxy": proxies.https_proxy,
            "http_proxy": proxies.http_proxy,
            "no_proxy": proxies.no_proxy,
            "log_level": config.log_level,
            "log_format": config.log_format,
        }

    async def _choose_machines(self, maas: MaasClient, size: int, need: int) -> list[Machine]:
        """The Ready machines that qualify as gateway nodes; refuse when too few do."""
        zone, pool = self.config.zone, self.config.resource_pool
        qualified: list[Machine] = []
        reasons: dict[str, list[str]] = {}
        for machine in await maas.list_machines():
            why = [shortfall.kind for shortfall in shortfalls(machine)]
            if ref_name(machine.zone) != zone or ref_name(machine.pool) != pool:
                why.append("placement")
            for kind in why:
                reasons.setdefault(_REASONS[kind], []).append(
                    machine.hostname + (f" ({machine.status_label})" if kind == "status" else "")
                )
            if not why:
                qualified.append(machine)
        if len(qualified) < need:
            found = "; ".join(
                f"{len(reasons[r])} {r}: {', '.join(reasons[r][:4])}"
                + (", ..." if len(reasons[r]) > 4 else "")
                for r in _REASONS.values()
                if r in reasons
            )
            raise RpcError(
                RpcErrorCode.FAILED_PRECONDITION,
                f"resizing gateway {self.config.gateway_name} to {size} nodes needs {need} more "
                f"Ready machine(s) with {requirement_text()} in zone {zone!r} and resource pool "
                f"{pool!r}; MAAS has {len(qualified)} such machine(s). The others do not qualify "
                f"({found or 'none'}; a machine may be counted under several reasons). "
                "Commission, release or add machines that qualify, then resize again. Nothing "
                "was allocated.",
                {
                    "qualifying": len(qualified),
                    "needed": need,
                    "reasons": {r: len(hosts) for r, hosts in reasons.items()},
                },
            )
        # MAAS's own preference: the smallest machine that fits
        return sorted(qualified, key=lambda m: (m.cpu_count + m.memory / 1024, m.hostname))

    async def _allocate_nodes(
        self, maas: MaasClient, chosen: Sequence[Machine], need: int, work: MachineWork
    ) -> None:
        for machine in chosen:
            if need == 0:
                return
            try:
                allocated = await maas.allocate(
                    system_id=machine.system_id,
                    agent_name=self.agent_name,
                    comment=self._comment,
                )
            except NoMatchingMachine:
                continue  # taken since we looked: try the next one
            await work.add(allocated, GATEWAY_POOL_LABEL, "Allocated")
            need -= 1
        if need:
            raise RpcError(
                RpcErrorCode.FAILED_PRECONDITION,
                f"the Ready machines chosen for gateway {self.config.gateway_name} were taken "
                "by someone else meanwhile; resize again",
            )


def _node_result(machine: Machine) -> dict[str, Any]:
    return {
        "systemId": machine.system_id,
        "hostname": machine.hostname,
        "fqdn": machine.fqdn,
        "ip": machine.ip_addresses[0] if machine.ip_addresses else None,
        "state": machine.status_label,
    }
