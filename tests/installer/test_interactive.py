"""Interactive mode driven through a real pseudo-terminal (pexpect): arrow keys pick the zone
and the pool, a MAAS endpoint without /MAAS is refused with the right message and asked again,
secrets are not echoed, and the pcg.yaml written loads back to the same answers."""

from __future__ import annotations

import asyncio
import io
import os
import stat
from pathlib import Path

import pexpect
import pytest

from installer import pcgyaml
from installer.config import InstallConfig
from protocol.simulator.maas import MaasSimulator
from protocol.simulator.palette import PaletteSimulator
from tests.support.tls import Pki

from .conftest import ADMIN, BIN, PASSPHRASE, installer_env

pytestmark = pytest.mark.timeout(90)

DOWN = "\x1b[B"
CLEAR = "\x15"  # Ctrl-U: clear the line (to replace a default)


class Terminal:
    """One pcg-installer on a pty, with the whole screen transcript kept."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.transcript = io.StringIO()
        self.child = pexpect.spawn(
            str(BIN / "pcg-installer"), args, env=env, encoding="utf-8",
            dimensions=(50, 220), timeout=15,
        )  # fmt: skip
        self.child.logfile_read = self.transcript

    def answer(self, prompt: str, keys: str) -> None:
        self.child.expect_exact(prompt)
        self.child.send(keys)

    def expect(self, text: str) -> None:
        self.child.expect_exact(text)


def drive(term: Terminal, palette: PaletteSimulator, maas: MaasSimulator, code: str) -> None:
    term.answer("Install Type", "\r")
    term.answer("Cloud Type", "\r")
    term.answer("Name", "pcg-tty\r")
    term.answer("Endpoint", CLEAR + palette.url + "\r")
    term.answer("Username", ADMIN.email + "\r")
    term.answer("Password", ADMIN.password + "\r")
    term.answer("Pairing Code", code + "\r")
    term.answer("HTTPS Proxy", "\r")
    term.answer("HTTP Proxy", "\r")
    term.answer("No Proxy", "127.0.0.1\r")
    term.expect("Pod CIDR")
    term.expect("172.31.0.0/16")  # pre-filled by --pod_cidr, shown as the default
    term.child.send("\r")
    term.answer("Service IP Range", "\r")  # the default, 10.96.0.0/12
    # the endpoint without /MAAS is refused on the spot, with what to enter instead
    term.answer("MAAS API Endpoint", maas.url.removesuffix("/MAAS") + "\r")
    term.expect("is missing /MAAS at the end")
    term.child.send("/MAAS\r")  # asked again: complete the same answer
    term.answer("MAAS API Key", maas.api_key.reveal() + "\r")
    term.answer("Domain", "\r")
    term.answer("Availability Zone", DOWN + "\r")  # default -> az2
    term.answer("Resource Pool", DOWN + "\r")  # default -> tenants
    term.expect("2 machine(s) in zone az2, pool tenants can be gateway nodes")
    term.answer("Nodes", "\r")  # one node (no HA)
    term.answer("Encryption passphrase", "weakpass\r")
    term.expect("the encryption passphrase needs")
    term.child.send(CLEAR + PASSPHRASE + "\r")
    term.answer("Passphrase again", PASSPHRASE + "\r")
    term.expect("Configuration:")
    term.child.expect(pexpect.EOF)
    term.child.close()


async def test_interactive_answers_round_trip_through_pcg_yaml(
    palette: PaletteSimulator, maas: MaasSimulator, pki: Pki, workdir: Path
) -> None:
    code = palette.issue_pairing_code()
    env = installer_env(PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm")
    del env["PCG_ENCRYPTION_PASSPHRASE"]  # so that it is asked
    term = Terminal(
        ["--workdir", str(workdir), "--ca-file", str(pki.ca_cert), "--pod_cidr",
         "172.31.0.0/16", "--config-only"],
        env,
    )  # fmt: skip
    try:
        # the simulators serve from this loop while the terminal is driven from a thread
        await asyncio.to_thread(drive, term, palette, maas, code)
    finally:
        term.child.terminate(force=True)
    transcript = term.transcript.getvalue()
    assert term.child.exitstatus == 0, transcript[-3000:]
    (install,) = list(workdir.iterdir())  # noqa: ASYNC240 - a test, after the run
    assert install.name.startswith("install-pcg-tty-")
    path = install / "pcg.yaml"
    assert str(path) in transcript  # the path is printed
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    expected = InstallConfig(
        name="pcg-tty",
        palette_endpoint=palette.url,
        username=ADMIN.email,
        password=ADMIN.password,
        pairing_code=code,
        no_proxy="127.0.0.1",
        pod_cidr="172.31.0.0/16",
        service_range="10.96.0.0/12",
        maas_endpoint=maas.url,
        maas_api_key=maas.api_key.reveal(),
        domain="maas",
        zone="az2",
        resource_pool="tenants",
        node_count=1,
        palette_ca_file=str(pki.ca_cert),
    )
    assert pcgyaml.load(path, PASSPHRASE) == expected
    # secrets were typed but never shown
    for secret in (ADMIN.password, code, maas.api_key.reveal(), PASSPHRASE):
        assert secret not in transcript
