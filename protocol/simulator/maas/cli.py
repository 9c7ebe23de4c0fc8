"""``pcg-sim maas``: run the MAAS simulator until Ctrl-C / SIGTERM.

The API key is never printed. Give it with ``--api-key`` (or env ``PCG_SIM_MAAS_API_KEY``), or
``--api-key-file PATH``: the key is read from PATH, or generated and written there (mode 0600)
when PATH does not exist yet, so scripts can hand it to the client under test.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from protocol.maas.apikey import ApiKey
from protocol.maas.exceptions import InvalidApiKey
from protocol.simulator.maas.core import Timings
from protocol.simulator.maas.faults import Faults
from protocol.simulator.maas.inventory import Inventory, InventoryError
from protocol.simulator.maas.server import MaasSimulator, random_api_key

__all__ = ["main", "register", "run"]

ENV_API_KEY = "PCG_SIM_MAAS_API_KEY"

log = logging.getLogger("protocol.simulator.maas")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "maas",
        help="a simulated MAAS region (API 2.0)",
        description="Serve a simulated MAAS API 2.0 under http://HOST:PORT/MAAS/api/2.0/, with "
        "a simulator-only control endpoint under /MAAS/sim/ (no OAuth: keep it on loopback).",
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    net = parser.add_argument_group("listening")
    net.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    net.add_argument("--port", type=int, default=5240, help="port (default 5240; 0: any free)")
    key = parser.add_argument_group("credentials (never printed)")
    key.add_argument(
        "--api-key",
        default=os.environ.get(ENV_API_KEY),
        metavar="KEY",
        help=f"consumer_key:token_key:token_secret (default: env {ENV_API_KEY})",
    )
    key.add_argument(
        "--api-key-file",
        type=Path,
        metavar="PATH",
        help="read the key from PATH; if PATH does not exist, generate a key and write it there",
    )
    data = parser.add_argument_group("machines")
    data.add_argument("--inventory", type=Path, metavar="FILE", help="YAML inventory")
    data.add_argument(
        "--state-file",
        type=Path,
        metavar="FILE",
        help="JSON state: loaded at start if present (wins over --inventory), written on change",
    )
    data.add_argument(
        "--boot-agents",
        action="store_true",
        help="run the gateway agent of a deployed machine's cloud-init user_data as a local "
        "pcg-agent subprocess; stopped when the machine is released (protocol/simulator/maas/"
        "boot.py)",
    )
    data.add_argument(
        "--boot-dir",
        type=Path,
        metavar="DIR",
        help="with --boot-agents: keep each machine's files, state and agent.log under DIR "
        "(default: a temporary directory, removed on exit)",
    )
    data.add_argument(
        "--deploy-seconds", type=float, default=20.0, metavar="S", help="Deploying -> Deployed"
    )
    data.add_argument(
        "--release-seconds", type=float, default=3.0, metavar="S", help="Releasing -> Ready"
    )
    faults = parser.add_argument_group("fault injection (also at run time: POST /MAAS/sim/faults)")
    faults.add_argument(
        "--fail-deploy",
        action="append",
        default=[],
        metavar="MACHINE",
        help="hostname or system_id whose deployment fails (repeatable)",
    )
    faults.add_argument(
        "--latency", type=float, default=0.0, metavar="S", help="seconds added to each answer"
    )
    faults.add_argument(
        "--unavailable", type=int, default=0, metavar="N", help="answer the first N requests 503"
    )
    faults.add_argument(
        "--busy", type=int, default=0, metavar="N", help="answer the first N requests 409"
    )
    faults.add_argument(
        "--retry-after",
        type=int,
        default=1,
        metavar="S",
        help="Retry-After for --unavailable/--busy",
    )
    faults.add_argument(
        "--drop-connections",
        type=int,
        default=0,
        metavar="N",
        help="close the connection of the first N requests without answering",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])


def _api_key(args: argparse.Namespace) -> tuple[ApiKey, str]:
    """The key and a description of where it came from (for the start-up line)."""
    if args.api_key:
        return ApiKey.parse(args.api_key), "--api-key"
    path: Path | None = args.api_key_file
    if path is None:
        raise InvalidApiKey(
            f"give the MAAS API key with --api-key, env {ENV_API_KEY}, or --api-key-file PATH "
            "(a key is generated into PATH if it does not exist)"
        )
    if path.exists():
        return ApiKey.parse(path.read_text(encoding="utf-8")), f"--api-key-file {path}"
    key = random_api_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key.reveal() + "\n")
    return key, f"generated into {path}"


def build_simulator(args: argparse.Namespace) -> tuple[MaasSimulator, str]:
    key, key_source = _api_key(args)
    inventory = Inventory.from_yaml(args.inventory) if args.inventory else Inventory.default()
    faults = Faults()
    faults.fail_deployment(*args.fail_deploy)
    faults.set_latency(args.latency)
    if args.unavailable:
        faults.unavailable(args.unavailable, retry_after=args.retry_after)
    if args.busy:
        faults.busy(args.busy, retry_after=args.retry_after)
    if args.drop_connections:
        faults.drop_connections(args.drop_connections)
    simulator = MaasSimulator(
        inventory,
        key,
        Timings(deploy=args.deploy_seconds, release=args.release_seconds),
        faults=faults,
        state_file=args.state_file,
        boot_agents=args.boot_agents,
        boot_dir=args.boot_dir,
    )
    return simulator, key_source


async def serve(simulator: MaasSimulator, host: str, port: int, key_source: str) -> None:
    url = await simulator.start(host, port)
    print(
        f"MAAS simulator at {url} ({len(simulator.machines)} machines, API key "
        f"{key_source}, fingerprint {simulator.api_key.fingerprint}); control: "
        f"{simulator.control_url}",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await simulator.stop()


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper()),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        simulator, key_source = build_simulator(args)
    except (InvalidApiKey, InventoryError, ValueError, OSError) as exc:
        print(f"pcg-sim maas: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(simulator, args.host, args.port, key_source))
    except OSError as exc:
        print(f"pcg-sim maas: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pcg-sim maas")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
