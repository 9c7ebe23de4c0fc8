"""How where the processes run moves the tunnel's small-request latency (keep-alive, c1).

A request through the tunnel is a chain: the caller, the hub, the agent, the origin and back.
On a machine with few CPUs, the p50 depends on which processes share a CPU, which the
scheduler decides and changes. This script pins the hub, the agent and this process (callers
and origin) with ``sched_setaffinity`` in a few placements, and in each measures the p50 two
ways, side by side in one run:

- continuous: requests one after the other for a few seconds;
- in rounds: 200 warm-up and 500 measured requests on a new connection, after a pause, as
  ``bench/compare.py`` measures (where the other paths' turns make the pause).

"free" is no pinning. Everything runs on 127.0.0.1; Linux only (``sched_setaffinity``), and it
needs at least 2 CPUs. Usage: ``python bench/placement.py [--json] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = str(Path(__file__).resolve().parent)
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

import _tunnel_support as support  # noqa: E402
from _tunnel_support import Tunnel, keepalive_latencies, start_origin  # noqa: E402

from protocol.aio.loop import run as run_loop  # noqa: E402

#: name -> CPU index (of the ones this process may use) for hub, agent, this process; None: free
PLACEMENTS: dict[str, tuple[int | None, int | None, int | None]] = {
    "free": (None, None, None),
    "hub | agent, bench free": (0, 1, None),
    "hub | agent, bench with hub": (0, 1, 0),
    "hub | agent, bench with agent": (0, 1, 1),
    "hub + agent | bench": (0, 0, 1),
}


@dataclass(frozen=True)
class Profile:
    name: str
    continuous_seconds: float
    rounds: int
    pause: float


DEFAULT = Profile("default", 3.0, 12, 0.3)
QUICK = Profile("quick", 0.5, 2, 0.1)


def _p50_ms(samples: list[int]) -> float:
    return statistics.median(samples) / 1e6 if samples else float("nan")


async def _measure(tunnel: Tunnel, origin_port: int, profile: Profile) -> dict[str, float]:
    head = tunnel.connect_head(origin_port)
    continuous, _ = await keepalive_latencies(
        tunnel.connect_addr, head, 1, 10**9, 500, profile.continuous_seconds
    )
    rounds: list[int] = []
    for _ in range(profile.rounds):
        await asyncio.sleep(profile.pause)
        got, _ = await keepalive_latencies(tunnel.connect_addr, head, 1, 500, 200, 10.0)
        rounds.extend(got)
    return {"continuous_p50_ms": _p50_ms(continuous), "rounds_p50_ms": _p50_ms(rounds)}


async def bench(profile: Profile, workdir: Path) -> dict[str, Any]:
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        raise support.BenchError(f"needs at least 2 CPUs, this process may use {allowed}")
    server, origin_port = await start_origin()
    tunnel = Tunnel(workdir, True, origin_port)
    results: dict[str, Any] = {}
    try:
        await tunnel.start()
        assert tunnel.hub is not None and tunnel.agent is not None
        pids = (tunnel.hub.pid, tunnel.agent.pid, 0)
        await _measure(tunnel, origin_port, QUICK)  # warm up
        for name, cpus in PLACEMENTS.items():
            for pid, cpu in zip(pids, cpus, strict=True):
                os.sched_setaffinity(pid, set(allowed) if cpu is None else {allowed[cpu]})
            results[name] = await _measure(tunnel, origin_port, profile)
    finally:
        os.sched_setaffinity(0, set(allowed))
        tunnel.stop()
        server.close()
    return {"benchmark": "placement", "mode": profile.name, "cpus": len(allowed),
            "placements": results}  # fmt: skip


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"keep-alive c1 p50 through the tunnel, ms ({result['cpus']} CPUs; '|' separates CPUs)",
        f"{'placement':32} {'continuous':>11} {'in rounds':>10}",
    ]
    for name, row in result["placements"].items():
        lines.append(f"{name:32} {row['continuous_p50_ms']:11.3f} {row['rounds_p50_ms']:10.3f}")
    return "\n".join(lines)


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="a short run (for tests)")
    args = parser.parse_args(argv)
    if not hasattr(os, "sched_setaffinity"):
        print("placement.py needs sched_setaffinity (Linux)", file=sys.stderr)
        return 77
    signal.signal(signal.SIGTERM, _terminate)
    profile = QUICK if args.quick else DEFAULT
    try:
        with tempfile.TemporaryDirectory(prefix="pcg-placement-") as tmp:
            result = run_loop(bench(profile, Path(tmp)))
    except support.BenchError as exc:
        print(f"placement.py: {exc}", file=sys.stderr)
        return 77
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        support.stop_all_children()
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
