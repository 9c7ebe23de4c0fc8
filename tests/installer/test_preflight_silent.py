"""Silent mode with a broken prerequisite: `pcg-installer -s true -c pcg.yaml` (a subprocess)
reports that failure by its check id, exits non-zero, and leaves every machine Ready. A file
with several broken ones reports all of them at once."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from installer.config import InstallConfig
from installer.preflight import HostFacts, Status, check_host
from protocol.maas.models import NodeStatus
from protocol.simulator.maas import Inventory, MaasSimulator, Timings
from protocol.simulator.palette import PaletteSimulator
from tests.support.tls import Pki

from .conftest import ADMIN, SSO_USER, config_for, run_installer, write_config

pytestmark = pytest.mark.timeout(60)

Setup = Callable[[PaletteSimulator, MaasSimulator], dict[str, Any]]


def expire_code(palette: PaletteSimulator, maas: MaasSimulator) -> dict[str, Any]:
    code = palette.issue_pairing_code()
    palette.clock.advance(25 * 3600)
    return {"pairing_code": code}


def no_maas_path(palette: PaletteSimulator, maas: MaasSimulator) -> dict[str, Any]:
    return {"maas_endpoint": maas.url.removesuffix("/MAAS")}


def unknown_key(palette: PaletteSimulator, maas: MaasSimulator) -> dict[str, Any]:
    return {"maas_api_key": "AAAAAAAAAAAAAAAAAA:BBBBBBBBBBBBBBBBBB:" + "c" * 32}


CASES: list[tuple[str, dict[str, Any] | Setup, str, str]] = [
    ("trailing slash", {"palette_endpoint": "https://127.0.0.1:1/"}, "palette.endpoint",
     "remove the trailing slash"),
    ("http palette", {"palette_endpoint": "http://127.0.0.1:1"}, "palette.endpoint",
     "must start with https://"),
    ("wrong password", {"password": "Wr0ng-password"}, "palette.login", "refused the sign-in"),
    ("sso user", {"username": SSO_USER}, "palette.login", "SSO"),
    ("invalid code", {"pairing_code": "ZZZZZZ"}, "palette.pairingCode", "PairingCodeInvalid"),
    ("expired code", expire_code, "palette.pairingCode", "PairingCodeExpired"),
    ("maas without /MAAS", no_maas_path, "maas.endpoint", "is missing /MAAS at the end"),
    ("key of 2 parts", {"maas_api_key": "abc:def"}, "maas.apiKey", "2 part(s) separated by"),
    ("key MAAS refuses", unknown_key, "maas.apiKey", "MAAS refused the API key"),
    ("no such domain", {"domain": "nowhere"}, "maas.domain", "MAAS has no domain 'nowhere'"),
    ("no such zone", {"zone": "az9"}, "maas.zone", "it has: az2, default"),
    ("no such pool", {"resource_pool": "gold"}, "maas.pool", "no resource pool 'gold'"),
    ("too few machines", {"zone": "az2", "resource_pool": "tenants", "node_count": 3},
     "maas.machines", "2 Ready machine(s)"),
    ("pod CIDR on the MAAS subnet", {"pod_cidr": "10.20.0.0/16"}, "network.podCidr",
     "overlaps MAAS subnet(s) 10.20.0.0/24"),
    ("service range on the MAAS subnet", {"service_range": "10.20.0.0/22"},
     "network.serviceIpRange", "overlaps MAAS subnet(s) 10.20.0.0/24"),
    ("pod CIDR overlapping services", {"pod_cidr": "10.96.0.0/16"}, "network.serviceIpRange",
     "overlaps the pod CIDR"),
    ("bad pod CIDR", {"pod_cidr": "10.300.0.0/16"}, "network.podCidr", "not an IPv4 CIDR"),
    ("bad proxy", {"https_proxy": "proxy.local:3128"}, "settings.environment.httpsProxy",
     "must be http:// or https://"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "broken", "check_id", "text"), CASES, ids=[c[0] for c in CASES])
async def test_one_broken_prerequisite_is_reported(
    case: str,
    broken: dict[str, Any] | Setup,
    check_id: str,
    text: str,
    palette: PaletteSimulator,
    maas: MaasSimulator,
    pki: Pki,
    workdir: Path,
) -> None:
    overrides = broken(palette, maas) if callable(broken) else broken
    config = config_for(palette, maas, pki, **overrides)
    path = write_config(workdir / "pcg.yaml", config)
    done = await run_installer("-s", "true", "-c", str(path), "--output", "json")
    assert done.code == 1, done.output
    outcome = json.loads(done.stdout)
    assert outcome["ok"] is False and outcome["install"] is None
    checks = {c["id"]: c for c in outcome["preflight"]["checks"]}
    assert checks[check_id]["status"] == "failed", checks[check_id]
    assert text in checks[check_id]["message"]
    assert "FAIL" in done.stderr and text.split("(")[0] in done.stderr  # the human report too
    assert all(m.status is NodeStatus.READY for m in maas.machines), "a machine was touched"
    for secret in (ADMIN.password, maas.api_key.reveal(), config.pairing_code):
        assert secret not in done.output


async def test_several_broken_prerequisites_are_reported_at_once(
    palette: PaletteSimulator, maas: MaasSimulator, pki: Pki, workdir: Path
) -> None:
    config = config_for(
        palette, maas, pki,
        palette_endpoint=palette.url + "/",     # trailing slash
        username=SSO_USER,                      # an SSO-only user
        maas_endpoint=maas.url.removesuffix("/MAAS"),  # no /MAAS
        zone="az2", resource_pool="tenants",    # only 2 qualifying machines there ...
        node_count=3,                           # ... for 3 nodes
        pod_cidr="10.20.0.0/16",                # overlaps the MAAS subnet
        name="Bad_Name",                        # not a valid gateway name
    )  # fmt: skip
    path = write_config(workdir / "pcg.yaml", config)
    done = await run_installer("-s", "true", "-c", str(path), "--output", "json")
    assert done.code == 1, done.output
    checks = {c["id"]: c for c in json.loads(done.stdout)["preflight"]["checks"]}
    failed = {k for k, c in checks.items() if c["status"] == "failed"}
    assert failed == {
        "palette.endpoint", "palette.login", "maas.endpoint", "maas.machines",
        "network.podCidr", "settings.name",
    }  # fmt: skip
    # a trailing '/' or a missing /MAAS does not hide the rest: checked as they should read
    assert "SSO" in checks["palette.login"]["message"]
    assert "is missing /MAAS" in checks["maas.endpoint"]["message"]
    assert "2 Ready machine(s)" in checks["maas.machines"]["message"]
    # what could not be checked says why instead of failing silently
    assert checks["palette.pairingCode"]["status"] == "skipped"
    assert "sign-in failed" in checks["palette.pairingCode"]["message"]
    assert "6 check(s) failed" in done.stderr
    assert all(m.status is NodeStatus.READY for m in maas.machines)


async def test_warnings_do_not_stop_the_install_checks(
    palette: PaletteSimulator, maas: MaasSimulator, pki: Pki, workdir: Path
) -> None:
    config = config_for(
        palette, maas, pki,
        pod_cidr="192.168.0.0/16",                 # the pack's default: a warning
        https_proxy="http://127.0.0.1:3128",       # MAAS (127.0.0.1) not in no_proxy: warning
    )  # fmt: skip
    path = write_config(workdir / "pcg.yaml", config)
    done = await run_installer("-s", "true", "-c", str(path), "--inspect-only", "--output", "json")
    assert done.code == 0, done.output
    checks = {c["id"]: c for c in json.loads(done.stdout)["preflight"]["checks"]}
    assert checks["network.podCidr"]["status"] == "warning"
    assert "192.168.0.0/16" in checks["network.podCidr"]["message"]
    assert checks["proxy.noProxy"]["status"] == "warning"
    assert "not in No Proxy" in checks["proxy.noProxy"]["message"]
    assert all(m.status is NodeStatus.READY for m in maas.machines)


async def test_not_enough_free_addresses(
    palette: PaletteSimulator, pki: Pki, workdir: Path
) -> None:
    inventory = Inventory.from_dict(
        {
            "subnets": [{"cidr": "10.30.0.0/29", "reserved": ["10.30.0.1-10.30.0.4"]}],
            "machines": [
                {"hostname": f"n{i}", "cpu": 4, "memory": 8192, "storage": 100} for i in range(3)
            ],
        }
    )
    async with MaasSimulator(inventory, timings=Timings.fast()) as maas:
        config = config_for(palette, maas, pki, node_count=3)
        path = write_config(workdir / "pcg.yaml", config)
        done = await run_installer("-s", "true", "-c", str(path), "--output", "json")
        assert done.code == 1, done.output
        checks = {c["id"]: c for c in json.loads(done.stdout)["preflight"]["checks"]}
        assert checks["maas.ips"]["status"] == "failed"
        assert (
            "10.30.0.0/29 has 2 unreserved address(es), 4 needed" in checks["maas.ips"]["message"]
        )
        assert "+ 1 for the API server endpoint" in checks["maas.ips"]["message"]


def test_host_must_be_linux_x86_64() -> None:
    assert check_host(HostFacts("Linux", "x86_64")).status is Status.OK
    for system, machine in (("Linux", "aarch64"), ("Darwin", "arm64"), ("Windows", "AMD64")):
        check = check_host(HostFacts(system, machine))
        assert check.status is Status.FAILED
        assert f"{system} {machine}" in check.message and "Linux x86-64" in check.message


def test_config_problems_name_the_setting() -> None:
    config = InstallConfig(
        name="x", palette_endpoint="https://p.example.com/", username="a@b.co", password="p",
        pairing_code="A1B2C3", maas_endpoint="http://m:5240/MAAS/api/2.0", maas_api_key="a:b",
    )  # fmt: skip
    fields = {p.field: p.message for p in config.problems()}
    assert "trailing slash" in fields["palette.endpoint"]
    assert "goes past MAAS's root" in fields["maas.apiEndpoint"]
    assert "maas.apiKey" in fields
    assert "A1B2C3" not in " ".join(fields.values())


async def test_untrusted_palette_and_unreachable_maas(
    palette: PaletteSimulator, maas: MaasSimulator, pki: Pki
) -> None:
    from installer.preflight import preflight
    from tests.support.net import free_port

    config = config_for(
        palette, maas, pki, palette_ca_file=None,
        maas_endpoint=f"http://127.0.0.1:{free_port()}/MAAS",
    )  # fmt: skip
    report = await preflight(config, request_timeout=5)
    login = report.get("palette.login")
    assert login.status is Status.FAILED
    assert "not trusted" in login.message and "--ca-file" in login.message
    assert report.get("palette.pairingCode").status is Status.SKIPPED
    endpoint = report.get("maas.endpoint")
    assert endpoint.status is Status.FAILED and "does not answer" in endpoint.message
    for check_id in ("maas.apiKey", "maas.zone", "maas.machines", "maas.ips"):
        check = report.get(check_id)
        assert check.status is Status.SKIPPED and "MAAS is not reachable" in check.message
    assert not report.ok and len(report.failures) == 2
