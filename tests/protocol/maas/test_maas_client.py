"""MaasClient against the MAAS simulator on 127.0.0.1: allocation, deployment, release, waits,
retries and the error tree."""

from __future__ import annotations

import ipaddress
import socket
import time

import pytest
from aiohttp import web

from protocol.maas import (
    ApiKey,
    AuthError,
    BadRequest,
    InvalidEndpoint,
    MaasApiError,
    MaasClient,
    MaasTimeout,
    MaasUnreachable,
    MachineFailed,
    MachineWaitTimeout,
    NodeStatus,
    NoMatchingMachine,
    NotFound,
    PowerState,
    Retryable,
    RetryPolicy,
    WrongState,
)
from protocol.maas.transport import normalize_endpoint
from protocol.simulator.maas import MaasSimulator, Timings
from protocol.simulator.maas.testing import client_for

FAST = {"poll_interval": 0.02, "max_wait": 5.0}
CLOUD_CONFIG = "#cloud-config\nruncmd:\n  - [echo, hello from the gateway]\n"


# -- allocation -----------------------------------------------------------------------------


async def test_allocate_with_constraints_picks_only_matching_machines(maas: MaasClient) -> None:
    big = await maas.allocate(cpu_count=8, mem=16384, agent_name="pcg-test")
    assert big.cpu_count >= 8 and big.memory >= 16384
    assert big.status is NodeStatus.ALLOCATED and big.owner == "admin"

    other_zone = await maas.allocate(zone="az2", pool="tenants")
    assert other_zone.zone is not None and other_zone.zone.name == "az2"
    assert other_zone.pool is not None and other_zone.pool.name == "tenants"

    tagged = await maas.allocate(tags=["ssd"], storage="root:100")
    assert "ssd" in tagged.tag_names and tagged.storage_gb >= 100

    untagged = await maas.allocate(cpu_count=4, not_tags=["ssd"])
    assert "ssd" not in untagged.tag_names

    by_name = await maas.allocate(hostname="small-01")
    assert by_name.hostname == "small-01"

    allocated = {big.system_id, other_zone.system_id, tagged.system_id, untagged.system_id}
    assert len(allocated | {by_name.system_id}) == 5


async def test_gateway_sized_allocations_never_take_small_machines(maas: MaasClient) -> None:
    wanted = {"cpu_count": 4, "mem": 8192, "storage": "root:60", "zone": "default"}
    taken = [await maas.allocate(pool="default", **wanted) for _ in range(8)]
    for machine in taken:
        assert machine.cpu_count >= 4 and machine.memory >= 8192 and machine.storage_gb >= 60
        assert not machine.hostname.startswith("small")
    with pytest.raises(NoMatchingMachine) as caught:
        await maas.allocate(pool="default", **wanted)
    error = caught.value
    assert error.status == 409
    assert error.body == (
        "No available machine matches constraints: [('cpu_count', ['4']), ('mem', ['8192']), "
        "('storage', ['root:60']), ('zone', ['default']), ('pool', ['default'])] "
        '(resolved to "cpu_count=4.0 mem=8192.0 pool=default storage=root:60 zone=default")'
    )
    assert "relax the constraints" in str(error)


async def test_nothing_left_at_all_gives_no_machine_available(
    maas_sim: MaasSimulator, maas: MaasClient
) -> None:
    for _ in maas_sim.machines:
        await maas.allocate()
    with pytest.raises(NoMatchingMachine) as caught:
        await maas.allocate()
    assert caught.value.body == "No machine available."


async def test_dry_run_does_not_allocate(maas: MaasClient) -> None:
    first = await maas.allocate(cpu_count=8, dry_run=True)
    again = await maas.allocate(cpu_count=8, dry_run=True)
    assert first.system_id == again.system_id
    assert first.status is NodeStatus.READY


# -- deploy, wait, release ------------------------------------------------------------------


