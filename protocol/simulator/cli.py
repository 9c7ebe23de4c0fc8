"""``pcg-sim``: one command, one sub-command per simulator.

Each sub-command lives in its own module, which provides ``register(subparsers)`` to add its
parser and sets ``func`` (``args -> int``) as the parser default. Modules are imported only
when they exist, so a simulator can land on its own.
"""

from __future__ import annotations

import argparse
import importlib
import ipaddress
import sys
from collections.abc import Sequence

#: sub-command name -> module that registers it
SUBCOMMANDS: dict[str, str] = {
    "hub": "protocol.simulator.hub",
    "maas": "protocol.simulator.maas.cli",
    "palette": "protocol.simulator.palette.cli",
    "nat": "protocol.simulator.nat.cli",
}


def option_error(command: str, exc: ValueError) -> SystemExit:
    """A config's ``"<field>=<value> must ..."`` refusal, naming the option it came from (any
    other refusal as it is)."""
    field_name, equals, rest = str(exc).partition("=")
    if not equals or not field_name.isidentifier():
        return SystemExit(f"pcg-sim {command}: {exc}")
    return SystemExit(f"pcg-sim {command}: --{field_name.replace('_', '-')} {rest}")


def add_server_options(parser: argparse.ArgumentParser, insecure_flag: str, plain: str) -> None:
    """Where a simulator listens, its TLS files (checked by :func:`tls_files`), and the tunnel's
    keepalive: the options the hub and the Palette simulator share."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--cert", help="PEM certificate chain for TLS")
    parser.add_argument("--key", help="PEM private key for TLS")
    parser.add_argument(
        insecure_flag,
        action="store_true",
        help=f"serve {plain} without TLS (allowed only on a loopback address)",
    )
    parser.add_argument("--ping-interval", type=float, default=10.0)
    parser.add_argument("--ping-timeout", type=float, default=10.0)


def tls_files(
    host: str, cert: str | None, key: str | None, *, insecure: bool, insecure_flag: str
) -> tuple[str, str] | None:
    """(cert, key) to serve TLS with, or None for plaintext, which only loopback may have."""
    if cert or key:
        if not (cert and key):
            raise SystemExit("give both --cert and --key")
        return cert, key
    if not insecure:
        raise SystemExit(f"give --cert and --key, or {insecure_flag} on a loopback address")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise SystemExit(
            f"{insecure_flag} is allowed only on a loopback address, not on {host}: "
            "give --cert and --key to serve TLS"
        )
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pcg-sim",
        description="Simulators for testing the gateway on one machine.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in SUBCOMMANDS.values():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module_name.startswith(exc.name):
                continue  # that simulator has not landed yet
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
