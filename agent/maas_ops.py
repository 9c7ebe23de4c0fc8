"""The agent's MAAS methods: what Palette asks of the gateway over the tunnel, done with MAAS's API.

The contract (params, progress events, results) is the table "The agent's RPC methods" in the
Palette simulator's README. Wiring::

    ops = MaasOperations(config)
    rpc = AgentRpc({...})
    rpc.update(ops.methods())
    ...
    await ops.close()      # on shutdown: stops operations under way (they resume on retry)

Decisions worth knowing:

* **Machine ownership.** Tenant machines are allocated with ``agent_name = clusterUid``; gateway
  nodes with ``agent_name = "pcg-gw:<gateway_name>"`` (the installer uses the same name). MAAS
  keeps the agent name until the machine is released, so it is the durable record of what a
  cluster holds: a retried or resumed ``cluster.create`` (same key after a cut tunnel, or after
  an agent restart that lost the operation registry) first adopts what MAAS already holds for the
  cluster and only allocates what is missing.
* **Adoption.** Held machines go to the machine pools control-plane pools first; within that, the
  machines that fit the fewest pools are placed first, each into the first pool whose
  constraints it meets (CPU, memory, boot disk, zone, resource pool, tags). Machines that fit no
  pool, or exceed a pool's size, are released.
* **Zones.** A pool with several ``azs`` is spread over them: each new machine goes to the zone
  holding the fewest of that pool's machines (ties: list order); when MAAS has no match there
  the other zones are tried before giving up. No ``azs``: no zone constraint.
* **Storage.** ``minDiskSizeInGB`` becomes MAAS's storage constraint ``root:<GB>``, which MAAS
  applies to the boot disk; adoption compares the boot disk too. The resize check compares a
  machine with agent/node_requirements.py, exactly as the installer's preflight does
  (``installer/machines.py``), so both agree on which machines qualify. ``minCPU`` or
  ``minMemInMB`` of 0 means no constraint.
* **Failure.** Any failure of ``cluster.create`` (no matching machine, a failed or timed out
  deployment, MAAS unreachable...) releases every machine with the cluster's agent name and
  fails with MAAS's message. Cancellation (agent shutdown) does *not* release: the work is
  resumable. ``cluster.delete`` of a cluster whose create is under way stops that create first
  (it then fails with ``cancelled``).
* **Resize.** ``gateway.resize`` only goes 1 -> 3. The current size is the number of machines
  held under the gateway's agent name, or ``config.node_count`` when MAAS holds none (a gateway
  installed without that agent name). New nodes are chosen before anything is allocated: when
  MAAS lacks two qualifying Ready machines the call fails with ``failed_precondition`` and
  nothing is touched. On a later failure only the nodes this resize added are released, never a
  Deployed gateway node.
* **Errors.** :func:`maas_error_to_rpc` is the one mapping of MAAS client errors to RPC codes.
* **Secrets.** The MAAS key is never logged (the client redacts MAAS's replies; the key is also
  registered with :mod:`agent.logs`). Tenant cloud-init carries no secret; a gateway node's
  carries what a node needs to register (pairing code, MAAS key), never the agent's credential.

Where each part lives (this module is the facade that builds and wires them)::

    agent/maas_errors.py      maas_error_to_rpc, invalid_argument
    agent/maas_access.py      open_maas (one MAAS client per operation), run_once (idempotency)
    agent/maas_properties.py  maas.zones / resource_pools / domains / subnets
    agent/cluster_spec.py     cluster.create / cluster.delete params, tenant cloud-init
    agent/clusters.py         cluster.create / cluster.delete: adopt, place, allocate, deploy
    agent/gateway_nodes.py    gateway.resize, gateway_agent_name, a new node's config
    agent/machine_work.py     tracked machines, their progress events; deploy, wait, release
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Final

from agent import logs
from agent.cluster_spec import (
    MAX_POOL_SIZE,
    ClusterSpec,
    MachinePoolSpec,
    parse_cluster_create,
    render_tenant_user_data,
)
from agent.clusters import Clusters
from agent.config import AgentConfig
from agent.gateway_nodes import (
    GATEWAY_AGENT_PREFIX,
    GATEWAY_POOL_LABEL,
    GatewayNodes,
    gateway_agent_name,
)
from agent.maas_access import MaasClientFactory, open_maas
from agent.maas_errors import maas_error_to_rpc
from agent.maas_properties import MaasProperties
from agent.machine_work import Deployer
from agent.operations import OperationRegistry
from agent.rpc import Progress, RpcMethod
from protocol.maas.client import MaasClient
from protocol.rpc import Request

__all__ = [
    "DEFAULT_DEPLOY_TIMEOUT",
    "DEFAULT_DISTRO_SERIES",
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_RELEASE_TIMEOUT",
    "GATEWAY_AGENT_PREFIX",
    "GATEWAY_POOL_LABEL",
    "MAX_POOL_SIZE",
    "ClusterSpec",
    "MaasClientFactory",
    "MaasOperations",
    "MachinePoolSpec",
    "gateway_agent_name",
    "maas_error_to_rpc",
    "parse_cluster_create",
    "render_tenant_user_data",
]

DEFAULT_DISTRO_SERIES: Final = "jammy"
DEFAULT_POLL_INTERVAL: Final = 5.0
DEFAULT_DEPLOY_TIMEOUT: Final = 1800.0
DEFAULT_RELEASE_TIMEOUT: Final = 600.0


class MaasOperations:
    """The MAAS-backed RPC methods of the agent; :meth:`methods` gives them by name.

    ``client_factory`` makes a MAAS client (tests pass one for the simulator); by default one is
    built from ``config.maas_api_endpoint`` / ``maas_api_key``, through the agent's proxy
    settings. ``distro_series``, ``poll_interval``, ``deploy_timeout`` and ``release_timeout``
    default to the config keys ``maas_distro_series``, ``maas_poll_interval``,
    ``maas_deploy_timeout``, ``maas_release_timeout`` when the config has them, else to
    "jammy", 5 s, 1800 s and 600 s.
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        client_factory: MaasClientFactory | None = None,
        registry: OperationRegistry | None = None,
        distro_series: str | None = None,
        poll_interval: float | None = None,
        deploy_timeout: float | None = None,
        release_timeout: float | None = None,
    ) -> None:
        self.config = config
        self.registry = registry if registry is not None else OperationRegistry()
        self._client_factory = client_factory
        self.deployer = Deployer(
            distro_series=str(
                distro_series
                or getattr(config, "maas_distro_series", None)
                or DEFAULT_DISTRO_SERIES
            ),
            poll_interval=_positive(
                "poll_interval", poll_interval, config, "maas_poll_interval", DEFAULT_POLL_INTERVAL
            ),
            deploy_timeout=_positive(
                "deploy_timeout",
                deploy_timeout,
                config,
                "maas_deploy_timeout",
                DEFAULT_DEPLOY_TIMEOUT,
            ),
            release_timeout=_positive(
                "release_timeout",
                release_timeout,
                config,
                "maas_release_timeout",
                DEFAULT_RELEASE_TIMEOUT,
            ),
        )
        self.properties = MaasProperties(self._maas)
        self.clusters = Clusters(config, self.registry, self._maas, self.deployer)
        self.gateway_nodes = GatewayNodes(config, self.registry, self._maas, self.deployer)
        logs.register_secret(config.maas_api_key)

    @property
    def distro_series(self) -> str:
        return self.deployer.distro_series

    @property
    def poll_interval(self) -> float:
        return self.deployer.poll_interval

    @property
    def deploy_timeout(self) -> float:
        return self.deployer.deploy_timeout

    @property
    def release_timeout(self) -> float:
        return self.deployer.release_timeout

    @property
    def gateway_agent_name(self) -> str:
        return gateway_agent_name(self.config.gateway_name)

    def methods(self) -> dict[str, RpcMethod]:
        return {
            "maas.zones": self.zones,
            "maas.resource_pools": self.resource_pools,
            "maas.domains": self.domains,
            "maas.subnets": self.subnets,
            "cluster.create": self.cluster_create,
            "cluster.delete": self.cluster_delete,
            "gateway.resize": self.gateway_resize,
        }

    async def close(self) -> None:
        """Stop the operations under way (they are resumable: a retry picks them up)."""
        await self.registry.close()

    def gateway_node_config(self) -> dict[str, Any]:
        """The agent config of a new gateway node (:meth:`GatewayNodes.node_config`)."""
        return self.gateway_nodes.node_config()

    def _maas(self) -> AbstractAsyncContextManager[MaasClient]:
        """A MAAS client for one operation (:func:`agent.maas_access.open_maas`)."""
        return open_maas(self.config, self._client_factory)

    # -- the RPC methods, by name ---------------------------------------------------------

    async def zones(self, request: Request, progress: Progress) -> list[dict[str, Any]]:
        return await self.properties.zones(request, progress)

    async def resource_pools(self, request: Request, progress: Progress) -> list[dict[str, Any]]:
        return await self.properties.resource_pools(request, progress)

    async def domains(self, request: Request, progress: Progress) -> list[dict[str, Any]]:
        return await self.properties.domains(request, progress)

    async def subnets(self, request: Request, progress: Progress) -> list[dict[str, Any]]:
        return await self.properties.subnets(request, progress)

    async def cluster_create(self, request: Request, progress: Progress) -> dict[str, Any]:
        return await self.clusters.create(request, progress)

    async def cluster_delete(self, request: Request, progress: Progress) -> dict[str, Any]:
        return await self.clusters.delete(request, progress)

    async def gateway_resize(self, request: Request, progress: Progress) -> dict[str, Any]:
        return await self.gateway_nodes.resize(request, progress)


def _positive(
    name: str, given: float | None, config: AgentConfig, key: str, default: float
) -> float:
    value = given if given is not None else getattr(config, key, None)
    value = default if value is None else float(value)
    if not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return value