async def test_deploy_wait_until_deployed_then_release(
    maas_sim: MaasSimulator, maas: MaasClient
) -> None:
    machine = await maas.allocate(cpu_count=4, mem=8192, zone="default", agent_name="pcg-gw")
    deploying = await maas.deploy(
        machine.system_id, distro_series="jammy", user_data=CLOUD_CONFIG, comment="gateway node"
    )
    assert deploying.status is NodeStatus.DEPLOYING
    assert deploying.ip_addresses == ()

    deployed = await maas.wait_for_status(machine.system_id, NodeStatus.DEPLOYED, **FAST)
    assert deployed.fqdn == f"{machine.hostname}.maas"
    (address,) = deployed.ip_addresses
    assert ipaddress.IPv4Address(address) in ipaddress.IPv4Network("10.20.0.0/24")
    assert ipaddress.IPv4Address(address) >= ipaddress.IPv4Address("10.20.0.20"), "reserved"
    assert deployed.power_state is PowerState.ON
    assert (deployed.osystem, deployed.distro_series) == ("ubuntu", "jammy")
    assert maas_sim.user_data(machine.system_id) == CLOUD_CONFIG
    assert [m.system_id for m in await maas.list_machines(agent_name="pcg-gw")] == [
        machine.system_id
    ]
    (subnet,) = await maas.list_subnets()
    free = await maas.unreserved_ip_ranges(subnet.id)
    assert all(not (r.start <= address <= r.end) for r in free if len(r.start) == len(address))

    assert await maas.release([machine.system_id], comment="done") == (machine.system_id,)
    ready = await maas.wait_for_status(machine.system_id, NodeStatus.READY, **FAST)
    assert ready.ip_addresses == () and ready.owner is None
    assert ready.power_state is PowerState.OFF


async def test_release_several_at_once(maas: MaasClient) -> None:
    machines = [await maas.allocate(cpu_count=4) for _ in range(3)]
    await maas.deploy(machines[0].system_id)
    ids = [m.system_id for m in machines]
    assert set(await maas.release(ids)) == set(ids)
    for system_id in ids:
        await maas.wait_for_status(system_id, NodeStatus.READY, **FAST)
    assert await maas.release(ids) == (), "Ready machines need no release"
    assert await maas.release([]) == ()


async def test_release_unknown_machine_is_a_bad_request(maas: MaasClient) -> None:
    with pytest.raises(BadRequest) as caught:
        await maas.release(["nope00"])
    assert caught.value.body == "Unknown machine(s): nope00."
    assert caught.value.field_errors == {}


async def test_release_one_machine_with_options(maas: MaasClient) -> None:
    machine = await maas.allocate(cpu_count=4)
    released = await maas.release_machine(machine.system_id, comment="bye", erase=False)
    assert released.status in (NodeStatus.RELEASING, NodeStatus.READY)


async def test_wrong_state_is_reported_with_maas_text(maas: MaasClient) -> None:
    machine = await maas.allocate(cpu_count=4)
    await maas.deploy(machine.system_id)
    await maas.wait_for_status(machine.system_id, NodeStatus.DEPLOYED, **FAST)
    with pytest.raises(WrongState) as caught:
        await maas.deploy(machine.system_id)
    assert caught.value.status == 409
    assert caught.value.body == "Can't deploy a machine that is in the 'Deployed' state"
    assert machine.system_id in str(caught.value)


async def test_failed_deployment_stops_the_wait(maas_sim: MaasSimulator, maas: MaasClient) -> None:
    maas_sim.faults.fail_deployment("node-02")
    machine = await maas.allocate(hostname="node-02")
    await maas.deploy(machine.system_id, user_data=CLOUD_CONFIG)
    with pytest.raises(MachineFailed) as caught:
        await maas.wait_for_status(machine.system_id, NodeStatus.DEPLOYED, **FAST)
    assert "Failed deployment" in str(caught.value)
    assert caught.value.machine.status is NodeStatus.FAILED_DEPLOYMENT
    # what cluster-api-provider-maas does next: release it
    await maas.release([machine.system_id])
    await maas.wait_for_status(machine.system_id, NodeStatus.READY, **FAST)


async def test_wait_gives_up_after_max_wait(maas_sim: MaasSimulator, maas: MaasClient) -> None:
    maas_sim.timings = Timings(deploy=30.0, release=0.05)
    machine = await maas.allocate(cpu_count=4)
    await maas.deploy(machine.system_id)
    started = time.monotonic()
    with pytest.raises(MachineWaitTimeout) as caught:
        await maas.wait_for_status(
            machine.system_id, NodeStatus.DEPLOYED, poll_interval=0.05, max_wait=0.2
        )
    assert time.monotonic() - started < 2
    assert isinstance(caught.value, TimeoutError)
    assert "'Deploying' after 0.2 s" in str(caught.value)


# -- retries --------------------------------------------------------------------------------


