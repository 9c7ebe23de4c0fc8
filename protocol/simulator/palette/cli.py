"""``pcg-sim palette``: the Palette simulator on one port (REST API + tunnel hub)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
from typing import Any

from protocol.simulator.palette.model import PaletteUser
from protocol.simulator.palette.server import PaletteSimulator


def register(subparsers: Any) -> None:
    from protocol.simulator.cli import add_server_options

    parser = subparsers.add_parser(
        "palette",
        help="the Palette API and tunnel hub",
        description=(
            "Serve Palette's API for gateways, MAAS cloud accounts and clusters, with the tunnel "
            "endpoint agents dial (/v1/tunnel) on the same port. Prints one JSON line with the "
            "URLs when ready."
        ),
    )
    add_server_options(parser, "--insecure-http", "http/ws instead of https/wss")
    parser.add_argument(
        "--user",
        action="append",
        default=[],
        metavar="EMAIL:PASSWORD",
        help="a local tenant admin (repeatable)",
    )
    parser.add_argument(
        "--sso-user", action="append", default=[], metavar="EMAIL", help="an SSO-only user"
    )
    parser.add_argument("--state-file", help="keep gateways and clusters across restarts")
    parser.add_argument("--unhealthy-after", type=float, default=30.0)
    parser.add_argument("--log-level", default="info")
    parser.set_defaults(func=_main)


def _users(values: list[str]) -> list[PaletteUser]:
    users = []
    for value in values:
        email, sep, password = value.partition(":")
        if not sep or not email or not password:
            raise SystemExit("--user takes EMAIL:PASSWORD")
        users.append(PaletteUser(email, password))
    return users


def _main(args: argparse.Namespace) -> int:
    from protocol.aio.loop import run
    from protocol.simulator.cli import option_error, tls_files

    tls = tls_files(
        args.host, args.cert, args.key, insecure=args.insecure_http, insecure_flag="--insecure-http"
    )
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        sim = PaletteSimulator(
            _users(args.user),
            args.sso_user,
            tls=tls,
            unhealthy_after=args.unhealthy_after,
            ping_interval=args.ping_interval,
            ping_timeout=args.ping_timeout,
            state_file=args.state_file,
        )
    except ValueError as exc:  # the hub's config refused a keepalive option
        raise option_error("palette", exc) from None
    return run(_serve(sim, args.host, args.port))


async def _serve(sim: PaletteSimulator, host: str, port: int) -> int:
    await sim.start(host, port)
    print(
        json.dumps({"event": "listening", "url": sim.url, "tunnel_url": sim.tunnel_url}),
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await sim.stop()
    return 0
