"""pcg-sim's shared rules: plaintext only on loopback."""

from __future__ import annotations

import pytest

from protocol.simulator.cli import build_parser, tls_files


def test_plaintext_is_refused_off_loopback() -> None:
    with pytest.raises(SystemExit, match="only on a loopback address, not on 10.0.0.1"):
        tls_files("10.0.0.1", None, None, insecure=True, insecure_flag="--insecure-ws")
    with pytest.raises(SystemExit, match="give --cert and --key"):
        tls_files("127.0.0.1", None, None, insecure=False, insecure_flag="--insecure-ws")
    with pytest.raises(SystemExit, match="both"):
        tls_files("127.0.0.1", "c.pem", None, insecure=False, insecure_flag="--insecure-ws")
    assert tls_files("::1", None, None, insecure=True, insecure_flag="--x") is None
    assert tls_files("localhost", None, None, insecure=True, insecure_flag="--x") is None
    assert tls_files("0.0.0.0", "c", "k", insecure=False, insecure_flag="--x") == ("c", "k")


def test_every_simulator_is_registered() -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"hub", "maas", "palette", "nat"} <= set(commands)
