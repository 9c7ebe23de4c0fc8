"""Fixtures for the installer tests: the Palette simulator (https, a CA made at test time) and
the MAAS simulator, both in the test's event loop on 127.0.0.1, and a valid config for them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from installer.config import InstallConfig
from protocol.simulator.maas import MaasSimulator, Timings
from protocol.simulator.palette import PaletteSimulator, PaletteUser
from tests.support.tls import Pki, make_pki

ADMIN = PaletteUser("admin@example.com", "Adm1n-pass!")
SSO_USER = "sso@example.com"
PASSPHRASE = "Corr3ct-Horse!"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def palette(pki: Pki) -> AsyncIterator[PaletteSimulator]:
    sim = PaletteSimulator(
        [ADMIN],
        [SSO_USER],
        tls=(pki.server_cert, pki.server_key),
        unhealthy_after=5.0,
        ping_interval=1.0,
        ping_timeout=2.0,
    )
    await sim.start("127.0.0.1", 0)
    yield sim
    await sim.stop()


@pytest.fixture
async def maas() -> AsyncIterator[MaasSimulator]:
    sim = MaasSimulator(timings=Timings(deploy=0.2, release=0.05))
    await sim.start("127.0.0.1", 0)
    yield sim
    await sim.stop()


def config_for(
    palette: PaletteSimulator, maas: MaasSimulator, pki: Pki, **overrides: Any
) -> InstallConfig:
    values: dict[str, Any] = {
        "name": "maas-pcg-1",
        "palette_endpoint": palette.url,
        "username": ADMIN.email,
        "password": ADMIN.password,
        "pairing_code": palette.issue_pairing_code(),
        "pod_cidr": "172.30.0.0/16",
        "service_range": "10.96.0.0/12",
        "maas_endpoint": maas.url,
        "maas_api_key": maas.api_key.reveal(),
        "node_count": 1,
        "palette_ca_file": str(pki.ca_cert),
    }
    values.update(overrides)
    return InstallConfig(**values)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "spectrocloud"
    path.mkdir()
    return path
