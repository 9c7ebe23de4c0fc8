"""The real agent and hub with test-only additions, for the fault run and the soak.

``python -m tests.faults.instrumented agent -c agent.yaml`` runs ``pcg-agent`` (agent.main.main,
unchanged) with two more RPC methods:

* ``faults.effect`` ``{"key", "work_s"}``: an operation with a side effect, run through the
  agent's :class:`agent.operations.OperationRegistry` under the request's idempotency key. It
  sleeps ``work_s`` (so a tunnel can die while it runs), then appends the key to the file named
  by ``PCG_FAULTS_EFFECTS``: one line per execution, which is what the test counts.
* ``faults.tasks``: ``{"tasks": <asyncio tasks in the agent's loop>}`` (no task count is in
  ``agent.status`` yet).

``python -m tests.faults.instrumented hub ...`` runs ``pcg-sim hub ...`` with one more route,
``GET /v1/debug/tasks`` -> ``{"tasks": <asyncio tasks in the hub's loop>}``.

Everything else (tunnel, relay, keepalive, reconnects, the hub's routing) is the shipped code.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from typing import Any

from aiohttp import web

EFFECTS_ENV = "PCG_FAULTS_EFFECTS"


def _agent_main(argv: list[str]) -> int:
    import agent.main
    from agent.operations import OperationRegistry
    from agent.rpc import AgentRpc, Progress, RpcMethod
    from protocol.rpc import Request

    registry = OperationRegistry()
    effects = os.environ.get(EFFECTS_ENV)

    async def effect(request: Request, progress: Progress) -> Any:
        key = str(request.params.get("key", ""))
        work_s = float(request.params.get("work_s", 0.2))

        async def start(emit: Any) -> dict[str, Any]:
            await emit({"started": key})
            await asyncio.sleep(work_s)
            if effects:
                with open(effects, "a") as log:
                    log.write(f"{key}\n")
            return {"key": key}

        return await registry.run(
            request.idempotency_key, request.method, request.params, start, progress
        )

    async def tasks(request: Request, progress: Progress) -> Any:
        return {"tasks": len(asyncio.all_tasks())}

    class InstrumentedRpc(AgentRpc):
        def __init__(self, methods: Mapping[str, RpcMethod] | None = None) -> None:
            super().__init__(methods)
            self.add("faults.effect", effect)
            self.add("faults.tasks", tasks)

    agent.main.AgentRpc = InstrumentedRpc  # type: ignore[misc]
    return agent.main.main(argv)


def _hub_main(argv: list[str]) -> int:
    import protocol.simulator.hub as hub_module
    from protocol.simulator.cli import main

    class InstrumentedHub(hub_module.Hub):
        def routes(self) -> list[web.RouteDef]:
            async def tasks(request: web.Request) -> web.Response:
                return web.json_response({"tasks": len(asyncio.all_tasks())})

            return [*super().routes(), web.get("/v1/debug/tasks", tasks)]

    hub_module.Hub = InstrumentedHub  # type: ignore[misc]
    return main(["hub", *argv])


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ("agent", "hub"):
        print("usage: python -m tests.faults.instrumented agent|hub ARGS...", file=sys.stderr)
        return 2
    if sys.argv[1] == "agent":
        return _agent_main(sys.argv[2:])
    return _hub_main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