async def test_503_with_retry_after_is_retried_then_succeeds(maas_sim: MaasSimulator) -> None:
    maas_sim.faults.unavailable(1, retry_after=1)
    policy = RetryPolicy(attempts=3, base_delay=0.01, max_delay=5.0, jitter=False)
    async with client_for(maas_sim, retry=policy) as maas:
        started = time.monotonic()
        zones = await maas.list_zones()
        elapsed = time.monotonic() - started
    assert [zone.name for zone in zones] == ["default", "az2"]
    assert elapsed >= 1.0, "the client must wait at least Retry-After"


async def test_409_with_retry_after_is_retried_for_allocate(
    maas_sim: MaasSimulator, maas: MaasClient
) -> None:
    maas_sim.faults.busy(2, retry_after=0, match="op=allocate")
    machine = await maas.allocate(cpu_count=4)
    assert machine.status is NodeStatus.ALLOCATED
    allocated = [m for m in maas_sim.machines if m.status is NodeStatus.ALLOCATED]
    assert len(allocated) == 1


async def test_retryable_raised_when_maas_keeps_refusing(
    maas_sim: MaasSimulator, maas: MaasClient
) -> None:
    maas_sim.faults.unavailable(None, retry_after=0)
    with pytest.raises(Retryable) as caught:
        await maas.list_machines()
    assert caught.value.status == 503
    assert caught.value.attempts == 4
    assert caught.value.retry_after == 0
    assert "try again later" in str(caught.value)


async def test_dropped_connection_is_retried_for_get_not_for_post(
    maas_sim: MaasSimulator, maas: MaasClient
) -> None:
    maas_sim.faults.drop_connections(1)
    assert len(await maas.list_machines()) == len(maas_sim.machines)
    maas_sim.faults.drop_connections(1, match="op=allocate")
    with pytest.raises(MaasUnreachable, match="Cannot reach MAAS"):
        await maas.allocate(cpu_count=4)
    assert all(m.status is NodeStatus.READY for m in maas_sim.machines)


async def test_slow_maas_times_out(maas_sim: MaasSimulator) -> None:
    maas_sim.faults.set_latency(0.5)
    async with client_for(maas_sim, timeout=0.1, retry=RetryPolicy(attempts=1)) as maas:
        with pytest.raises(MaasTimeout) as caught:
            await maas.list_zones()
    assert isinstance(caught.value, TimeoutError) and isinstance(caught.value, OSError)
    assert "did not answer GET /MAAS/api/2.0/zones/ within 0.1 s" in str(caught.value)


async def test_nothing_listening_is_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    key = ApiKey.parse("a:b:c")
    async with MaasClient(
        f"http://127.0.0.1:{port}/MAAS", key, trust_env=False, retry=RetryPolicy(attempts=1)
    ) as maas:
        with pytest.raises(MaasUnreachable) as caught:
            await maas.list_zones()
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "that MAAS is running" in str(caught.value)


# -- errors ---------------------------------------------------------------------------------


async def test_wrong_key_gives_auth_error(maas_sim: MaasSimulator) -> None:
    wrong = ApiKey("x" * 18, "y" * 18, "z" * 32)
    async with client_for(maas_sim, api_key=wrong) as maas:
        version = await maas.version()  # not signed: still answers
        assert version.version
        with pytest.raises(AuthError) as caught:
            await maas.list_machines()
    error = caught.value
    assert error.status == 401
    assert error.body == "Authorization Error: Invalid API key."
    assert "z" * 32 not in str(error) and "x" * 18 not in str(error)
    assert wrong.fingerprint in str(error)


async def test_bad_request_reports_each_field(maas: MaasClient) -> None:
    with pytest.raises(BadRequest) as caught:
        await maas.allocate(zone="nowhere", pool="nopool", tags=["gpu"], cpu_count=2)
    assert caught.value.status == 400
    assert caught.value.field_errors == {
        "zone": ["No such zone(s): nowhere."],
        "pool": ["No such pool(s): nopool."],
        "tags": ["No such tag(s): 'gpu'."],
    }
    assert "zone: No such zone(s): nowhere." in str(caught.value)

    with pytest.raises(BadRequest) as listing:
        await maas.list_machines(status="sleeping")
    assert list(listing.value.field_errors) == ["status"]

    machine = await maas.allocate(cpu_count=4)
    with pytest.raises(BadRequest) as deploy:
        await maas.deploy(machine.system_id, distro_series="hoary")
    assert list(deploy.value.field_errors) == ["distro_series"]


