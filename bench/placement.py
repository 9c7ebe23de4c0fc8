"""How where the processes run moves small-request latency (keep-alive, c1), ours and ``ssh -R``'s.

A request through a reverse tunnel is a chain of processes: the caller, the relay that listens
(our hub; sshd), the relay that dials out (our agent; ``ssh -R``), the origin and back. On a
machine with few CPUs, the p50 depends on which processes share a CPU, which the scheduler
decides and changes. This script pins the two relays of each path and this process (callers
and origin) with ``sched_setaffinity`` in a few placements, the same placement for both paths,
and in each measures both paths side by side in one run:

- continuous: requests one after the other for a few seconds;
- in rounds: 200 warm-up and 500 measured requests on a new connection, after a pause, as
  ``bench/compare.py`` measures (where the other paths' turns make the pause); the two paths
  take turns, in alternating order;
- the relays' CPU time per request in the rounds (both relay processes; warm-up included).

"A" is the hub or sshd (with all of its processes), "B" the agent or the ssh client; "free" is
no pinning. With every process on one CPU no request waits for a wake-up on another CPU, so
the p50 is close to the chain's CPU time: the clearest view of what each relay costs. Where
the relays are on different CPUs, as they are on different machines in a deployment, waking
the next process of the chain weighs most.

Everything runs on 127.0.0.1; Linux only (``sched_setaffinity``), and it needs at least 2 CPUs.
Without a usable OpenSSH it measures the tunnel alone and says why. Usage: ``python
bench/placement.py [--json] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = str(Path(__file__).resolve().parent)
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

import _tunnel_support as support  # noqa: E402
from _ssh_support import SshReverseForward, find_openssh, process_tree  # noqa: E402
from _tunnel_support import HOST, Tunnel, keepalive_latencies, start_origin  # noqa: E402

import protocol  # noqa: E402

#: name -> CPU index (of the ones this process may use) for relay A (hub, sshd), relay B
#: (agent, ssh client) and this process; None: free
PLACEMENTS: dict[str, tuple[int | None, int | None, int | None]] = {
    "free": (None, None, None),
    "A | B, bench free": (0, 1, None),
    "A | B, bench with A": (0, 1, 0),
    "A | B, bench with B": (0, 1, 1),
    "A + B | bench": (0, 0, 1),
    "all on one CPU": (0, 0, 0),
}


@dataclass(frozen=True)
class Profile:
    name: str
    continuous_seconds: float
    rounds: int
    pause: float


DEFAULT = Profile("default", 3.0, 12, 0.3)
QUICK = Profile("quick", 0.5, 2, 0.1)


@dataclass(frozen=True)
class Route:
    """One path: where a caller connects (and the CONNECT head to send first, if any), its two
    relays' process ids now (sshd forks per connection), and their CPU seconds so far."""

    addr: tuple[str, int]
    head: bytes | None
    relays: Callable[[], tuple[list[int], list[int]]]
    relay_cpu: Callable[[], float]


def _p50_ms(samples: list[int]) -> float:
    return statistics.median(samples) / 1e6 if samples else float("nan")


def _pin(pids: list[int], cpus: set[int]) -> None:
    for pid in pids:
        try:
            os.sched_setaffinity(pid, cpus)
        except ProcessLookupError:  # a process of the tree ended in between
            pass


async def _measure(paths: dict[str, Route], profile: Profile) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for name, path in paths.items():
        continuous, _ = await keepalive_latencies(
            path.addr, path.head, 1, 10**9, 500, profile.continuous_seconds
        )
        rows[name] = {"continuous_p50_ms": _p50_ms(continuous)}
    rounds: dict[str, list[int]] = {name: [] for name in paths}
    cpu = dict.fromkeys(paths, 0.0)
    served = dict.fromkeys(paths, 0)
    for index in range(profile.rounds):
        order = list(paths) if index % 2 == 0 else list(reversed(paths))
        for name in order:
            path = paths[name]
            await asyncio.sleep(profile.pause)
            cpu0 = path.relay_cpu()
            got, _ = await keepalive_latencies(path.addr, path.head, 1, 500, 200, 10.0)
            cpu[name] += path.relay_cpu() - cpu0
            served[name] += len(got) + 200
            rounds[name].extend(got)
    for name, row in rows.items():
        row["rounds_p50_ms"] = _p50_ms(rounds[name])
        row["relay_cpu_us_per_request"] = cpu[name] / served[name] * 1e6
    if "ssh" in rows:
        for key in ("continuous_p50_ms", "rounds_p50_ms"):
            rows[f"tunnel_to_ssh_{key.removesuffix('_ms')}"] = (
                rows["tunnel"][key] / rows["ssh"][key]
            )
    return rows


