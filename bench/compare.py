"""Our tunnel against OpenSSH reverse forwarding (``ssh -R``) and a direct connection.

The same workloads, side by side in one run, through three paths to one origin (a raw asyncio
TCP server in this process, as in ``bench/tunnel.py``), everything on 127.0.0.1:

- direct: caller -> origin;
- tunnel: caller -> hub CONNECT listener -> websocket -> agent -> origin (the real hub and
  agent as subprocesses, on uvloop, their default);
- ssh -R: caller -> sshd (forward port) -> SSH connection -> ``ssh -N -R`` -> origin (Debian
  openssh-server and openssh-client, started here with throwaway keys; the default cipher,
  compression off as by default). The ssh client dials out to sshd as our agent dials the hub.

Measured: bulk MB/s both ways (download origin -> caller, upload), median of rounds; small HTTP
request latency p50/p99 on keep-alive connections at concurrency 1 and 100, requests/s at 100;
for information a new connection per request (a new CONNECT stream, a new forwarded channel).
Ratios come from the one run. Targets: bulk through the tunnel >= 0.5x ``ssh -R`` (the goal
beyond: 1x) in both directions; p50 (keep-alive, concurrency 1) <= 1.5x ``ssh -R``.

Usage: ``python bench/compare.py [--json | --markdown] [--quick]``. Without a usable OpenSSH it
says why and exits with status 77.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script from a checkout that is not installed
    sys.path.insert(0, str(REPO_ROOT))
BENCH_DIR = str(Path(__file__).resolve().parent)
if BENCH_DIR not in sys.path:  # imported as a module (not run as a script)
    sys.path.insert(0, BENCH_DIR)

import _tunnel_support as support  # noqa: E402
from _ssh_support import OpenSsh, SshReverseForward, find_openssh  # noqa: E402
from _tunnel_support import HOST, Tunnel, start_origin, summarize_ms  # noqa: E402

import protocol  # noqa: E402
from protocol.aio.loop import run as run_loop  # noqa: E402

MiB = 1024 * 1024
TARGETS = {"bulk_vs_ssh_min": 0.5, "p50_vs_ssh_max": 1.5}
BULK_GOAL = 1.0  # beyond the target
PATHS = ("direct", "tunnel", "ssh")
CONCURRENCY = (1, 100)
MODES = {"keepalive": "keep-alive", "new_connection": "new connection per request"}

Addr = tuple[str, int]


@dataclass(frozen=True)
class Profile:
    name: str
    bulk_bytes: int
    bulk_rounds: int
    latency_rounds: int
    #: keep-alive: requests at concurrency 1 per round; requests per connection at 100
    c1_requests: int
    c100_requests_per_conn: int
    #: a new connection per request: requests at concurrency 1; per worker at 100
    fresh_c1_requests: int
    fresh_c100_per_worker: int
    warmup_requests: int
    #: no single measurement step runs longer than this (then it stops with what it has)
    step_seconds: float


#: Latency rounds are short and many, the paths in rotating order within each: on a shared
#: machine, load that comes and goes then falls on all three paths alike.
DEFAULT = Profile("default", 256 * MiB, 3, 12, 500, 20, 20, 2, 200, 10.0)
QUICK = Profile("quick", 16 * MiB, 1, 2, 200, 5, 10, 1, 50, 2.0)


#: the exit status when OpenSSH cannot be used (the automake convention for "skipped")
EXIT_NO_OPENSSH = 77


class NoOpenSsh(support.BenchError):
    pass


@dataclass
class Route:
    """Where a caller connects for one path (with the CONNECT head to send first, if any), and
    the CPU seconds used so far by the path's relaying processes."""

    addr: Addr
    head: bytes | None
    relay_cpu: Callable[[], float] | None


def _rotated(round_index: int) -> list[str]:
    """The paths in a different order each round (none always goes first)."""
    shift = round_index % len(PATHS)
    return list(PATHS[shift:] + PATHS[:shift])


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


# ---------------------------------------------------------------------------------------------
# Bulk


