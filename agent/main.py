"""``pcg-agent``: the long-running gateway agent.

A thin layer over :func:`run`: parse the command line, load the config, set up logging and
signals, run the tunnel client until SIGTERM or SIGINT, drain, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import protocol
from agent import __version__, logs
from agent.config import AgentConfig, load
from agent.credentials import CredentialStore
from agent.exceptions import ConfigError
from agent.maas_ops import MaasOperations
from agent.relay import Allowlist, Relay
from agent.rpc import AgentRpc, Progress, RpcMethod
from agent.tunnel import TunnelClient
from protocol.aio.loop import run as run_loop
from protocol.aio.procstats import process_stats
from protocol.rpc import Request

log = logging.getLogger("pcg.agent")


def status_method(config: AgentConfig, relay: Relay) -> RpcMethod:
    started = time.monotonic()

    async def status(request: Request, progress: Progress) -> Any:
        return {
            "gateway": config.gateway_name,
            "version": __version__,
            "uptime_s": round(time.monotonic() - started, 3),
            "active_relays": relay.active,
            "pid": os.getpid(),
            **process_stats(),
        }

    return status


def decommission_method(client: TunnelClient, store: CredentialStore | None) -> RpcMethod:
    async def decommission(request: Request, progress: Progress) -> Any:
        reason = str(request.params.get("reason", "deleted in Palette"))
        log.warning("decommissioning gateway=%s reason=%s", client.config.gateway_name, reason)
        if store is not None:
            store.decommission()
        # answer first, then stop: the response must reach Palette before the GOAWAY
        asyncio.get_running_loop().call_later(0.2, client.stop)
        return {}

    return decommission


async def run(config: AgentConfig) -> int:
    store = CredentialStore(config.state_dir) if config.state_dir else None
    if store is not None and store.decommissioned:
        log.warning(
            "gateway=%s was deleted in Palette (marker in %s); not starting. Reinstall the "
            "gateway to bring it back.",
            config.gateway_name,
            config.state_dir,
        )
        return 0
    relay = Relay(
        Allowlist(config.relay_allowlist), config.connect_timeout, config.relay_socket_buffer
    )
    operations = MaasOperations(config)
    rpc = AgentRpc({"agent.status": status_method(config, relay)})
    rpc.update(operations.methods())
    client = TunnelClient(config, stream_handler=relay, rpc_handler=rpc)
    rpc.add("agent.decommission", decommission_method(client, store))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, client.stop)
    log.info(
        "agent starting gateway=%s version=%s allowlist=%s dead_peer_bound=%.0fs data_path=%r",
        config.gateway_name,
        __version__,
        ",".join(config.relay_allowlist) or "(empty)",
        config.dead_peer_bound,
        str(protocol.NATIVE),
    )
    try:
        await client.run()
    finally:
        await operations.close()
    log.info("agent stopped gateway=%s", config.gateway_name)
    return 0


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(
        prog="pcg-agent",
        description="Gateway agent: keeps a reverse tunnel to the control plane open.",
    )
    parser.add_argument(
        "-c", "--config", default=env.get("PCG_CONFIG"), help="YAML config (or PCG_CONFIG)"
    )
    parser.add_argument("--check-config", action="store_true", help="validate and exit")
    parser.add_argument("--version", action="version", version=f"pcg-agent {__version__}")
    args = parser.parse_args(argv)
    try:
        config = load(args.config, env)
    except ConfigError as exc:
        print(f"pcg-agent: {exc}", file=sys.stderr)
        return 2
    logs.setup(
        config.log_level,
        config.log_format,
        {"gateway": config.gateway_name},
        secrets=config.secrets(),
    )
    if args.check_config:
        print(f"pcg-agent: config OK for gateway {config.gateway_name}")
        return 0
    return run_loop(run(config), use_uvloop=config.use_uvloop)


if __name__ == "__main__":
    sys.exit(main())
