"""Benchmark of the sans-I/O protocol core: two TunnelConnections wired to each other in memory.

No sockets, no event loop, no network. Three measurements, each in the same run:

1. DATA throughput on one stream: the client's ``send_data`` + ``data_to_send`` feed the
   server's ``receive_data`` + ``acknowledge``, whose WINDOW frames flow back to the client.
   One row per DATA frame size; control frames too (OPEN + ACCEPT + FIN + FIN per stream).
2. Memory per idle stream: 10,000 streams opened by the client and accepted by the server,
   measured with tracemalloc (snapshot difference, split per side) and, as a cross-check,
   the growth of VmRSS from /proc/self/status in a run without tracemalloc.
3. Raw msgpack ``packb`` + ``unpackb`` of the same frames as a baseline, timed in rounds that
   alternate with the core's so that the ratio core / raw is measured side by side (these
   machines are noisy; the ratios are what to compare between runs).

Usage: ``python bench/protocol_core.py [--json] [--quick]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script from a checkout that is not installed
    sys.path.insert(0, str(REPO_ROOT))

import protocol  # noqa: E402
from protocol import events as ev  # noqa: E402
from protocol.aio.procstats import rss_bytes  # noqa: E402
from protocol.codes import FrameType  # noqa: E402
from protocol.connection import ConnectionConfig, Role, TunnelConnection  # noqa: E402
from protocol.frames import FRAME_OVERHEAD, KiB, MetadataValue, MiB, Settings  # noqa: E402
from protocol.state import SessionState  # noqa: E402

IDLE_STREAM_BYTES_TARGET = 4 * KiB
#: metadata of every OPEN in this benchmark (what an RPC stream carries)
METADATA: dict[str, MetadataValue] = {"kind": "rpc"}
NOW = 0.0  # the core only reads the clock for keepalives, which this benchmark never ticks


@dataclass(frozen=True)
class Profile:
    name: str
    rounds: int
    round_seconds: float
    frame_sizes: tuple[int, ...]
    in_flight: tuple[int, ...]
    idle_streams: int


DEFAULT = Profile("default", 5, 1.0, (1 * KiB, 16 * KiB, 64 * KiB), (1, 100), 10_000)
QUICK = Profile("quick", 1, 0.05, DEFAULT.frame_sizes, DEFAULT.in_flight, 10_000)


# ---------------------------------------------------------------------------------------------
# Wiring


class BenchError(RuntimeError):
    """The core did something this benchmark did not expect (a bug, not a slow run)."""


def make_pair(settings: Settings) -> tuple[TunnelConnection, TunnelConnection]:
    """A client and a server core that completed the handshake, both with ``settings``."""
    client = TunnelConnection(ConnectionConfig(Role.CLIENT, settings))
    server = TunnelConnection(ConnectionConfig(Role.SERVER, settings))
    client.initiate()
    pump(client, server)
    if client.state is not SessionState.OPEN or server.state is not SessionState.OPEN:
        raise BenchError(f"handshake failed: client {client.state}, server {server.state}")
    return client, server


def pump(a: TunnelConnection, b: TunnelConnection) -> None:
    """Move every queued message both ways until both cores are quiet; events are dropped."""
    moved = True
    while moved:
        moved = False
        for src, dst in ((a, b), (b, a)):
            while message := src.data_to_send():
                check(dst.receive_data(message, NOW))
                moved = True


_EXPECTED_EVENTS = (
    ev.HandshakeComplete,
    ev.PongReceived,  # each side pings once right after the handshake (PROTOCOL.md §6.5)
    ev.StreamOpened,
    ev.StreamAccepted,
    ev.DataReceived,
    ev.StreamEnded,
    ev.WindowUpdated,
)


def check(events: Iterable[ev.Event]) -> None:
    for event in events:
        if not isinstance(event, _EXPECTED_EVENTS):
            raise BenchError(f"unexpected event {event!r}")


def open_one_stream(client: TunnelConnection, server: TunnelConnection) -> int:
    stream_id = client.open_stream(METADATA)
    message = client.data_to_send()
    for event in server.receive_data(message, NOW):
        if isinstance(event, ev.StreamOpened):
            server.accept_stream(event.stream_id)
    pump(client, server)
    return stream_id


# ---------------------------------------------------------------------------------------------
# 1 + 3. Throughput, core and raw msgpack side by side


@dataclass
class Round:
    frames: int  # frames of the kind being measured (DATA, or streams for control)
    payload_bytes: int
    extra_frames: int  # WINDOW frames (bulk) or 0
    core_seconds: float
    raw_seconds: float = 0.0


def bulk_settings(frame_size: int) -> Settings:
    """Settings for bulk transfer with ``frame_size`` DATA frames: a window of >= 64 frames."""
    stream_window = max(256 * KiB, 64 * frame_size)
    return Settings(
        stream_window=stream_window,
        session_window=max(16 * MiB, 4 * stream_window),
        max_frame_size=frame_size,
        max_message_size=max(1 * MiB, frame_size + FRAME_OVERHEAD),
    )


def core_bulk_round(
    client: TunnelConnection, server: TunnelConnection, stream_id: int, chunk: bytes, seconds: float
) -> Round:
    """Send ``chunk`` (one stream window) over and over for ``seconds``; count what arrives."""
    send_data, client_out, client_in = client.send_data, client.data_to_send, client.receive_data
    server_in, server_out, acknowledge = (
        server.receive_data,
        server.data_to_send,
        server.acknowledge,
    )
    data_received, window_updated = ev.DataReceived, ev.WindowUpdated
    frames = payload = windows = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        if send_data(stream_id, chunk) == 0:
            raise BenchError("no credit left: the receiver's WINDOW frames did not come back")
        while message := client_out():
            for event in server_in(message, NOW):
                if type(event) is not data_received:
                    raise BenchError(f"unexpected event {event!r}")
                n = len(event.data)
                acknowledge(stream_id, n)
                frames += 1
                payload += n
        while message := server_out():
            for event in client_in(message, NOW):
                if type(event) is not window_updated:
                    raise BenchError(f"unexpected event {event!r}")
                windows += 1
        now = time.perf_counter()
        if now >= deadline:
            return Round(frames, payload, windows, now - start)


def raw_bulk_round(frames: int, windows: int, frame_size: int, increment: int) -> float:
    """Seconds for packb + unpackb of ``frames`` DATA and ``windows`` WINDOW frames."""
    packb, unpackb = msgpack.packb, msgpack.unpackb
    data_type, window_type = int(FrameType.DATA), int(FrameType.WINDOW)
    payload = bytes(frame_size)
    start = time.perf_counter()
    for _ in range(frames):
        unpackb(packb((data_type, 1, payload), use_bin_type=True), raw=False)
    for _ in range(windows):
        unpackb(packb((window_type, 1, increment), use_bin_type=True), raw=False)
    return time.perf_counter() - start


def bench_bulk(frame_size: int, profile: Profile) -> dict[str, Any]:
    settings = bulk_settings(frame_size)
    client, server = make_pair(settings)
    stream_id = open_one_stream(client, server)
    chunk = bytes(range(256)) * (settings.stream_window // 256)
    core_bulk_round(client, server, stream_id, chunk, min(0.05, profile.round_seconds))  # warm
    rounds = []
    for _ in range(profile.rounds):
        gc.collect()
        result = core_bulk_round(client, server, stream_id, chunk, profile.round_seconds)
        gc.collect()
        result.raw_seconds = raw_bulk_round(
            result.frames, result.extra_frames, frame_size, settings.stream_window // 4
        )
        rounds.append(result)
    if client.closed or server.closed or client.open_streams != 1:
        raise BenchError("the session did not survive the bulk transfer")
    return {
        "frame_size": frame_size,
        "stream_window": settings.stream_window,
        "session_window": settings.session_window,
        "max_message_size": settings.max_message_size,
        "frames": sum(r.frames for r in rounds),
        "window_frames_per_data_frame": sum(r.extra_frames for r in rounds)
        / sum(r.frames for r in rounds),
        "core_frames_per_s": _median(r.frames / r.core_seconds for r in rounds),
        "core_mb_per_s": _median(r.payload_bytes / r.core_seconds / 1e6 for r in rounds),
        "raw_frames_per_s": _median(r.frames / r.raw_seconds for r in rounds),
        "raw_mb_per_s": _median(r.payload_bytes / r.raw_seconds / 1e6 for r in rounds),
        "ratio_core_to_raw": _median(r.raw_seconds / r.core_seconds for r in rounds),
    }


def core_control_round(
    client: TunnelConnection, server: TunnelConnection, in_flight: int, seconds: float
) -> Round:
    """Open ``in_flight`` streams, accept and close them both ways, repeat for ``seconds``.

    Per stream: OPEN (client), ACCEPT + FIN (server), FIN (client); both sides forget it.
    """
    open_stream, client_out, client_in = (
        client.open_stream,
        client.data_to_send,
        client.receive_data,
    )
    server_in, server_out = server.receive_data, server.data_to_send
    accept_stream, server_close, client_close = (
        server.accept_stream,
        server.close_stream,
        client.close_stream,
    )
    stream_opened, stream_accepted, stream_ended = (
        ev.StreamOpened,
        ev.StreamAccepted,
        ev.StreamEnded,
    )
    streams = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(in_flight):
            open_stream(METADATA)
        while message := client_out():
            for event in server_in(message, NOW):
                if type(event) is not stream_opened:
                    raise BenchError(f"unexpected event {event!r}")
                accept_stream(event.stream_id)
                server_close(event.stream_id)
        while message := server_out():
            for event in client_in(message, NOW):
                if type(event) is stream_ended:
                    client_close(event.stream_id)
                elif type(event) is not stream_accepted:
                    raise BenchError(f"unexpected event {event!r}")
        while message := client_out():
            for event in server_in(message, NOW):
                if type(event) is not stream_ended:
                    raise BenchError(f"unexpected event {event!r}")
        streams += in_flight
        now = time.perf_counter()
        if now >= deadline:
            return Round(streams, 0, 0, now - start)


def raw_control_round(streams: int) -> float:
    """Seconds for packb + unpackb of the four frames of ``streams`` stream lifetimes."""
    packb, unpackb = msgpack.packb, msgpack.unpackb
    open_type, accept_type, fin_type = (
        int(FrameType.OPEN),
        int(FrameType.ACCEPT),
        int(FrameType.FIN),
    )
    metadata = dict(METADATA)
    start = time.perf_counter()
    for i in range(streams):
        stream_id = 2 * i + 1
        unpackb(packb((open_type, stream_id, metadata), use_bin_type=True), raw=False)
        unpackb(packb((accept_type, stream_id), use_bin_type=True), raw=False)
        unpackb(packb((fin_type, stream_id), use_bin_type=True), raw=False)
        unpackb(packb((fin_type, stream_id), use_bin_type=True), raw=False)
    return time.perf_counter() - start


def bench_control(in_flight: int, profile: Profile) -> dict[str, Any]:
    client, server = make_pair(Settings())
    core_control_round(client, server, in_flight, min(0.05, profile.round_seconds))  # warm up
    rounds = []
    for _ in range(profile.rounds):
        gc.collect()
        result = core_control_round(client, server, in_flight, profile.round_seconds)
        gc.collect()
        result.raw_seconds = raw_control_round(result.frames)
        rounds.append(result)
    if client.open_streams or server.open_streams or client.closed or server.closed:
        raise BenchError("streams were left open after the control benchmark")
    return {
        "in_flight": in_flight,
        "streams": sum(r.frames for r in rounds),
        "frames_per_stream": 4,
        "core_streams_per_s": _median(r.frames / r.core_seconds for r in rounds),
        "core_frames_per_s": _median(4 * r.frames / r.core_seconds for r in rounds),
        "raw_streams_per_s": _median(r.frames / r.raw_seconds for r in rounds),
        "raw_frames_per_s": _median(4 * r.frames / r.raw_seconds for r in rounds),
        "ratio_core_to_raw": _median(r.raw_seconds / r.core_seconds for r in rounds),
    }


def _median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


# ---------------------------------------------------------------------------------------------
# 2. Memory per idle stream


def idle_settings(streams: int) -> Settings:
    return Settings(max_streams=max(streams, Settings().max_streams))


def open_idle_streams(
    client: TunnelConnection, server: TunnelConnection, streams: int, batch: int = 1000
) -> None:
    """Open ``streams`` streams from the client, accepted by the server, in batches (so that
    the server's max_pending_opens is never reached); no data on any of them."""
    opened = 0
    while opened < streams:
        count = min(batch, streams - opened)
        for _ in range(count):
            client.open_stream(METADATA)
        while message := client.data_to_send():
            for event in server.receive_data(message, NOW):
                if not isinstance(event, ev.StreamOpened):
                    raise BenchError(f"unexpected event {event!r}")
                server.accept_stream(event.stream_id)
        while message := server.data_to_send():
            for event in client.receive_data(message, NOW):
                if not isinstance(event, ev.StreamAccepted):
                    raise BenchError(f"unexpected event {event!r}")
        opened += count
    if client.open_streams != streams or server.open_streams != streams:
        raise BenchError(
            f"expected {streams} open streams, client has {client.open_streams}, "
            f"server {server.open_streams}"
        )
    if client.wants_write or server.wants_write:
        raise BenchError("idle streams left frames queued")


def _traced_now() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def _core_sizes(streams: int, settings: Settings) -> tuple[int, int, int, list[tuple[str, int]]]:
    """With tracemalloc on: bytes that ``streams`` idle streams added to both cores (snapshot
    difference), bytes freed by dropping the server core, then the client core, and the
    allocation sites that grew most."""
    client, server = make_pair(settings)
    gc.collect()
    before = tracemalloc.take_snapshot()
    if streams:
        open_idle_streams(client, server, streams)
    gc.collect()
    after = tracemalloc.take_snapshot()
    growth = [
        stat
        for stat in after.compare_to(before, "lineno")
        if stat.traceback[0].filename != tracemalloc.__file__  # the first snapshot itself
    ]
    both = sum(stat.size_diff for stat in growth)
    sites = [
        (f"{Path(stat.traceback[0].filename).name}:{stat.traceback[0].lineno}", stat.size_diff)
        for stat in growth[:5]
    ]
    del before, after, growth
    with_both = _traced_now()
    del server
    with_client = _traced_now()
    del client
    with_neither = _traced_now()
    return both, with_both - with_client, with_client - with_neither, sites


def bench_idle_streams(streams: int) -> dict[str, Any]:
    """Memory per idle stream, per side.

    tracemalloc (traceback depth 1, which is all this needs and keeps it fast): the snapshot
    difference across opening the streams gives both sides together; dropping the server core
    and then the client core gives each side's share, less the same figure for two cores with
    no stream (their fixed size). VmRSS is read in a separate run without tracemalloc, whose
    own bookkeeping would dominate it.
    """
    settings = idle_settings(streams)
    # Warm up every code path once, so that one-off caches are not charged to the streams.
    client, server = make_pair(settings)
    open_idle_streams(client, server, 100, batch=50)
    del client, server

    gc.collect()
    client, server = make_pair(settings)
    gc.collect()
    rss_before = rss_bytes()
    open_idle_streams(client, server, streams)
    gc.collect()
    rss_after = rss_bytes()
    del client, server
    gc.collect()
    rss_per_stream = (
        None if rss_before is None or rss_after is None else (rss_after - rss_before) / streams
    )

    tracemalloc.start(1)
    try:
        _, empty_server, empty_client, _ = _core_sizes(0, settings)
        both, server_bytes, client_bytes, sites = _core_sizes(streams, settings)
    finally:
        tracemalloc.stop()
    return {
        "streams_per_side": streams,
        "client_bytes_per_stream": (client_bytes - empty_client) / streams,
        "server_bytes_per_stream": (server_bytes - empty_server) / streams,
        "both_sides_bytes_per_stream": both / streams,
        "empty_core_bytes": {"client": empty_client, "server": empty_server},
        "top_sites_bytes_per_stream": {site: size / streams for site, size in sites},
        "rss_delta_both_sides_bytes_per_stream": rss_per_stream,
    }


# ---------------------------------------------------------------------------------------------
# Report


def run(profile: Profile) -> dict[str, Any]:
    started = time.perf_counter()
    idle = bench_idle_streams(profile.idle_streams)
    bulk = [bench_bulk(size, profile) for size in profile.frame_sizes]
    control = [bench_control(n, profile) for n in profile.in_flight]
    worst_side = max(idle["client_bytes_per_stream"], idle["server_bytes_per_stream"])
    return {
        "benchmark": "protocol_core",
        "mode": profile.name,
        "python": platform.python_version(),
        "msgpack": ".".join(str(part) for part in msgpack.version),
        "core": str(protocol.NATIVE),
        "rounds": profile.rounds,
        "round_seconds": profile.round_seconds,
        "ratio": "core rate / raw msgpack rate, median of per-round ratios",
        "bulk": bulk,
        "control": control,
        "idle_streams": idle,
        "idle_stream_bytes_target": IDLE_STREAM_BYTES_TARGET,
        "idle_stream_ok": worst_side <= IDLE_STREAM_BYTES_TARGET,
        "elapsed_seconds": time.perf_counter() - started,
    }


def _size(n: int) -> str:
    return f"{n // KiB} KiB" if n % KiB == 0 else f"{n} B"


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"Protocol core benchmark ({result['mode']}): Python {result['python']}, "
        f"msgpack {result['msgpack']}, {result['rounds']} rounds x {result['round_seconds']} s, "
        f"medians; core {result['core']}",
        "core/raw = core rate divided by raw msgpack packb+unpackb rate of the same frames, "
        "measured in alternating rounds",
        "",
        "DATA, one stream: send_data + data_to_send -> receive_data + acknowledge, WINDOW back",
        f"{'frame':>8} {'core frames/s':>14} {'core MB/s':>10} {'raw frames/s':>13} "
        f"{'raw MB/s':>9} {'core/raw':>9} {'WINDOW/DATA':>12}",
    ]
    for row in result["bulk"]:
        lines.append(
            f"{_size(row['frame_size']):>8} {row['core_frames_per_s']:>14,.0f} "
            f"{row['core_mb_per_s']:>10,.1f} {row['raw_frames_per_s']:>13,.0f} "
            f"{row['raw_mb_per_s']:>9,.1f} {row['ratio_core_to_raw']:>9.2f} "
            f"{row['window_frames_per_data_frame']:>12.3f}"
        )
    lines += [
        "",
        "Control: OPEN + ACCEPT + FIN + FIN per stream (opened and closed both ways)",
        f"{'in flight':>9} {'core streams/s':>15} {'core frames/s':>14} {'raw streams/s':>14} "
        f"{'core/raw':>9}",
    ]
    for row in result["control"]:
        lines.append(
            f"{row['in_flight']:>9} {row['core_streams_per_s']:>15,.0f} "
            f"{row['core_frames_per_s']:>14,.0f} {row['raw_streams_per_s']:>14,.0f} "
            f"{row['ratio_core_to_raw']:>9.2f}"
        )
    idle = result["idle_streams"]
    rss = idle["rss_delta_both_sides_bytes_per_stream"]
    rss_text = "n/a" if rss is None else f"{rss:,.0f}"
    by_tm = "B/stream (tracemalloc)"
    verdict = "OK" if result["idle_stream_ok"] else "OVER TARGET"
    lines += [
        "",
        f"Idle streams: {idle['streams_per_side']:,} per side (client opened, server accepted)",
        f"  client core            {idle['client_bytes_per_stream']:>8,.0f} {by_tm}",
        f"  server core            {idle['server_bytes_per_stream']:>8,.0f} {by_tm}",
        f"  both sides             {idle['both_sides_bytes_per_stream']:>8,.0f} {by_tm}",
        f"  both sides, RSS delta  {rss_text:>8} B/stream (VmRSS, run without tracemalloc)",
        f"  target <= {result['idle_stream_bytes_target']:,} B per idle stream per side: {verdict}",
        "  where the bytes go (both sides, allocation site: B/stream):",
        *(
            f"    {site:<28} {size:>8,.0f}"
            for site, size in idle["top_sites_bytes_per_stream"].items()
        ),
        "",
        f"elapsed {result['elapsed_seconds']:.1f} s",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="a short run (for tests)")
    args = parser.parse_args(argv)
    result = run(QUICK if args.quick else DEFAULT)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
