"""Simulator-only control endpoint under ``/MAAS/sim/`` (not part of MAAS; no OAuth).

Lets a test in another process look inside the simulator and flip faults::

    GET    /MAAS/sim/                             machines (status, ip, ...), faults, timings
    GET    /MAAS/sim/faults                       current faults
    POST   /MAAS/sim/faults   {json}              change faults (see Faults.update), returns them
    DELETE /MAAS/sim/faults                       clear every fault
    PUT    /MAAS/sim/timings  {"deploy": s, "release": s}
    GET    /MAAS/sim/machines/{id}/user-data      the cloud-init user_data, decoded (text/plain)
    POST   /MAAS/sim/save                         write the state file (if one is configured)

``{id}`` is a system_id, hostname or fqdn. Anyone who can reach the port can use these: keep the
simulator on 127.0.0.1.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from protocol.simulator.maas.core import SimulatorCore, Timings
from protocol.simulator.maas.render import visible_address

__all__ = ["CONTROL_PREFIX", "add_routes"]

CONTROL_PREFIX = "/MAAS/sim/"


def add_routes(app: web.Application, core: SimulatorCore) -> None:
    async def overview(request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {
                "machines": [
                    {
                        "system_id": m.system_id,
                        "hostname": m.hostname,
                        "fqdn": m.fqdn,
                        "status": int(m.status),
                        "status_name": m.status.label,
                        "ip_address": visible_address(m),
                        "power_state": m.power_state.value,
                        "agent_name": m.agent_name,
                        "has_user_data": m.user_data is not None,
                        "deployments": m.deployments,
                    }
                    for m in core.machines.values()
                ],
                "faults": core.faults.to_json(),
                "timings": {"deploy": core.timings.deploy, "release": core.timings.release},
                "state_file": None if core.state_file is None else str(core.state_file),
            }
        )

    async def get_faults(request: web.Request) -> web.StreamResponse:
        return web.json_response(core.faults.to_json())

    async def set_faults(request: web.Request) -> web.StreamResponse:
        data = await _json_body(request)
        try:
            core.faults.update(data)
        except (TypeError, ValueError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        return web.json_response(core.faults.to_json())

    async def clear_faults(request: web.Request) -> web.StreamResponse:
        core.faults.clear()
        return web.json_response(core.faults.to_json())

    async def set_timings(request: web.Request) -> web.StreamResponse:
        data = await _json_body(request)
        try:
            core.timings = Timings(
                deploy=float(data.get("deploy", core.timings.deploy)),
                release=float(data.get("release", core.timings.release)),
            )
        except (TypeError, ValueError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        return web.json_response({"deploy": core.timings.deploy, "release": core.timings.release})

    async def user_data(request: web.Request) -> web.StreamResponse:
        machine = core.state.find(request.match_info["ident"])
        if machine is None:
            raise web.HTTPNotFound(text=f"no machine {request.match_info['ident']!r}")
        if machine.user_data is None:
            raise web.HTTPNotFound(text=f"machine {machine.hostname} has no user_data")
        return web.Response(text=machine.user_data_text or "", content_type="text/plain")

    async def save(request: web.Request) -> web.StreamResponse:
        if core.state_file is None:
            raise web.HTTPBadRequest(text="no state file configured (start with --state-file)")
        core.save()
        return web.json_response({"saved": str(core.state_file)})

    app.router.add_get(CONTROL_PREFIX, overview)
    app.router.add_get(CONTROL_PREFIX + "faults", get_faults)
    app.router.add_post(CONTROL_PREFIX + "faults", set_faults)
    app.router.add_delete(CONTROL_PREFIX + "faults", clear_faults)
    app.router.add_put(CONTROL_PREFIX + "timings", set_timings)
    app.router.add_get(CONTROL_PREFIX + "machines/{ident}/user-data", user_data)
    app.router.add_post(CONTROL_PREFIX + "save", save)


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except json.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return data
