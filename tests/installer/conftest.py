"""Fixtures for the installer tests: the Palette simulator (https, a CA made at test time) and
the MAAS simulator, both in the test's event loop on 127.0.0.1, and a valid config for them."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from installer import pcgyaml
from installer.config import InstallConfig
from installer.encryption import Sealer
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


BIN = Path(sys.executable).parent


def installer_env(**extra: str) -> dict[str, str]:
    """The environment of an installer subprocess: no proxies, no PCG_* from outside."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.lower().endswith("_proxy") and not k.startswith("PCG_")
    }
    env.update({"PCG_ENCRYPTION_PASSPHRASE": PASSPHRASE, "COLUMNS": "200", "TERM": "dumb"})
    env.update(extra)
    return env


@dataclass
class Finished:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


async def run_installer(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60.0
) -> Finished:
    """`pcg-installer ARGS` as a subprocess, while the simulators keep serving in this loop."""
    process = await asyncio.create_subprocess_exec(
        str(BIN / "pcg-installer"),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env or installer_env(),
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        out, err = await process.communicate()
        raise AssertionError(f"pcg-installer did not finish in {timeout}s:\n{out.decode()}\n"
                             f"{err.decode()}") from None  # fmt: skip
    assert process.returncode is not None
    return Finished(process.returncode, out.decode(), err.decode())


def write_config(path: Path, config: InstallConfig, passphrase: str = PASSPHRASE) -> Path:
    return pcgyaml.write(path, config, Sealer.new(passphrase))


FAST = ("--poll-interval", "0.1", "--register-timeout", "30", "--deploy-timeout", "20")