async def bench(profile: Profile, workdir: Path) -> dict[str, Any]:
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        raise support.BenchError(f"needs at least 2 CPUs, this process may use {allowed}")
    server, origin_port = await start_origin()
    tunnel = Tunnel(workdir / "tunnel", True, origin_port)
    (workdir / "tunnel").mkdir()
    openssh = find_openssh()
    ssh = None
    ssh_unavailable = openssh if isinstance(openssh, str) else None  # why ssh -R is left out
    if not isinstance(openssh, str):
        ssh = SshReverseForward(openssh, workdir / "ssh", origin_port)
    results: dict[str, Any] = {}
    try:
        await tunnel.start()
        hub, agent = tunnel.pids()
        paths = {
            "tunnel": Route(
                tunnel.connect_addr,
                tunnel.connect_head(origin_port),
                lambda: ([hub], [agent]),
                tunnel.relay_cpu,
            )
        }
        if ssh is not None:
            try:
                await ssh.start()
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                ssh.stop()
                ssh, ssh_unavailable = None, f"OpenSSH did not start: {exc}"
        if ssh is not None:
            assert ssh.sshd is not None and ssh.client is not None
            sshd, client = ssh.sshd.pid, ssh.client.pid
            paths["ssh"] = Route(
                (HOST, ssh.forward_port),
                None,
                lambda: (process_tree(sshd), process_tree(client)),
                ssh.cpu_seconds,
            )
        await _measure(paths, QUICK)  # warm up
        for name, (a, b, this) in PLACEMENTS.items():
            for path in paths.values():
                relays_a, relays_b = path.relays()
                _pin(relays_a, set(allowed) if a is None else {allowed[a]})
                _pin(relays_b, set(allowed) if b is None else {allowed[b]})
            os.sched_setaffinity(0, set(allowed) if this is None else {allowed[this]})
            results[name] = await _measure(paths, profile)
    finally:
        os.sched_setaffinity(0, set(allowed))
        if ssh is not None:
            ssh.stop()
        tunnel.stop()
        server.close()
    return {"benchmark": "placement", "mode": profile.name, "cpus": len(allowed),
            "data_path": str(protocol.NATIVE),
            "ssh_unavailable": ssh_unavailable,
            "placements": results}  # fmt: skip


def format_table(result: dict[str, Any]) -> str:
    has_ssh = result["ssh_unavailable"] is None
    lines = [
        f"keep-alive c1 p50, ms, and the relays' CPU per request, us ({result['cpus']} CPUs; "
        "'|' separates CPUs; A: hub / sshd, B: agent / ssh client)",
        f"tunnel data path (hub and agent): {result['data_path']}",
    ]
    if not has_ssh:
        lines.append(f"ssh -R left out: {result['ssh_unavailable']}")
    paths = ("tunnel", "ssh") if has_ssh else ("tunnel",)
    head = f"{'placement':22}"
    for what in ("continuous", "in rounds", "CPU us"):
        head += "".join(f" {what + ' ' + p:>17}" for p in paths)
    if has_ssh:
        head += f" {'tunnel/ssh rounds':>18}"
    lines.append(head)
    for name, row in result["placements"].items():
        line = f"{name:22}"
        for key, spec in (("continuous_p50_ms", "17.3f"), ("rounds_p50_ms", "17.3f"),
                          ("relay_cpu_us_per_request", "17.1f")):  # fmt: skip
            line += "".join(f" {row[p][key]:{spec}}" for p in paths)
        if has_ssh:
            line += f" {row['tunnel_to_ssh_rounds_p50']:17.2f}x"
        lines.append(line)
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
    render = None if args.json else format_table
    return support.run_script("placement", lambda workdir: bench(profile, workdir), render, 77)


if __name__ == "__main__":
    sys.exit(main())
