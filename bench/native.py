"""What the compiled build buys: hub and agent compiled with mypyc, and the same code as pure
Python, side by side in one run (protocol/NATIVE.md).

Two tunnels run at once, each a real hub and agent on 127.0.0.1: one loads the compiled
modules, the other runs with ``PCG_NATIVE=0``. Each agent's log says which build it runs, and
the script checks that before measuring. The two take turns, in alternating order, for:

- keep-alive c1 in rounds (a pause, then 200 warm-up and 500 measured requests, as
  ``bench/compare.py``), with the scheduler free;
- the same with every process on one CPU, where no request waits for a wake-up on another CPU
  and the p50 is close to the CPU time of the chain (Linux, 2 or more CPUs);
- keep-alive c100, requests per second;
- bulk download and upload;

and for each, the CPU time of both relays (hub and agent) per request or per GB. Needs a
compiled build (``make native``). Usage: ``python bench/native.py [--json] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = str(Path(__file__).resolve().parent)
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

import _tunnel_support as support  # noqa: E402
from _tunnel_support import Tunnel, keepalive_latencies, start_origin, time_transfer  # noqa: E402

import protocol  # noqa: E402
from protocol.frames import MiB  # noqa: E402
from protocol.native import ENV  # noqa: E402

#: build name -> extra environment of its hub and agent, and what its agent must log
BUILDS = {
    "compiled": ({}, "compiled with mypyc"),
    "pure": ({ENV: "0"}, f"pure Python ({ENV}=0)"),
}


@dataclass(frozen=True)
class Profile:
    name: str
    rounds: int
    pause: float
    c100_seconds: float
    bulk_bytes: int
    bulk_rounds: int


DEFAULT = Profile("default", 12, 0.3, 1.0, 256 * MiB, 3)
QUICK = Profile("quick", 2, 0.1, 0.2, 8 * MiB, 1)


@dataclass(frozen=True)
class Build:
    tunnel: Tunnel
    head: bytes


def _turns(builds: dict[str, Build], index: int) -> list[tuple[str, Build]]:
    order = list(builds.items())
    return order if index % 2 == 0 else order[::-1]


async def c1_rounds(builds: dict[str, Build], profile: Profile) -> dict[str, Any]:
    samples: dict[str, list[int]] = {name: [] for name in builds}
    cpu = dict.fromkeys(builds, 0.0)
    for index in range(profile.rounds):
        for name, build in _turns(builds, index):
            await asyncio.sleep(profile.pause)
            cpu0 = build.tunnel.relay_cpu()
            got, _ = await keepalive_latencies(
                build.tunnel.connect_addr, build.head, 1, 500, 200, 10
            )
            cpu[name] += build.tunnel.relay_cpu() - cpu0
            samples[name].extend(got)
    served = profile.rounds * 700
    return {
        name: {
            "p50_ms": statistics.median(samples[name]) / 1e6,
            "relay_cpu_us_per_request": cpu[name] / served * 1e6,
        }
        for name in builds
    }


async def c100(builds: dict[str, Build], profile: Profile) -> dict[str, Any]:
    rates: dict[str, list[float]] = {name: [] for name in builds}
    cpu = dict.fromkeys(builds, 0.0)
    served = dict.fromkeys(builds, 0)
    for index in range(max(2, profile.rounds // 4)):
        for name, build in _turns(builds, index):
            cpu0 = build.tunnel.relay_cpu()
            got, wall = await keepalive_latencies(
                build.tunnel.connect_addr, build.head, 100, 10**9, 1000, profile.c100_seconds
            )
            cpu[name] += build.tunnel.relay_cpu() - cpu0
            served[name] += len(got) + 1000
            rates[name].append(len(got) / wall)
    return {
        name: {
            "requests_per_s": statistics.median(rates[name]),
            "relay_cpu_us_per_request": cpu[name] / served[name] * 1e6,
        }
        for name in builds
    }


async def bulk(builds: dict[str, Build], profile: Profile, direction: str) -> dict[str, Any]:
    n = profile.bulk_bytes
    speeds: dict[str, list[float]] = {name: [] for name in builds}
    cpu = dict.fromkeys(builds, 0.0)
    for index in range(profile.bulk_rounds):
        for name, build in _turns(builds, index):
            cpu0 = build.tunnel.relay_cpu()
            seconds = await time_transfer(build.tunnel.connect_addr, build.head, direction, n, 120)
            cpu[name] += build.tunnel.relay_cpu() - cpu0
            speeds[name].append(n / seconds / 1e6)
    gigabytes = n * profile.bulk_rounds / 1e9
    return {
        name: {
            "mb_per_s": statistics.median(speeds[name]),
            "relay_cpu_s_per_gb": cpu[name] / gigabytes,
        }
        for name in builds
    }


def _pin(pids: list[int], cpus: set[int]) -> None:
    for pid in pids:
        os.sched_setaffinity(pid, cpus)


async def bench(profile: Profile, workdir: Path) -> dict[str, Any]:
    if not protocol.NATIVE.compiled:
        raise support.BenchError(f"needs a compiled build (make native); this is {protocol.NATIVE}")
    pinning = hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2
    server, origin_port = await start_origin()
    builds: dict[str, Build] = {}
    try:
        for name, (env, expected) in BUILDS.items():
            (workdir / name).mkdir()
            tunnel = Tunnel(workdir / name, True, origin_port, env=env)
            builds[name] = Build(tunnel, tunnel.connect_head(origin_port))
            await tunnel.start()
            log = (workdir / name / "agent.log").read_text(errors="replace")
            if f"data_path={expected!r}" not in log:
                raise support.BenchError(
                    f"the {name} agent does not run {expected!r}: {log[-500:]}"
                )
        await c1_rounds(builds, QUICK)  # warm up both
        result: dict[str, Any] = {"c1_free": await c1_rounds(builds, profile)}
        if pinning:
            allowed = set(os.sched_getaffinity(0))
            one = {min(allowed)}
            for build in builds.values():
                _pin(build.tunnel.pids(), one)
            os.sched_setaffinity(0, one)
            try:
                result["c1_one_cpu"] = await c1_rounds(builds, profile)
            finally:
                os.sched_setaffinity(0, allowed)
                for build in builds.values():
                    _pin(build.tunnel.pids(), allowed)
        result["c100"] = await c100(builds, profile)
        result["bulk_download"] = await bulk(builds, profile, "download")
        result["bulk_upload"] = await bulk(builds, profile, "upload")
    finally:
        for build in builds.values():
            build.tunnel.stop()
        server.close()
    for row in result.values():
        compiled, pure = row["compiled"], row["pure"]
        # None where the pure figure is 0: /proc counts CPU in clock ticks, a quick run may see none
        row["compiled_to_pure"] = {
            key: compiled[key] / pure[key] if pure[key] else None for key in compiled
        }
    return {
        "benchmark": "native",
        "mode": profile.name,
        "cpus": os.cpu_count(),
        "one_cpu_measured": pinning,
        **result,
    }


ROWS = [
    ("c1_free", "p50_ms", "keep-alive c1 p50 in rounds, free, ms", 3),
    ("c1_free", "relay_cpu_us_per_request", "  relay CPU, us/request", 1),
    ("c1_one_cpu", "p50_ms", "keep-alive c1 p50, all on one CPU, ms", 3),
    ("c1_one_cpu", "relay_cpu_us_per_request", "  relay CPU, us/request", 1),
    ("c100", "requests_per_s", "keep-alive c100, requests/s", 0),
    ("c100", "relay_cpu_us_per_request", "  relay CPU, us/request", 1),
    ("bulk_download", "mb_per_s", "bulk download, MB/s", 0),
    ("bulk_download", "relay_cpu_s_per_gb", "  relay CPU, s/GB", 2),
    ("bulk_upload", "mb_per_s", "bulk upload, MB/s", 0),
    ("bulk_upload", "relay_cpu_s_per_gb", "  relay CPU, s/GB", 2),
]


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"Hub and agent compiled (mypyc) vs pure Python, side by side ({result['mode']}; "
        f"{result['cpus']} CPUs; uvloop; relay CPU: hub + agent)",
        f"{'figure':40} {'compiled':>10} {'pure':>10} {'compiled/pure':>14}",
    ]
    for section, key, label, digits in ROWS:
        if section not in result:
            continue
        row = result[section]
        values = (row["compiled"][key], row["pure"][key])
        ratio = row["compiled_to_pure"][key]
        lines.append(
            f"{label:40} {values[0]:>10,.{digits}f} {values[1]:>10,.{digits}f} "
            + (f"{ratio:>13.2f}x" if ratio is not None else f"{'-':>14}")
        )
    if not result["one_cpu_measured"]:
        lines.append("(all on one CPU: not measured, it needs sched_setaffinity and 2 CPUs)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    support.raise_nofile_limit()
    profile = QUICK if args.quick else DEFAULT
    render = None if args.json else format_table
    return support.run_script("native", lambda workdir: bench(profile, workdir), render)


if __name__ == "__main__":
    sys.exit(main())