async def bench_bulk(profile: Profile, paths: dict[str, Route]) -> dict[str, Any]:
    n = profile.bulk_bytes
    timeout = max(60.0, n / 10e6)  # >= 10 MB/s or it is broken
    for path in paths.values():  # warm up every path once (small)
        for direction in ("download", "upload"):
            await support.time_transfer(path.addr, path.head, direction, 4 * MiB, timeout)
    mbps: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    for round_index in range(profile.bulk_rounds):
        for direction in ("download", "upload"):
            for name in _rotated(round_index):
                path = paths[name]
                cpu0 = path.relay_cpu() if path.relay_cpu else 0.0
                seconds = await support.time_transfer(path.addr, path.head, direction, n, timeout)
                cpu1 = path.relay_cpu() if path.relay_cpu else 0.0
                mbps.setdefault((direction, name), []).append(n / seconds / 1e6)
                cpu.setdefault((direction, name), []).append((cpu1 - cpu0) / (n / 1e9))
    result: dict[str, Any] = {"bytes": n, "rounds": profile.bulk_rounds}
    for direction in ("download", "upload"):
        row: dict[str, Any] = {
            f"{name}_mb_per_s": statistics.median(mbps[(direction, name)]) for name in PATHS
        }
        row["tunnel_to_ssh"] = _ratio(row["tunnel_mb_per_s"], row["ssh_mb_per_s"])
        row["tunnel_to_direct"] = _ratio(row["tunnel_mb_per_s"], row["direct_mb_per_s"])
        row["ssh_to_direct"] = _ratio(row["ssh_mb_per_s"], row["direct_mb_per_s"])
        row["rounds_mb_per_s"] = {name: mbps[(direction, name)] for name in PATHS}
        row["relay_cpu_s_per_gb"] = {
            name: statistics.median(cpu[(direction, name)])
            for name in ("tunnel", "ssh")  # hub + agent; sshd + ssh
        }
        result[direction] = row
    return result


# ---------------------------------------------------------------------------------------------
# Small requests