async def test_not_found_names_what_is_missing(maas: MaasClient) -> None:
    with pytest.raises(NotFound) as caught:
        await maas.get_machine("nope00")
    assert caught.value.body == "No Machine matches the given query."
    assert "machine 'nope00'" in str(caught.value)
    with pytest.raises(NotFound, match="zone 'mars'"):
        await maas.get_zone("mars")


async def test_endpoint_without_maas_path_hints_at_it(maas_sim: MaasSimulator) -> None:
    root = maas_sim.url.removesuffix("/MAAS")
    async with client_for(maas_sim) as good:
        assert await good.list_zones()
    async with MaasClient(root, maas_sim.api_key, trust_env=False) as maas:
        with pytest.raises(NotFound, match="normally ends with /MAAS"):
            await maas.list_zones()


# -- reads ----------------------------------------------------------------------------------


async def test_reads_zones_pools_domains_subnets(maas: MaasClient) -> None:
    assert [z.name for z in await maas.list_zones()] == ["default", "az2"]
    assert (await maas.get_zone("az2")).description == "second rack"
    pools = await maas.list_resource_pools()
    assert [(p.id, p.name) for p in pools] == [(0, "default"), (1, "tenants")]
    assert (await maas.get_resource_pool(1)).name == "tenants"
    (domain,) = await maas.list_domains()
    assert (domain.id, domain.name, domain.is_default) == (0, "maas", True)
    (subnet,) = await maas.list_subnets()
    assert subnet.cidr == "10.20.0.0/24" and subnet.gateway_ip == "10.20.0.1"
    assert (await maas.get_subnet(subnet.id)) == subnet
    ranges = await maas.unreserved_ip_ranges(subnet.id)
    assert [(r.start, r.end, r.num_addresses) for r in ranges] == [
        ("10.20.0.20", "10.20.0.199", 180)
    ]


async def test_machine_list_filters(maas: MaasClient) -> None:
    assert len(await maas.list_machines()) == 12
    assert {m.hostname for m in await maas.list_machines(zone="az2")} == {"node-09", "node-10"}
    assert len(await maas.list_machines(pool="tenants")) == 2
    assert len(await maas.list_machines(tags=["ssd"])) == 2
    assert [m.hostname for m in await maas.list_machines(hostname="node-03")] == ["node-03"]
    await maas.allocate(hostname="node-04")
    ready = await maas.list_machines(status=NodeStatus.READY)
    assert len(ready) == 11 and "node-04" not in {m.hostname for m in ready}
    assert [m.hostname for m in await maas.list_machines(status="allocated")] == ["node-04"]
    node = (await maas.list_machines(hostname="node-04"))[0]
    assert (await maas.get_machine(node.system_id)).hostname == "node-04"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://maas:5240/MAAS", "http://maas:5240/MAAS"),
        ("http://maas:5240/MAAS/", "http://maas:5240/MAAS"),
        (" https://maas.example.com/MAAS/api/2.0/ ", "https://maas.example.com/MAAS"),
        ("http://10.0.0.1:5240", "http://10.0.0.1:5240"),
    ],
)
def test_endpoint_normalisation(given: str, expected: str) -> None:
    assert normalize_endpoint(given) == expected


@pytest.mark.parametrize("given", ["maas:5240/MAAS", "ftp://maas/MAAS", "", "http:///MAAS"])
def test_unusable_endpoint(given: str) -> None:
    with pytest.raises(InvalidEndpoint, match="http://maas.example.com:5240/MAAS"):
        normalize_endpoint(given)


async def test_something_else_behind_the_endpoint_is_reported() -> None:
    """A proxy or login page answering 200 with HTML, or broken JSON, is a clear MaasApiError."""

    async def login_page(request: web.Request) -> web.Response:
        return web.Response(text="<html>please log in</html>", content_type="text/html")

    async def broken_json(request: web.Request) -> web.Response:
        return web.Response(text="[{", content_type="application/json")

    app = web.Application()
    app.router.add_get("/MAAS/api/2.0/zones/", login_page)
    app.router.add_get("/MAAS/api/2.0/domains/", broken_json)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        async with MaasClient(f"http://{host}:{port}/MAAS", "a:b:c", trust_env=False) as maas:
            with pytest.raises(MaasApiError, match="where a JSON list was expected"):
                await maas.list_zones()
            with pytest.raises(MaasApiError, match="not valid JSON"):
                await maas.list_domains()
    finally:
        await runner.cleanup()
