"""Raw API answers: shapes, op dispatch, status codes and MAAS's texts."""

from __future__ import annotations

from typing import Any

import aiohttp

from protocol.maas.auth import authorization_header
from protocol.simulator.maas import MaasSimulator


async def _call(
    http: aiohttp.ClientSession,
    sim: MaasSimulator,
    method: str,
    path: str,
    form: list[tuple[str, str]] | None = None,
) -> tuple[int, Any, str]:
    url = f"{sim.url}/api/2.0/{path}"
    headers = {"Authorization": authorization_header(sim.api_key, method, url)}
    async with http.request(method, url, headers=headers, data=form) as response:
        text = await response.text()
        body = await response.json() if response.content_type == "application/json" else text
        return response.status, body, response.content_type


async def test_describe_lists_handlers_with_absolute_uris(
    maas_sim: MaasSimulator, http: aiohttp.ClientSession
) -> None:
    async with http.get(maas_sim.url + "/api/2.0/describe/") as response:
        assert response.status == 200 and response.content_type == "application/json"
        doc = await response.json()
    handlers = {r["name"]: r for r in doc["resources"]}
    machine = handlers["MachineHandler"]["auth"]
    assert machine["params"] == ["system_id"]
    assert machine["uri"] == f"{maas_sim.url}/api/2.0/machines/{{system_id}}/"
    assert {(a["name"], a["method"], a["op"]) for a in machine["actions"]} == {
        ("read", "GET", None),
        ("deploy", "POST", "deploy"),
        ("release", "POST", "release"),
    }
    assert handlers["VersionHandler"]["auth"] is None and handlers["VersionHandler"]["anon"]
    assert {"ZonesHandler", "ResourcePoolsHandler", "SubnetHandler"} <= handlers.keys()
    assert doc["hash"]


async def test_machine_shape(maas_sim: MaasSimulator, http: aiohttp.ClientSession) -> None:
    status, machines, content_type = await _call(http, maas_sim, "GET", "machines/")
    assert (status, content_type) == (200, "application/json")
    node = next(m for m in machines if m["hostname"] == "node-07")
    assert node["fqdn"] == "node-07.maas"
    assert (node["status"], node["status_name"]) == (4, "Ready")
    assert (node["cpu_count"], node["memory"], node["storage"]) == (8, 16384, 120000.0)
    assert node["zone"]["name"] == "default" and node["zone"]["id"] == 1
    assert node["pool"] == {
        "name": "default",
        "description": "Default pool",
        "id": 0,
        "resource_uri": "/MAAS/api/2.0/resourcepool/0/",
    }
    assert node["domain"]["name"] == "maas" and node["domain"]["id"] == 0
    assert node["ip_addresses"] == [] and node["power_state"] == "off"
    assert node["tag_names"] == ["virtual", "ssd"]
    assert node["resource_uri"] == f"/MAAS/api/2.0/machines/{node['system_id']}/"
    assert node["boot_disk"]["size"] == 120 * 1000**3 and node["boot_disk"]["tags"] == ["ssd"]


async def test_op_dispatch_and_unknown_paths(
    maas_sim: MaasSimulator, http: aiohttp.ClientSession
) -> None:
    status, body, _ = await _call(http, maas_sim, "POST", "machines/?op=explode")
    assert (status, body) == (400, "Unrecognised signature: method=POST op=explode")
    status, body, _ = await _call(http, maas_sim, "POST", "zones/")
    assert (status, body) == (400, "Unrecognised signature: method=POST op=None")
    status, body, _ = await _call(http, maas_sim, "GET", "machines/abc999/")
    assert (status, body) == (404, "No Machine matches the given query.")
    status, body, _ = await _call(http, maas_sim, "GET", "resourcepool/42/")
    assert (status, body) == (404, "No ResourcePool matches the given query.")
    status, body, _ = await _call(http, maas_sim, "GET", "teapots/")
    assert (status, body) == (404, "Unknown API endpoint: /MAAS/api/2.0/teapots/.")


async def test_allocate_form_errors_are_json_per_field(
    maas_sim: MaasSimulator, http: aiohttp.ClientSession
) -> None:
    form = [("cpu_count", "many"), ("mem", "lots"), ("storage", "root:big"), ("colour", "red")]
    status, body, content_type = await _call(http, maas_sim, "POST", "machines/?op=allocate", form)
    assert (status, content_type) == (400, "application/json")
    assert body == {
        "colour": ["No such constraint."],
        "cpu_count": ["Invalid CPU count: number required."],
        "mem": ["Invalid memory: number of MiB required."],
        "storage": ['Malformed storage constraint, "root:big".'],
    }


async def test_allocate_no_match_texts(
    maas_sim: MaasSimulator, http: aiohttp.ClientSession
) -> None:
    status, body, content_type = await _call(
        http, maas_sim, "POST", "machines/?op=allocate", [("tags", "ssd"), ("cpu_count", "16")]
    )
    assert (status, content_type) == (409, "text/plain")
    assert body == (
        "No available machine matches constraints: [('tags', ['ssd']), ('cpu_count', ['16'])] "
        '(resolved to "cpu_count=16.0 tags=ssd")'
    )
    status, body, _ = await _call(
        http, maas_sim, "POST", "machines/?op=allocate", [("system_id", "zzz999")]
    )
    assert (status, body) == (409, "No machine with system ID zzz999 available.")


async def test_release_texts(maas_sim: MaasSimulator, http: aiohttp.ClientSession) -> None:
    machine = maas_sim.machine("node-05")
    status, body, _ = await _call(
        http, maas_sim, "POST", f"machines/{machine.system_id}/?op=release"
    )
    assert status == 200 and body["status_name"] == "Ready", "releasing a Ready machine is a no-op"
    status, body, _ = await _call(
        http, maas_sim, "POST", "machines/?op=release", [("machines", "x1")]
    )
    assert (status, body) == (400, "Unknown machine(s): x1.")


async def test_unreserved_ranges_skip_gateway_ranges_and_used_addresses(
    maas_sim: MaasSimulator, http: aiohttp.ClientSession
) -> None:
    status, body, _ = await _call(http, maas_sim, "GET", "subnets/1/?op=unreserved_ip_ranges")
    assert status == 200
    assert body == [{"start": "10.20.0.20", "end": "10.20.0.199", "num_addresses": 180}]
    status, ranges, _ = await _call(http, maas_sim, "GET", "ipranges/")
    assert [(r["type"], r["start_ip"], r["end_ip"]) for r in ranges] == [
        ("reserved", "10.20.0.1", "10.20.0.19"),
        ("dynamic", "10.20.0.200", "10.20.0.254"),
    ]
    status, subnet, _ = await _call(http, maas_sim, "GET", "subnets/1/")
    assert status == 200 and subnet["id"] == 1 and subnet["vlan"]["fabric"] == "fabric-0"
