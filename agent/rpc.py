"""The agent's RPC dispatcher: method name -> handler (the table is in the Palette simulator's
README, "The agent's RPC methods")."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from protocol.exceptions import RpcError
from protocol.rpc import Request, RpcErrorCode

log = logging.getLogger("pcg.agent.rpc")

Progress = Callable[[Mapping[str, Any]], Awaitable[None]]
RpcMethod = Callable[[Request, Progress], Awaitable[Any]]


class AgentRpc:
    def __init__(self, methods: Mapping[str, RpcMethod] | None = None) -> None:
        self.methods: dict[str, RpcMethod] = dict(methods or {})

    def add(self, name: str, method: RpcMethod) -> None:
        self.methods[name] = method

    def update(self, methods: Mapping[str, RpcMethod]) -> None:
        self.methods.update(methods)

    async def __call__(self, request: Request, progress: Progress) -> Any:
        method = self.methods.get(request.method)
        if method is None:
            raise RpcError(
                RpcErrorCode.NOT_FOUND,
                f"this agent has no method {request.method!r}; it has "
                + ", ".join(sorted(self.methods)),
            )
        log.info(
            "rpc request=%s method=%s idempotency_key=%s deadline_ms=%s",
            request.request_id,
            request.method,
            request.idempotency_key,
            request.deadline_ms,
        )
        return await method(request, progress)
