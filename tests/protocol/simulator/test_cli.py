"""pcg-sim's shared rules (plaintext only on loopback) and the hub's option checks."""

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


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--relay-socket-buffer", "5", "--relay-socket-buffer 5 must be 0 (the kernel autotunes)"),
        ("--relay-socket-buffer", str(1 << 30), "or a byte count from 4096 to 67108864"),
        ("--ping-interval", "0", "--ping-interval 0.0 must be a positive number of seconds"),
        ("--ping-timeout", "-1", "--ping-timeout -1.0 must be a positive number of seconds"),
        ("--window-growth-budget", "-1", "--window-growth-budget -1 must be 0 (no window tuning)"),
        ("--ping-interval", "inf", "--ping-interval inf must be a positive number of seconds"),
    ],
)
def test_hub_refuses_an_option_out_of_range_by_its_name(option: str, value: str, says: str) -> None:
    args = build_parser().parse_args(
        ["hub", "--host", "127.0.0.1", "--insecure-ws", "--token", "gw=t", option, value]
    )
    with pytest.raises(SystemExit) as exited:
        args.func(args)  # refused before anything listens
    message = str(exited.value)
    assert message.startswith("pcg-sim hub: --") and says in message


def test_palette_refuses_a_keepalive_option_out_of_range_by_its_name() -> None:
    args = build_parser().parse_args(
        ["palette", "--host", "127.0.0.1", "--insecure-http", "--ping-timeout", "0"]
    )
    with pytest.raises(SystemExit) as exited:
        args.func(args)  # refused before anything listens
    expected = "pcg-sim palette: --ping-timeout 0.0 must be a positive number of seconds"
    assert str(exited.value) == expected
