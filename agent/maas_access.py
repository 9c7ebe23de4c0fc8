"""How the agent's MAAS methods reach MAAS, and how the ones that change MAAS are run.

* :func:`open_maas` opens one MAAS client per operation (closed after it); a MAAS error raised
  in its body becomes an :class:`~protocol.exceptions.RpcError` (:func:`maas_error_to_rpc`).
* :func:`run_once` runs a method's work once per idempotency key (:mod:`agent.operations`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import aiohttp

from agent.config import AgentConfig
from agent.maas_errors import maas_error_to_rpc
from agent.operations import EmitProgress, OperationRegistry
from agent.rpc import Progress
from protocol.exceptions import RpcError
from protocol.maas.client import MaasClient
from protocol.maas.exceptions import MaasError
from protocol.rpc import Request, RpcErrorCode

__all__ = ["MaasClientFactory", "OpenMaas", "OperationWork", "open_maas", "run_once"]

#: a function that makes a new, unopened MAAS client (closed by the caller after each use)
MaasClientFactory = Callable[[], MaasClient]
#: what a MAAS method is given to reach MAAS: ``async with open_maas() as maas: ...``
OpenMaas = Callable[[], AbstractAsyncContextManager[MaasClient]]
#: the work of a method that changes MAAS: given the progress emitter, returns the RPC result
OperationWork = Callable[[EmitProgress], Awaitable[dict[str, Any]]]


@asynccontextmanager
async def open_maas(
    config: AgentConfig, client_factory: MaasClientFactory | None
) -> AsyncIterator[MaasClient]:
    """A MAAS client for one operation; MAAS errors in the body become RpcErrors.

    Made by ``client_factory`` when given (tests pass one for the simulator), else from
    ``config.maas_api_endpoint`` / ``maas_api_key``, through the agent's proxy settings.
    """
    session: aiohttp.ClientSession | None = None
    try:
        if client_factory is not None:
            client = client_factory()
        else:
            endpoint, key = config.maas_api_endpoint, config.maas_api_key
            if not endpoint or not key:
                raise RpcError(
                    RpcErrorCode.FAILED_PRECONDITION,
                    "this agent has no MAAS endpoint or API key: set maas_api_endpoint and "
                    "maas_api_key in its config",
                )
            proxy = config.proxies.proxy_for(endpoint)
            session = aiohttp.ClientSession(
                trust_env=False, proxy=proxy, headers={"User-Agent": "pcg-agent"}
            )
            client = MaasClient(endpoint, key, trust_env=False, session=session)
        async with client:
            yield client
    except MaasError as exc:
        raise maas_error_to_rpc(exc) from exc
    finally:
        if session is not None:
            await session.close()


async def run_once(
    registry: OperationRegistry, request: Request, progress: Progress, work: OperationWork
) -> dict[str, Any]:
    """Run ``work`` once per ``request``'s idempotency key; a retry attaches to it or gets its
    stored outcome, and sees its progress events (:meth:`OperationRegistry.run`)."""
    result: dict[str, Any] = await registry.run(
        request.idempotency_key, request.method, request.params, work, progress
    )
    return result
