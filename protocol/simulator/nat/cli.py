"""``pcg-sim nat``: the NAT topology from the command line (a thin layer over NatTopology).

::

    pcg-sim nat up [--prefix P] [--network CIDR] [--proxy [--proxy-user U --proxy-password W]]
    pcg-sim nat status [--json]
    pcg-sim nat exec gateway -- python3 -m http.server
    pcg-sim nat idle-timeout [SECONDS]
    pcg-sim nat impair public|private|both [--delay-ms MS] [--loss-percent PCT]
    pcg-sim nat link gateway|maas|proxy|uplink up|down
    pcg-sim nat flush
    pcg-sim nat stale-flows [drop|reset]
    pcg-sim nat proxy-restart
    pcg-sim nat down

Every sub-command takes ``--prefix`` (default ``$PCG_SIM_NAT_PREFIX`` or ``pcg``); ``up`` takes
``--network`` (default ``$PCG_SIM_NAT_NETWORK`` or 198.19.0.0/16). All need root.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from collections.abc import Callable
from typing import Any

from protocol.simulator.nat import netns
from protocol.simulator.nat.exceptions import NatError
from protocol.simulator.nat.firewall import StaleFlowAction
from protocol.simulator.nat.impair import ImpairmentBackend
from protocol.simulator.nat.network import NatTopology
from protocol.simulator.nat.topology import (
    DEFAULT_NETWORK,
    DEFAULT_PREFIX,
    Host,
    Link,
    NatPlan,
    ProxySettings,
    Side,
)

ENV_PREFIX = "PCG_SIM_NAT_PREFIX"
ENV_NETWORK = "PCG_SIM_NAT_NETWORK"

Handler = Callable[[argparse.Namespace], int]


def register(subparsers: Any) -> None:
    """Add ``nat`` and its sub-commands to the ``pcg-sim`` parser."""
    nat = subparsers.add_parser(
        "nat",
        help="NAT topology on network namespaces (root)",
        description="A NAT router, a public host and private hosts on network namespaces.",
    )
    nat.set_defaults(func=lambda _args: _usage(nat))
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--prefix",
        default=os.environ.get(ENV_PREFIX, DEFAULT_PREFIX),
        help=f"namespace/interface name prefix (default ${ENV_PREFIX} or %(default)s)",
    )
    commands = nat.add_subparsers(dest="nat_command", metavar="ACTION")

    def add(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(
            name, parents=[common], help=help, description=help
        )
        parser.set_defaults(func=_guarded(handler))
        return parser

    up = add("up", _up, "build the topology")
    up.add_argument(
        "--network",
        type=ipaddress.IPv4Network,
        default=ipaddress.IPv4Network(os.environ.get(ENV_NETWORK, str(DEFAULT_NETWORK))),
        help=f"address range, /22 or larger (default ${ENV_NETWORK} or %(default)s)",
    )
    up.add_argument("--proxy", action="store_true", help="add the proxy host (the only way out)")
    up.add_argument("--proxy-port", type=int, default=8888)
    up.add_argument("--proxy-user", help="tinyproxy BasicAuth user")
    up.add_argument("--proxy-password", help="tinyproxy BasicAuth password")
    up.add_argument("--replace", action="store_true", help="tear down an existing one first")
    up.add_argument("--idle-timeout", type=int, metavar="SECONDS", help="see idle-timeout")

    add("down", _down, "tear down everything with the prefix (also after a crash)")

    status = add("status", _status, "show hosts, addresses and knob settings")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    run = add("exec", _exec, "run a command inside a host: exec HOST -- CMD [ARGS...]")
    run.add_argument("host", choices=[host.value for host in Host])
    run.add_argument("argv", nargs=argparse.REMAINDER, help="the command (after --)")

    idle = add("idle-timeout", _idle_timeout, "show or set the router's TCP established timeout")
    idle.add_argument("seconds", type=int, nargs="?")

    impair = add("impair", _impair, "delay/drop packets leaving the router on a side")
    impair.add_argument("side", choices=[*(side.value for side in Side), "both"])
    impair.add_argument("--delay-ms", type=float, default=0.0)
    impair.add_argument("--loss-percent", type=float, default=0.0)
    impair.add_argument(
        "--backend",
        choices=[backend.value for backend in ImpairmentBackend],
        default=ImpairmentBackend.AUTO.value,
        help="netem, nfqueue (userspace delay) or auto: netem when the kernel has it",
    )

    link = add("link", _link, "pull or plug back a cable")
    link.add_argument("link", choices=[link.value for link in Link])
    link.add_argument("state", choices=["up", "down"])

    add("flush", _flush, "flush the router's conntrack table")

    stale = add("stale-flows", _stale_flows, "show or set what happens to forgotten flows")
    stale.add_argument("action", choices=[action.value for action in StaleFlowAction], nargs="?")

    add("proxy-restart", _proxy_restart, "restart tinyproxy on the proxy host")


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _guarded(handler: Handler) -> Handler:
    def guarded(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (NatError, ValueError, TimeoutError) as exc:
            print(f"pcg-sim nat {args.nat_command}: error: {exc}", file=sys.stderr)
            return 1

    return guarded


def _up(args: argparse.Namespace) -> int:
    proxy = None
    if args.proxy:
        proxy = ProxySettings(args.proxy_port, args.proxy_user, args.proxy_password)
    topology = NatTopology(NatPlan(prefix=args.prefix, network=args.network, proxy=proxy))
    topology.up(replace=args.replace)
    if args.idle_timeout is not None:
        topology.set_idle_timeout(args.idle_timeout)
    print(topology.status().render(), end="")
    return 0


def _down(args: argparse.Namespace) -> int:
    NatTopology.attach(args.prefix).down()
    return 0


def _status(args: argparse.Namespace) -> int:
    status = NatTopology.attach(args.prefix).status()
    print(status.to_json() if args.json else status.render(), end="\n" if args.json else "")
    return 0


def _exec(args: argparse.Namespace) -> int:
    command = list(args.argv)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise ValueError("no command given: pcg-sim nat exec HOST -- CMD [ARGS...]")
    topology = NatTopology.attach(args.prefix)
    netns.check_support()
    namespace = topology.namespace(args.host)
    if namespace not in netns.list_namespaces():
        raise ValueError(f"host {args.host!r} does not exist (no namespace {namespace!r})")
    argv = topology.exec_argv(args.host, command)
    os.execv(argv[0], argv)


def _idle_timeout(args: argparse.Namespace) -> int:
    topology = NatTopology.attach(args.prefix)
    if args.seconds is not None:
        topology.set_idle_timeout(args.seconds)
    print(topology.idle_timeout())
    return 0


def _impair(args: argparse.Namespace) -> int:
    topology = NatTopology.attach(args.prefix)
    sides = list(Side) if args.side == "both" else [Side(args.side)]
    for side in sides:
        backend = topology.set_impairment(
            side,
            delay_ms=args.delay_ms,
            loss_percent=args.loss_percent,
            backend=ImpairmentBackend(args.backend),
        )
        impairment = topology.impairment(side)
        print(
            f"{side.value}: delay {impairment.delay_ms:g} ms, loss {impairment.loss_percent:g}%"
            f" [{backend.value if backend else 'none'}]"
        )
    return 0


def _link(args: argparse.Namespace) -> int:
    NatTopology.attach(args.prefix).set_link(args.link, up=args.state == "up")
    return 0


def _flush(args: argparse.Namespace) -> int:
    NatTopology.attach(args.prefix).flush_conntrack()
    return 0


def _stale_flows(args: argparse.Namespace) -> int:
    topology = NatTopology.attach(args.prefix)
    if args.action is not None:
        topology.set_stale_flow_action(StaleFlowAction(args.action))
    print(topology.stale_flow_action().value)
    return 0


def _proxy_restart(args: argparse.Namespace) -> int:
    proxy = NatTopology.attach(args.prefix).proxy
    if proxy is None:
        raise ValueError(f"topology {args.prefix!r} has no proxy host (up --proxy)")
    proxy.restart()
    print(f"tinyproxy restarted; log: {proxy.log_path}")
    return 0
