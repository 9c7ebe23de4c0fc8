"""Benchmark of the whole tunnel: caller -> hub CONNECT -> websocket -> agent -> origin.

The hub (``pcg-sim hub``) and the agent (``pcg-agent``) run as real subprocesses; this process
runs the origin (a raw asyncio TCP server answering a fixed tiny HTTP/1.1 response, or bulk
bytes) and the callers. Everything is on 127.0.0.1. Measured side by side in one run (these
machines are noisy: compare the ratios, measured together, between runs):

1. Bulk MB/s, download (origin -> caller) and upload, through the tunnel, against a raw
   loopback socket copy of the same number of bytes (two threads, no event loop) and, for
   information, the same asyncio endpoints connected directly.
2. Latency of a small HTTP request, p50 / p99, through the tunnel and direct to the origin,
   at concurrency 1 and 100: on keep-alive connections (one CONNECT per connection, then many
   requests) and with a new connection (through the tunnel: a new CONNECT stream) per request.
   "added" is tunnel minus direct.
3. Requests/s at concurrency 100 on keep-alive connections, tunnel and direct.
4. Memory per idle open stream, per end: (a) two TunnelSession ends over a real websocket
   (websocket channels on both ends, the server's in aiohttp, as in production), each in its
   own process, measured with tracemalloc and VmRSS; (b) for information, idle CONNECT
   streams through the real hub and agent, each also holding a TCP connection, as VmRSS growth
   of both processes.
5. Parts 1-3 run twice: on uvloop and on plain asyncio (this process, the hub and the agent).

Usage: ``python bench/tunnel.py [--json] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
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
from _tunnel_support import (  # noqa: E402
    HOST,
    SUPPORT_SCRIPT,
    BenchError,
    ClientProtocol,
    Tunnel,
    open_client,
    raw_socket_copy,
    read_json_line,
    rss_bytes,
    spawn,
    start_origin,
    stop_process,
    summarize_ms,
    time_transfer,
)

import protocol  # noqa: E402
from protocol.aio.loop import run as run_loop  # noqa: E402

MiB = 1024 * 1024
TARGETS = {"bulk_ratio_min": 0.05, "p50_added_ms_max": 0.3, "idle_stream_bytes_max": 8192}


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
    idle_streams: int
    relay_streams: int
    #: no single measurement step runs longer than this (then it stops with what it has)
    step_seconds: float


DEFAULT = Profile("default", 256 * MiB, 3, 3, 3000, 60, 300, 4, 300, 10_000, 10_000, 20.0)
QUICK = Profile("quick", 16 * MiB, 1, 1, 300, 10, 30, 2, 50, 1_000, 300, 5.0)
CONCURRENCY = (1, 100)


# ---------------------------------------------------------------------------------------------
# 1. Bulk


async def bench_bulk(profile: Profile, tunnel: Tunnel, origin_port: int) -> dict[str, Any]:
    n = profile.bulk_bytes
    timeout = max(60.0, n / 10e6)  # >= 10 MB/s or it is broken
    origin = (HOST, origin_port)
    head = tunnel.connect_head(origin_port)
    # warm up every path once (small)
    for direction in ("download", "upload"):
        await time_transfer(origin, None, direction, 4 * MiB, timeout)
        await time_transfer(tunnel.connect_addr, head, direction, 4 * MiB, timeout)
    raw_copy: list[float] = []
    rows: dict[str, dict[str, list[float]]] = {
        d: {"direct": [], "tunnel": [], "ratio": [], "hub_cpu": [], "agent_cpu": []}
        for d in ("download", "upload")
    }
    for _ in range(profile.bulk_rounds):
        raw_seconds = await asyncio.to_thread(raw_socket_copy, n)
        raw_copy.append(n / raw_seconds / 1e6)
        for direction, row in rows.items():
            row["direct"].append(n / await time_transfer(origin, None, direction, n, timeout) / 1e6)
            hub0, agent0 = tunnel.cpu_seconds()
            seconds = await time_transfer(tunnel.connect_addr, head, direction, n, timeout)
            hub1, agent1 = tunnel.cpu_seconds()
            row["tunnel"].append(n / seconds / 1e6)
            row["ratio"].append(raw_seconds / seconds)
            row["hub_cpu"].append((hub1 - hub0) / (n / 1e9))
            row["agent_cpu"].append((agent1 - agent0) / (n / 1e9))
    result: dict[str, Any] = {
        "bytes": n,
        "rounds": profile.bulk_rounds,
        "raw_copy_mb_per_s": statistics.median(raw_copy),
    }
    for direction, row in rows.items():
        result[direction] = {
            "tunnel_mb_per_s": statistics.median(row["tunnel"]),
            "direct_asyncio_mb_per_s": statistics.median(row["direct"]),
            "ratio_tunnel_to_raw": statistics.median(row["ratio"]),
            "hub_cpu_s_per_gb": statistics.median(row["hub_cpu"]),
            "agent_cpu_s_per_gb": statistics.median(row["agent_cpu"]),
        }
    return result


# ---------------------------------------------------------------------------------------------
# 2 + 3. Latency and requests/s


async def bench_latency(profile: Profile, tunnel: Tunnel, origin_port: int) -> dict[str, Any]:
    paths: dict[str, tuple[tuple[str, int], bytes | None]] = {
        "direct": ((HOST, origin_port), None),
        "tunnel": (tunnel.connect_addr, tunnel.connect_head(origin_port)),
    }
    modes = support.latency_modes(profile, "new_stream")
    samples: dict[tuple[str, int, str], list[int]] = {}
    rates: dict[tuple[str, int, str], list[float]] = {}
    for round_index in range(profile.latency_rounds):
        order = list(paths) if round_index % 2 == 0 else list(reversed(paths))
        for mode, measure in modes.items():
            for concurrency in CONCURRENCY:
                for path in order:
                    addr, head = paths[path]
                    got, wall = await measure(addr, head, concurrency)
                    if not got:
                        raise BenchError(f"no {mode} request completed on the {path} path")
                    key = (mode, concurrency, path)
                    samples.setdefault(key, []).extend(got)
                    rates.setdefault(key, []).append(len(got) / wall)
    result: dict[str, Any] = {"rounds": profile.latency_rounds}
    for mode in modes:
        by_c: dict[str, Any] = {}
        for concurrency in CONCURRENCY:
            direct = summarize_ms(samples[(mode, concurrency, "direct")])
            via = summarize_ms(samples[(mode, concurrency, "tunnel")])
            by_c[f"c{concurrency}"] = {
                "direct": direct,
                "tunnel": via,
                "added_p50_ms": via["p50_ms"] - direct["p50_ms"],
                "added_p99_ms": via["p99_ms"] - direct["p99_ms"],
                "direct_requests_per_s": statistics.median(rates[(mode, concurrency, "direct")]),
                "tunnel_requests_per_s": statistics.median(rates[(mode, concurrency, "tunnel")]),
            }
        result[mode] = by_c
    for concurrency in CONCURRENCY:  # what a new CONNECT stream adds to one request
        fresh, kept = (
            result["new_stream"][f"c{concurrency}"],
            result["keepalive"][f"c{concurrency}"],
        )
        fresh["open_cost_p50_ms"] = fresh["tunnel"]["p50_ms"] - kept["tunnel"]["p50_ms"]
        fresh["direct_open_cost_p50_ms"] = fresh["direct"]["p50_ms"] - kept["direct"]["p50_ms"]
    c100 = result["keepalive"]["c100"]
    result["requests_per_s_c100"] = {
        "direct": c100["direct_requests_per_s"],
        "tunnel": c100["tunnel_requests_per_s"],
        "ratio_tunnel_to_direct": c100["tunnel_requests_per_s"] / c100["direct_requests_per_s"],
    }
    return result


async def bench_loop(profile: Profile, use_uvloop: bool, workdir: Path) -> dict[str, Any]:
    """Parts 1-3 on one kind of event loop (this process, the hub and the agent alike)."""
    loop_name = type(asyncio.get_running_loop()).__module__.split(".")[0]
    server, origin_port = await start_origin()
    tunnel = Tunnel(workdir, use_uvloop, origin_port)
    try:
        await tunnel.start()
        started = time.perf_counter()
        bulk = await bench_bulk(profile, tunnel, origin_port)
        bulk_seconds = time.perf_counter() - started
        latency = await bench_latency(profile, tunnel, origin_port)
        latency_seconds = time.perf_counter() - started - bulk_seconds
    finally:
        tunnel.stop()
        server.close()
    worst_ratio = min(bulk[d]["ratio_tunnel_to_raw"] for d in ("download", "upload"))
    added = latency["keepalive"]["c1"]["added_p50_ms"]
    return {
        "bench_loop": loop_name,
        "subprocess_loop": "uvloop" if use_uvloop else "asyncio",
        "bulk": bulk,
        "latency": latency,
        "requests_per_s_c100": latency["requests_per_s_c100"],
        "checks": {
            "bulk_ratio": worst_ratio,
            "bulk_ratio_ok": worst_ratio >= TARGETS["bulk_ratio_min"],
            "p50_added_ms": added,
            "p50_added_ok": added <= TARGETS["p50_added_ms_max"],
        },
        "seconds": {"bulk": bulk_seconds, "latency": latency_seconds},
    }


# ---------------------------------------------------------------------------------------------
# 4a. Idle streams on one tunnel, tunnel ends only, each end in its own process


def _send(proc: Any, command: str) -> None:
    proc.stdin.write(command.encode() + b"\n")
    proc.stdin.flush()


async def _idle_pair(streams: int, trace: bool, use_uvloop: bool, workdir: Path) -> dict[str, Any]:
    flags = (["--trace"] if trace else []) + ([] if use_uvloop else ["--no-uvloop"])
    base = [sys.executable, str(SUPPORT_SCRIPT), "idle-end"]
    logs = {role: workdir / f"idle-{role}-{'traced' if trace else 'rss'}.log" for role in
            ("server", "client")}  # fmt: skip
    pipe = subprocess.PIPE
    with open(logs["server"], "ab") as log:
        server = spawn([*base, "server", "--streams", str(streams), *flags], stdin=pipe,
                       stdout=pipe, stderr=log)  # fmt: skip
    client: subprocess.Popen[bytes] | None = None
    try:
        port = (await read_json_line(server, 30, "idle server", logs["server"]))["port"]
        url = f"ws://{HOST}:{port}/v1/tunnel"
        with open(logs["client"], "ab") as log:
            client = spawn([*base, "client", "--streams", str(streams), "--url", url, *flags],
                           stdin=pipe, stdout=pipe, stderr=log)  # fmt: skip
        ends = {"server": server, "client": client}

        async def answer(role: str, timeout: float = 60) -> dict[str, Any]:
            return await read_json_line(ends[role], timeout, f"idle {role}", logs[role])

        await answer("client")
        await answer("server")
        _send(server, "warm")
        await answer("server")
        for role, proc in ends.items():
            _send(proc, "base")
            await answer(role)
        _send(server, "open")
        opened = await answer("server", 180)
        measured = {}
        for role, proc in ends.items():
            _send(proc, "measure")
            measured[role] = await answer(role, 120)
        for proc in ends.values():
            with contextlib.suppress(OSError):
                _send(proc, "quit")
        return {"open_seconds": opened["seconds"], **measured}
    finally:
        stop_process(client)
        stop_process(server)


async def bench_idle_tunnel(profile: Profile, use_uvloop: bool, workdir: Path) -> dict[str, Any]:
    streams = profile.idle_streams
    traced = await _idle_pair(streams, True, use_uvloop, workdir)
    untraced = await _idle_pair(streams, False, use_uvloop, workdir)
    result: dict[str, Any] = {
        "streams": streams,
        "loop": "uvloop" if use_uvloop else "asyncio",
        "open_seconds": untraced["open_seconds"],
    }
    for role, end in (("server", "hub-like"), ("client", "agent-like")):
        if traced[role]["open_streams"] < streams or untraced[role]["open_streams"] < streams:
            raise BenchError(f"the {role} end has fewer than {streams} streams open")
        rss = untraced[role]["rss_bytes"]
        result[f"{role}_end"] = {
            "as": end,
            "open_streams": untraced[role]["open_streams"],
            "bytes_per_stream": traced[role]["traced_bytes"] / streams,
            "rss_bytes_per_stream": None if rss is None else rss / streams,
            "top_sites_bytes_per_stream": traced[role]["top_sites"],
        }
    worst = max(result["server_end"]["bytes_per_stream"], result["client_end"]["bytes_per_stream"])
    result["worst_end_bytes_per_stream"] = worst
    result["ok"] = worst <= TARGETS["idle_stream_bytes_max"]
    return result


# ---------------------------------------------------------------------------------------------
# 4b. Idle streams through the real relay path (hub and agent subprocesses)


class _Hold(ClientProtocol):
    def on_data(self, data: bytes) -> None:
        pass


async def bench_idle_relay(profile: Profile, use_uvloop: bool, workdir: Path) -> dict[str, Any]:
    streams = profile.relay_streams
    pipe = subprocess.PIPE
    flags = [] if use_uvloop else ["--no-uvloop"]
    origin = spawn([sys.executable, str(SUPPORT_SCRIPT), "idle-origin", *flags],
                   stdin=pipe, stdout=pipe)  # fmt: skip
    tunnel: Tunnel | None = None
    held: list[Any] = []
    try:
        port = (await read_json_line(origin, 30, "idle origin"))["port"]
        tunnel = Tunnel(workdir, use_uvloop, port, wide_streams=streams)
        await tunnel.start()
        assert tunnel.hub is not None and tunnel.agent is not None
        head = tunnel.connect_head(port)
        gate = asyncio.Semaphore(200)

        async def hold(keep: bool) -> None:
            async with gate:
                transport, _ = await open_client(_Hold, tunnel.connect_addr, head)
            if keep:
                held.append(transport)
            else:
                transport.close()

        async with asyncio.timeout(30):
            await asyncio.gather(*(hold(False) for _ in range(200)))  # warm up
        deadline = time.monotonic() + 10
        while await tunnel.open_streams_at_hub() > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        hub_before, agent_before = rss_bytes(tunnel.hub.pid), rss_bytes(tunnel.agent.pid)
        started = time.perf_counter()
        async with asyncio.timeout(max(60.0, streams / 100)):
            await asyncio.gather(*(hold(True) for _ in range(streams)))
        open_seconds = time.perf_counter() - started
        await asyncio.sleep(0.5)
        hub_after, agent_after = rss_bytes(tunnel.hub.pid), rss_bytes(tunnel.agent.pid)
        at_hub = await tunnel.open_streams_at_hub()
    finally:
        for transport in held:
            transport.abort()
        stop_process(origin)
        if tunnel is not None:
            tunnel.stop()

    def per_stream(before: int | None, after: int | None) -> float | None:
        return None if before is None or after is None else (after - before) / streams

    return {
        "streams": streams,
        "loop": "uvloop" if use_uvloop else "asyncio",
        "open_streams_at_hub": at_hub,
        "limits": "max_streams and max_pending_opens raised on hub and agent (the hub's "
        "--max-streams and --max-pending-opens, the agent's max_streams and max_pending_opens; "
        "the defaults cap a tunnel at 4,096 streams opened by the hub)",
        "open_seconds": open_seconds,
        "hub_rss_bytes_per_stream": per_stream(hub_before, hub_after),
        "agent_rss_bytes_per_stream": per_stream(agent_before, agent_after),
    }


# ---------------------------------------------------------------------------------------------
# Report


def run(profile: Profile) -> dict[str, Any]:
    started = time.perf_counter()
    nofile = support.raise_nofile_limit()
    needed = profile.relay_streams + 2048
    if nofile < needed:
        raise BenchError(f"RLIMIT_NOFILE is {nofile}; the relay part needs about {needed}")
    have_uvloop = importlib.util.find_spec("uvloop") is not None
    flavors = [True, False] if have_uvloop else [False]
    loops: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="pcg-bench-tunnel-") as tmp:
        workdir = Path(tmp)
        for sub in ("uvloop", "asyncio", "idle", "relay"):
            (workdir / sub).mkdir()
        for use_uvloop in flavors:
            name = "uvloop" if use_uvloop else "asyncio"
            loops[name] = run_loop(
                bench_loop(profile, use_uvloop, workdir / name), use_uvloop=use_uvloop
            )
        idle_tunnel = run_loop(
            bench_idle_tunnel(profile, have_uvloop, workdir / "idle"), use_uvloop=have_uvloop
        )
        idle_relay = run_loop(
            bench_idle_relay(profile, have_uvloop, workdir / "relay"), use_uvloop=have_uvloop
        )
    bulk_ok = all(loop["checks"]["bulk_ratio_ok"] for loop in loops.values())
    p50_ok = all(loop["checks"]["p50_added_ok"] for loop in loops.values())
    uvloop_version = None
    if have_uvloop:
        import uvloop

        uvloop_version = str(getattr(uvloop, "__version__", "?"))
    return {
        "benchmark": "tunnel",
        "mode": profile.name,
        "python": platform.python_version(),
        "uvloop": uvloop_version,
        "data_path": str(protocol.NATIVE),  # the hub and the agent run the same build
        "cpus": os.cpu_count(),
        "host": HOST,
        "loops": loops,
        "idle_streams": {"tunnel_only": idle_tunnel, "relay": idle_relay},
        "targets": dict(TARGETS),
        "ok": {
            "bulk_ratio": bulk_ok,
            "p50_added": p50_ok,
            "idle_stream": idle_tunnel["ok"],
            "all": bulk_ok and p50_ok and idle_tunnel["ok"],
        },
        "elapsed_seconds": time.perf_counter() - started,
    }


def _verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


def _num(value: float | None, spec: str = ",.0f") -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(value, spec)


def format_table(result: dict[str, Any]) -> str:
    targets = result["targets"]
    lines = [
        f"Tunnel benchmark ({result['mode']}): Python {result['python']}, "
        f"uvloop {result['uvloop'] or 'not installed'}, {result['cpus']} CPUs, all on "
        f"{result['host']}; data path {result['data_path']}",
        "path: caller -> hub CONNECT listener -> websocket -> agent -> origin (raw asyncio TCP)",
    ]
    for name, loop in result["loops"].items():
        bulk, latency = loop["bulk"], loop["latency"]
        lines += [
            "",
            f"=== {name}: this process on {loop['bench_loop']}, hub and agent on "
            f"{loop['subprocess_loop']} ===",
            f"Bulk, {bulk['bytes'] // MiB} MiB, median of {bulk['rounds']} rounds; raw loopback "
            f"socket copy (2 threads, 1 MiB buffers): {bulk['raw_copy_mb_per_s']:,.0f} MB/s",
            f"  {'direction':<10} {'tunnel MB/s':>12} {'tunnel/raw':>11} {'direct MB/s':>12} "
            f"{'hub CPU s/GB':>13} {'agent CPU s/GB':>15}",
        ]
        for direction in ("download", "upload"):
            row = bulk[direction]
            lines.append(
                f"  {direction:<10} {row['tunnel_mb_per_s']:>12,.0f} "
                f"{row['ratio_tunnel_to_raw']:>10.3f}x {row['direct_asyncio_mb_per_s']:>12,.0f} "
                f"{row['hub_cpu_s_per_gb']:>13.2f} {row['agent_cpu_s_per_gb']:>15.2f}"
            )
        lines += [
            "  (direct = the same asyncio endpoints connected without the tunnel)",
            "",
            f"Small HTTP request latency, ms, {latency['rounds']} rounds pooled "
            "(added = tunnel - direct)",
            f"  {'connection':<22} {'conc':>4} {'direct p50':>10} {'p99':>7} {'tunnel p50':>10} "
            f"{'p99':>7} {'added p50':>9} {'added p99':>9} {'tunnel req/s':>12} {'n':>6}",
        ]
        for mode, label in (("keepalive", "keep-alive"), ("new_stream", "new CONNECT per req")):
            for c in CONCURRENCY:
                row = latency[mode][f"c{c}"]
                direct, via = row["direct"], row["tunnel"]
                lines.append(
                    f"  {label:<22} {c:>4} {direct['p50_ms']:>10.3f} {direct['p99_ms']:>7.3f} "
                    f"{via['p50_ms']:>10.3f} {via['p99_ms']:>7.3f} {row['added_p50_ms']:>9.3f} "
                    f"{row['added_p99_ms']:>9.3f} {row['tunnel_requests_per_s']:>12,.0f} "
                    f"{via['n']:>6}"
                )
        opening = latency["new_stream"]
        lines.append(
            "  a new CONNECT stream adds to a request (p50, new-per-request minus keep-alive): "
            + ", ".join(
                f"c{c} {opening[f'c{c}']['open_cost_p50_ms']:.3f} ms "
                f"(a direct new TCP connection {opening[f'c{c}']['direct_open_cost_p50_ms']:.3f})"
                for c in CONCURRENCY
            )
        )
        rps = loop["requests_per_s_c100"]
        checks = loop["checks"]
        lines += [
            f"Requests/s at concurrency 100, keep-alive: tunnel {rps['tunnel']:,.0f}, direct "
            f"{rps['direct']:,.0f} (tunnel/direct {rps['ratio_tunnel_to_direct']:.3f})",
            f"Targets: bulk tunnel/raw >= {targets['bulk_ratio_min']}: {checks['bulk_ratio']:.3f} "
            f"{_verdict(checks['bulk_ratio_ok'])}; p50 added (keep-alive, c1) <= "
            f"{targets['p50_added_ms_max']} ms: {checks['p50_added_ms']:.3f} ms "
            f"{_verdict(checks['p50_added_ok'])}",
        ]
    idle = result["idle_streams"]["tunnel_only"]
    relay = result["idle_streams"]["relay"]
    lines += [
        "",
        f"=== Idle streams ({idle['loop']}) ===",
        f"(a) {idle['streams']:,} idle streams on one tunnel, tunnel ends only (websocket "
        f"channels, the server's in aiohttp, each end in its own process; "
        f"opened in {idle['open_seconds']:.1f} s)",
        f"  {'end':<28} {'tracemalloc B/stream':>21} {'VmRSS B/stream':>15}",
    ]
    for role in ("server", "client"):
        end = idle[f"{role}_end"]
        label = f"{role} ({end['as']})"
        lines.append(
            f"  {label:<28} {end['bytes_per_stream']:>21,.0f} "
            f"{_num(end['rss_bytes_per_stream']):>15}"
        )
    lines.append(
        f"  target <= {targets['idle_stream_bytes_max']:,} B per idle stream per end: "
        f"{_verdict(idle['ok'])}"
    )
    for role in ("server", "client"):
        sites = idle[f"{role}_end"]["top_sites_bytes_per_stream"]
        lines.append(f"  where the {role} end's bytes go (allocation site: B/stream):")
        lines += [f"    {site:<44} {size:>8,.0f}" for site, size in sites.items()]
    lines += [
        f"(b) {relay['streams']:,} idle CONNECT streams through the real hub and agent (each "
        f"also holds a TCP connection; {relay['open_streams_at_hub']:,} open at the hub; opened "
        f"in {relay['open_seconds']:.1f} s)",
        f"  ({relay['limits']})",
        f"  hub VmRSS growth   {_num(relay['hub_rss_bytes_per_stream']):>8} B/stream",
        f"  agent VmRSS growth {_num(relay['agent_rss_bytes_per_stream']):>8} B/stream",
        "",
        "Targets: "
        + ", ".join(f"{k} {_verdict(v)}" for k, v in result["ok"].items() if k != "all")
        + f"; all {_verdict(result['ok']['all'])}",
        f"elapsed {result['elapsed_seconds']:.1f} s",
    ]
    return "\n".join(lines)


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="a short run (for tests)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        result = run(QUICK if args.quick else DEFAULT)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        support.stop_all_children()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
