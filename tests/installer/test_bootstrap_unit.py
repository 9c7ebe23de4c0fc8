"""What a node's cloud-init carries, the machine survey and the address count, without
servers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from installer.bootstrap import NODE_CA_PATH, agent_config, new_install_id, user_data
from installer.config import InstallConfig, tunnel_url
from installer.machines import Placement, Survey, shortfalls
from installer.preflight import needed_addresses
from protocol.maas.models import Machine

KEY = "APn53wz232ZwBMxDp5:MHZIbUp3e4DJTjZEKg:mdEv33WAG536MhNC8mIywNLtjcDTnFAQ"


def config(**changes: Any) -> InstallConfig:
    values: dict[str, Any] = {
        "name": "gw",
        "palette_endpoint": "https://palette.example.com:8443",
        "username": "admin@example.com",
        "password": "Adm1n-very-secret",
        "pairing_code": "A1B2C3",
        "maas_endpoint": "http://10.11.12.13:5240/MAAS",
        "maas_api_key": KEY,
        "https_proxy": "http://proxy:3128",
        "node_count": 3,
    }
    values.update(changes)
    return InstallConfig(**values)


def machine(name: str, *, status: int = 4, cpu: int = 4, memory: int = 8192,
            storage_mb: float = 100000.0, zone: str = "default", pool: str = "default",
            subnet: int | None = 1) -> Machine:  # fmt: skip
    links = [{"subnet": {"id": subnet, "cidr": "10.20.0.0/24"}}] if subnet is not None else []
    return Machine.from_json(
        {
            "system_id": f"id-{name}", "hostname": name, "status": status, "cpu_count": cpu,
            "memory": memory, "storage": storage_mb, "zone": {"id": 1, "name": zone},
            "pool": {"id": 0, "name": pool}, "boot_interface": {"links": links},
        }
    )  # fmt: skip


def test_tunnel_url_from_the_endpoint() -> None:
    assert tunnel_url("https://console.spectrocloud.com") == (
        "wss://console.spectrocloud.com/v1/tunnel"
    )
    assert tunnel_url("https://127.0.0.1:8443") == "wss://127.0.0.1:8443/v1/tunnel"


def test_agent_config_has_what_the_agent_needs_and_never_the_password(tmp_path: Path) -> None:
    install_id = new_install_id()
    assert len(install_id) == 32 and int(install_id, 16) >= 0
    values = agent_config(config(), install_id)
    assert values["hub_url"] == "wss://palette.example.com:8443/v1/tunnel"
    assert values["pairing_code"] == "A1B2C3" and values["install_id"] == install_id
    assert values["gateway_name"] == "gw" and values["node_count"] == 3
    assert values["https_proxy"] == "http://proxy:3128" and "http_proxy" not in values
    assert "ca_bundle" not in values
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    text = user_data(config(palette_ca_file=str(ca)), install_id)
    assert "Adm1n-very-secret" not in text and "admin@example.com" not in text
    document = yaml.safe_load(text)
    files = {f["path"]: f for f in document["write_files"]}
    assert files[NODE_CA_PATH]["content"] == ca.read_text()
    agent = yaml.safe_load(files["/etc/pcg/agent.yaml"]["content"])
    assert agent["ca_bundle"] == NODE_CA_PATH
    assert agent["maas_api_key"] == KEY  # the agent needs it to serve MAAS calls


def test_survey_counts_and_explains() -> None:
    machines = [
        machine("a"), machine("b", cpu=8, memory=16384),
        machine("small", cpu=2, memory=4096, storage_mb=40000.0),
        machine("busy", status=6),
        machine("far", zone="az2"),
    ]  # fmt: skip
    survey = Survey.of(machines, Placement("default", "default"))
    assert [m.hostname for m in survey.qualifying] == ["a", "b"]  # smallest first
    text = survey.explain(3)
    assert "2 Ready machine(s)" in text and "3 needed" in text
    assert "small (2 CPUs < 4, 4096 MiB memory < 8192 MiB, 37.3 GiB storage < 60 GiB)" in text
    assert "busy (Deployed, not Ready)" in text
    assert "az2/default (1)" in text
    assert shortfalls(machine("ok")) == []


def test_addresses_needed_per_subnet() -> None:
    one = [machine("a")]
    assert needed_addresses(one, 1) == {1: 1}
    three = [machine("a"), machine("b", subnet=2), machine("c")]
    assert needed_addresses(three, 3) == {1: 3, 2: 1}  # + the API server endpoint
    assert needed_addresses([machine("x", subnet=None)], 1) == {None: 1}