async def bench_latency(profile: Profile, paths: dict[str, Route]) -> dict[str, Any]:
    modes = support.latency_modes(profile, "new_connection")
    samples: dict[tuple[str, int, str], list[int]] = {}
    rates: dict[tuple[str, int, str], list[float]] = {}
    cpu: dict[tuple[str, int, str], float] = {}
    served: dict[tuple[str, int, str], int] = {}  # requests measured and warm-up requests
    for round_index in range(profile.latency_rounds):
        for mode, measure in modes.items():
            for concurrency in CONCURRENCY:
                for name in _rotated(round_index):
                    path = paths[name]
                    cpu0 = path.relay_cpu() if path.relay_cpu else 0.0
                    got, wall = await measure(path.addr, path.head, concurrency)
                    cpu1 = path.relay_cpu() if path.relay_cpu else 0.0
                    if not got:
                        raise support.BenchError(f"no {mode} request completed on the {name} path")
                    key = (mode, concurrency, name)
                    samples.setdefault(key, []).extend(got)
                    rates.setdefault(key, []).append(len(got) / wall)
                    cpu[key] = cpu.get(key, 0.0) + cpu1 - cpu0
                    warm = max(1, profile.warmup_requests // concurrency) * concurrency
                    served[key] = served.get(key, 0) + len(got) + (mode == "keepalive") * warm
    result: dict[str, Any] = {"rounds": profile.latency_rounds}
    for mode in modes:
        by_c: dict[str, Any] = {}
        for concurrency in CONCURRENCY:
            row: dict[str, Any] = {
                name: summarize_ms(samples[(mode, concurrency, name)]) for name in PATHS
            }
            for name in PATHS:
                row[name]["requests_per_s"] = statistics.median(rates[(mode, concurrency, name)])
            direct, via, ssh = row["direct"], row["tunnel"], row["ssh"]
            row["tunnel_to_ssh_p50"] = _ratio(via["p50_ms"], ssh["p50_ms"])
            row["tunnel_to_ssh_p99"] = _ratio(via["p99_ms"], ssh["p99_ms"])
            row["tunnel_added_p50_ms"] = via["p50_ms"] - direct["p50_ms"]
            row["ssh_added_p50_ms"] = ssh["p50_ms"] - direct["p50_ms"]
            row["tunnel_to_ssh_requests_per_s"] = _ratio(
                via["requests_per_s"], ssh["requests_per_s"]
            )
            # CPU of the relaying processes (hub + agent; sshd + ssh) per request, connection
            # set-up included: what a request costs the path, whatever else loads the machine
            row["relay_cpu_us_per_request"] = {
                name: cpu[(mode, concurrency, name)] / served[(mode, concurrency, name)] * 1e6
                for name in ("tunnel", "ssh")
            }
            by_c[f"c{concurrency}"] = row
        result[mode] = by_c
    c100 = result["keepalive"]["c100"]
    result["requests_per_s_c100"] = {
        **{name: c100[name]["requests_per_s"] for name in PATHS},
        "tunnel_to_ssh": c100["tunnel_to_ssh_requests_per_s"],
        "tunnel_to_direct": _ratio(
            c100["tunnel"]["requests_per_s"], c100["direct"]["requests_per_s"]
        ),
        "ssh_to_direct": _ratio(c100["ssh"]["requests_per_s"], c100["direct"]["requests_per_s"]),
    }
    return result


# ---------------------------------------------------------------------------------------------
# One run


async def bench_all(profile: Profile, openssh: OpenSsh, workdir: Path) -> dict[str, Any]:
    loop_name = type(asyncio.get_running_loop()).__module__.split(".")[0]
    server, origin_port = await start_origin()
    use_uvloop = importlib.util.find_spec("uvloop") is not None
    tunnel = Tunnel(workdir / "tunnel", use_uvloop, origin_port)
    ssh = SshReverseForward(openssh, workdir / "ssh", origin_port)
    (workdir / "tunnel").mkdir()
    try:
        started = time.perf_counter()
        await tunnel.start()
        await ssh.start()
        setup_seconds = time.perf_counter() - started
        paths = {
            "direct": Route((HOST, origin_port), None, None),
            "tunnel": Route(
                tunnel.connect_addr, tunnel.connect_head(origin_port), tunnel.relay_cpu
            ),
            "ssh": Route((HOST, ssh.forward_port), None, ssh.cpu_seconds),
        }
        started = time.perf_counter()
        bulk = await bench_bulk(profile, paths)
        bulk_seconds = time.perf_counter() - started
        latency = await bench_latency(profile, paths)
        latency_seconds = time.perf_counter() - started - bulk_seconds
    finally:
        ssh.stop()
        tunnel.stop()
        server.close()
    return {
        "bench_loop": loop_name,
        "hub_agent_loop": "uvloop" if use_uvloop else "asyncio",
        "openssh": dict(ssh.info),
        "bulk": bulk,
        "latency": latency,
        "seconds": {"setup": setup_seconds, "bulk": bulk_seconds, "latency": latency_seconds},
    }


def run(profile: Profile) -> dict[str, Any]:
    started = time.perf_counter()
    openssh = find_openssh()
    if isinstance(openssh, str):
        raise NoOpenSsh(openssh)
    support.raise_nofile_limit()
    have_uvloop = importlib.util.find_spec("uvloop") is not None
    with tempfile.TemporaryDirectory(prefix="pcg-bench-compare-") as tmp:
        measured = run_loop(bench_all(profile, openssh, Path(tmp)), use_uvloop=have_uvloop)
    uvloop_version = None
    if have_uvloop:
        import uvloop

        uvloop_version = str(getattr(uvloop, "__version__", "?"))
    bulk, latency = measured["bulk"], measured["latency"]
    bulk_vs_ssh = min(bulk[d]["tunnel_to_ssh"] for d in ("download", "upload"))
    p50_vs_ssh = latency["keepalive"]["c1"]["tunnel_to_ssh_p50"]
    p50_vs_ssh_c100 = latency["keepalive"]["c100"]["tunnel_to_ssh_p50"]
    ok = {
        "bulk_vs_ssh": bulk_vs_ssh >= TARGETS["bulk_vs_ssh_min"],
        "p50_vs_ssh": p50_vs_ssh <= TARGETS["p50_vs_ssh_max"],
    }
    return {
        "benchmark": "compare",
        "mode": profile.name,
        "python": platform.python_version(),
        "uvloop": uvloop_version,
        "data_path": str(protocol.NATIVE),  # the hub and the agent run the same build
        "cpus": os.cpu_count(),
        "host": HOST,
        **measured,
        "targets": dict(TARGETS),
        "checks": {
            "bulk_vs_ssh": bulk_vs_ssh,  # the worse direction
            "p50_vs_ssh": p50_vs_ssh,  # keep-alive, concurrency 1
            "p50_vs_ssh_c100": p50_vs_ssh_c100,  # information
            "bulk_goal_1x_met": bulk_vs_ssh >= BULK_GOAL,
        },
        "ok": {**ok, "all": all(ok.values())},
        "elapsed_seconds": time.perf_counter() - started,
    }


# ---------------------------------------------------------------------------------------------
# Report


def _verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


@dataclass(frozen=True)
class Row:
    label: str
    values: dict[str, float]  # per path; a path left out has no figure ("-")
    spec: str  # format of a figure: ",.0f" for rates, ".3f" for ms, ".2f" for CPU


def _rows(result: dict[str, Any]) -> list[Row]:
    """The figures of the tables, one workload a row."""
    bulk, latency = result["bulk"], result["latency"]
    rows: list[Row] = []
    for direction in ("download", "upload"):
        row = bulk[direction]
        rows.append(
            Row(f"bulk {direction}, MB/s", {p: row[f"{p}_mb_per_s"] for p in PATHS}, ",.0f")
        )
    for mode, label in (("keepalive", "keep-alive"), ("new_connection", "new conn")):
        for c in CONCURRENCY:
            row = latency[mode][f"c{c}"]
            for q in ("p50", "p99"):
                rows.append(
                    Row(f"{label} c{c} {q}, ms", {p: row[p][f"{q}_ms"] for p in PATHS}, ".3f")
                )
            if c > 1:
                rates = {p: row[p]["requests_per_s"] for p in PATHS}
                rows.append(Row(f"{label} c{c}, req/s", rates, ",.0f"))
    for direction in ("download", "upload"):
        cpu = bulk[direction]["relay_cpu_s_per_gb"]
        rows.append(Row(f"relay CPU {direction}, s/GB", dict(cpu), ".2f"))
    for c in CONCURRENCY:
        cpu = latency["keepalive"][f"c{c}"]["relay_cpu_us_per_request"]
        rows.append(Row(f"relay CPU c{c}, us/req", dict(cpu), ",.1f"))
    return rows


def _cells(row: Row) -> list[str]:
    """direct, tunnel, ssh -R, then the ratios tunnel/ssh, tunnel/direct, ssh/direct."""
    values = row.values

    def figure(path: str) -> str:
        value = values.get(path)
        if value is None:
            return "-"
        return format(value, row.spec) if math.isfinite(value) else "n/a"

    def ratio(a: str, b: str) -> str:
        if a not in values or b not in values:
            return ""
        value = _ratio(values[a], values[b])
        return f"{value:.2f}x" if math.isfinite(value) else "n/a"

    return [
        *(figure(p) for p in PATHS),
        ratio("tunnel", "ssh"),
        ratio("tunnel", "direct"),
        ratio("ssh", "direct"),
    ]


COLUMNS = ["direct", "tunnel", "ssh -R", "tunnel/ssh", "tunnel/dir", "ssh/dir"]


def _header(result: dict[str, Any]) -> list[str]:
    ssh = result["openssh"]
    bulk = result["bulk"]
    return [
        f"Python {result['python']}, bench process (origin and callers) on "
        f"{result['bench_loop']}, hub and agent on {result['hub_agent_loop']} (uvloop "
        f"{result['uvloop'] or 'not installed'}); {result['cpus']} CPUs; all on {result['host']}.",
        f"Tunnel data path (hub and agent): {result['data_path']}.",
        f"{ssh.get('version', 'OpenSSH')}: cipher {ssh.get('cipher', '?')} (MAC "
        f"{ssh.get('mac', '?')}), compression {ssh.get('compression', '?')} (the ssh default: "
        f"Compression {ssh.get('compression_configured', '?')}).",
        f"Bulk: {bulk['bytes'] // MiB} MiB per transfer, median of {bulk['rounds']}. Latency: "
        f"{result['latency']['rounds']} rounds pooled, the paths in rotating order.",
    ]


def format_table(result: dict[str, Any]) -> str:
    width = 26
    lines = [f"Tunnel vs ssh -R vs direct ({result['mode']})", *_header(result), ""]
    lines.append(f"{'workload':<{width}}" + "".join(f" {c:>10}" for c in COLUMNS))
    for row in _rows(result):
        lines.append(f"{row.label:<{width}}" + "".join(f" {c:>10}" for c in _cells(row)))
    latency = result["latency"]
    lines += [
        "relay CPU: hub + agent for the tunnel, sshd + ssh for ssh -R, per GB of a bulk transfer "
        "and per keep-alive request (set-up included). For ms and CPU a ratio above 1 means the "
        "tunnel costs more.",
        "added p50 latency vs direct, ms (tunnel / ssh -R):",
    ]
    for mode, label in MODES.items():
        lines.append(
            f"  {label:<27}"
            + "   ".join(
                f"c{c} {latency[mode][f'c{c}']['tunnel_added_p50_ms']:.3f} / "
                f"{latency[mode][f'c{c}']['ssh_added_p50_ms']:.3f}"
                for c in CONCURRENCY
            )
        )
    seconds = result["seconds"]
    lines += [
        "",
        *_targets(result),
        f"elapsed {result['elapsed_seconds']:.1f} s (set-up {seconds['setup']:.1f}, bulk "
        f"{seconds['bulk']:.1f}, latency {seconds['latency']:.1f})",
    ]
    return "\n".join(lines)


def _targets(result: dict[str, Any]) -> list[str]:
    targets, checks, ok = result["targets"], result["checks"], result["ok"]
    pure = (
        []
        if result["data_path"] == "compiled with mypyc"
        else [
            f"(Hub and agent ran {result['data_path']}; the agent image and the make targets "
            "build the compiled data path: protocol/NATIVE.md.)"
        ]
    )
    return pure + [
        f"Target: bulk tunnel/ssh -R >= {targets['bulk_vs_ssh_min']}x (worse direction): "
        f"{checks['bulk_vs_ssh']:.2f}x {_verdict(ok['bulk_vs_ssh'])}; goal 1x "
        f"{'met' if checks['bulk_goal_1x_met'] else 'not met'}",
        f"Target: p50 tunnel/ssh -R <= {targets['p50_vs_ssh_max']}x (keep-alive, c1): "
        f"{checks['p50_vs_ssh']:.2f}x {_verdict(ok['p50_vs_ssh'])} (at c100: "
        f"{checks['p50_vs_ssh_c100']:.2f}x)",
        "(On a few CPUs the c1 p50 of both paths moves with where the scheduler puts their "
        "processes: bench/placement.py measures both pinned the same ways.)",
    ]


def format_markdown(result: dict[str, Any]) -> str:
    lines = [
        "| workload | direct | our tunnel | `ssh -R` | tunnel / `ssh -R` | tunnel / direct "
        "| `ssh -R` / direct |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [f"| {row.label} | " + " | ".join(_cells(row)) + " |" for row in _rows(result)]
    lines += [
        "",
        f"`python bench/compare.py` ({result['mode']} run). " + " ".join(_header(result)),
        'c = concurrent connections; "new conn" = a new connection per request (through the '
        "tunnel a new CONNECT stream, through `ssh -R` a new forwarded channel). Relay CPU: hub "
        "+ agent for the tunnel, sshd + ssh for `ssh -R`, per GB of a bulk transfer and per "
        "keep-alive request (connection set-up included). For ms and CPU a ratio above 1 means "
        "the tunnel costs more. `ssh -R`, new conn c1: sshd leaves Nagle on (no TCP_NODELAY) "
        "for the SSH connection of a client without a session, so a channel opened right after "
        "the previous one closed waits for the client's delayed ACK (about 40 ms); spaced "
        "apart, a new forwarded channel costs about as much as a new CONNECT stream.",
        "",
        *(f"- {line}" for line in _targets(result)),
    ]
    return "\n".join(lines)


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print one JSON object")
    output.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--quick", action="store_true", help="a short run (for tests)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        result = run(QUICK if args.quick else DEFAULT)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except support.BenchError as exc:
        print(f"compare: {exc}", file=sys.stderr)
        return EXIT_NO_OPENSSH if isinstance(exc, NoOpenSsh) else 2
    finally:
        support.stop_all_children()
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.markdown:
        print(format_markdown(result))
    else:
        print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
