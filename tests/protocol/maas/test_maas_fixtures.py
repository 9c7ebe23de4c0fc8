"""Every real MAAS response kept next to the repository parses into the client's types.

The fixtures live outside the repository (``../shared/maas-fixtures`` from the repository root)
and are read at run time only; without them the test is skipped, saying so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from protocol.maas import Domain, IpRange, Machine, NodeStatus, PowerState, ResourcePool, Zone


def _repo_root() -> Path:
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file():
            return parent
    raise RuntimeError("repository root (with pyproject.toml) not found above this test")


FIXTURES = _repo_root().parent / "shared" / "maas-fixtures"

# file name prefix -> the client type one item parses into
PARSERS: dict[str, type[Domain | Machine | ResourcePool | IpRange | Zone]] = {
    "domains_list": Domain,
    "machine_allocate": Machine,
    "machine_deployed": Machine,
    "machine_deploying": Machine,
    "machines_list": Machine,
    "resourcepools_list": ResourcePool,
    "subnet_unreserved_ip_ranges": IpRange,
    "zone_get": Zone,
}


def _fixture_files() -> list[Path]:
    return sorted(FIXTURES.glob("*.json")) if FIXTURES.is_dir() else []


def _load(name: str) -> Any:
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"MAAS fixture {name} not found in ../shared/maas-fixtures next to the repo")
    return json.loads(path.read_text(encoding="utf-8"))


def test_fixture_directory_present() -> None:
    if not _fixture_files():
        pytest.skip(
            f"no MAAS response fixtures at {FIXTURES} (../shared/maas-fixtures relative to the "
            "repository root); they are reference data kept outside the repository"
        )
    assert {path.name.split(".")[0] for path in _fixture_files()} <= set(PARSERS)


@pytest.mark.parametrize("prefix", sorted(PARSERS))
def test_every_fixture_parses(prefix: str) -> None:
    matches = [path for path in _fixture_files() if path.name.startswith(prefix + ".")]
    if not matches:
        pytest.skip(f"no fixture {prefix}.*.json in {FIXTURES}")
    for path in matches:
        data = json.loads(path.read_text(encoding="utf-8"))
        items = data if isinstance(data, list) else [data]
        assert items, f"{path.name} is empty"
        kind = PARSERS[prefix]
        for item in items:
            parsed = kind.from_json(item)
            assert isinstance(parsed, kind)
            # the identifying field of every type came through
            identity = next(
                (getattr(parsed, f) for f in ("system_id", "name", "start") if hasattr(parsed, f)),
                None,
            )
            assert identity, f"{path.name}: {parsed!r} lost its identity"


def test_allocated_machine_fields() -> None:
    machine = Machine.from_json(_load("machine_allocate.maas-examples.json"))
    assert machine.system_id == "thr3am"
    assert machine.status is NodeStatus.ALLOCATED
    assert machine.status_label == "Allocated"
    assert machine.fqdn == "calm-cod.sample"
    assert machine.zone is not None and machine.zone.name == "zone-north"
    assert machine.pool is not None and machine.pool.name == "default"
    assert machine.domain is not None and machine.domain.name == "sample"
    assert machine.cpu_count == 3 and machine.memory == 8192
    assert machine.storage_gb == pytest.approx(9.2046, rel=1e-3)
    assert machine.owner == "admin"
    assert machine.raw["architecture"] == "i386/generic"


def test_deploying_then_deployed() -> None:
    deploying = Machine.from_json(_load("machine_deploying.yorc.json"))
    deployed = Machine.from_json(_load("machine_deployed.yorc.json"))
    assert deploying.status is NodeStatus.DEPLOYING and deploying.ip_addresses == ()
    assert deploying.power_state is PowerState.OFF
    assert deployed.status is NodeStatus.DEPLOYED
    assert deployed.ip_addresses == ("172.20.0.114",)
    assert deployed.fqdn == "alert-buck.maas"
    assert deployed.power_state is PowerState.ON
    assert deployed.distro_series == "focal" and deployed.osystem == "ubuntu"


def test_trimmed_machine_without_status_or_pool() -> None:
    (machine,) = [Machine.from_json(item) for item in _load("machines_list.gomaasclient.json")]
    assert machine.status is None and machine.status_code is None
    assert machine.status_label == "unknown"
    assert machine.pool is None
    assert machine.power_state is PowerState.UNKNOWN
    assert machine.tag_names == ("virtual",)


def test_ranges_pools_domains_zone() -> None:
    raw_ranges = _load("subnet_unreserved_ip_ranges.maas-examples.json")
    ranges = [IpRange.from_json(item) for item in raw_ranges]
    assert ranges[0] == IpRange("172.16.2.2", "172.16.2.2", 1)
    assert sum(r.num_addresses for r in ranges) == 237
    pools = [ResourcePool.from_json(item) for item in _load("resourcepools_list.gomaasclient.json")]
    assert pools == [ResourcePool(0, "default", "Default pool")]
    domains = [Domain.from_json(item) for item in _load("domains_list.maas-examples.json")]
    assert [d.name for d in domains if d.is_default] == ["maas"]
    assert Zone.from_json(_load("zone_get.gomaasclient.json")) == Zone(1, "default", "")


def test_unknown_fields_and_missing_optional_ones_are_tolerated() -> None:
    machine = Machine.from_json({"system_id": "abc123", "hostname": "n1", "brand_new": {"x": 1}})
    assert machine.system_id == "abc123"
    assert machine.zone is None and machine.ip_addresses == () and machine.status is None
    weird = Machine.from_json({"system_id": "a", "hostname": "b", "status": 99, "memory": "lots"})
    assert weird.status is None and weird.status_code == 99 and weird.memory == 0
    assert weird.status_label == "status 99"
    with pytest.raises(TypeError, match="must be a JSON object"):
        Machine.from_json(["not", "a", "machine"])
