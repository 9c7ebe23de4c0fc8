"""Relayed HTTP through hub -> tunnel -> agent -> origin: bodies, concurrency, isolation."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.net import fetch_via_connect, http_request, open_via_connect, pattern
from tests.support.origin import Origin
from tests.support.processes import AgentProcess, HubProcess
from tests.support.timing import no_collector_pauses

from .conftest import GATEWAY, agent_config

SIZES = [0, 1, 64 * 1024, 64 * 1024 * 1024]


async def test_bodies_are_byte_identical_both_ways(
    hub: HubProcess, origin: Origin, agents: Callable[..., AgentProcess], token: str
) -> None:
    agent = agents(agent_config(hub, token, origin.port))
    await agent.wait_log("tunnel up")
    for size in SIZES:
        down = await fetch_via_connect(
            hub.connect_addr, GATEWAY, "127.0.0.1", origin.port, "GET", f"/bytes/{size}"
        )
        assert down.status == 200 and len(down.body) == size
        assert down.body == pattern(size), f"download of {size} bytes differs"
        body = pattern(size)[::-1]
        up = await fetch_via_connect(
            hub.connect_addr, GATEWAY, "127.0.0.1", origin.port, "POST", "/echo", body
        )
        assert up.status == 200 and up.body == body, f"upload of {size} bytes differs"


async def test_thousand_concurrent_requests_all_succeed(
    hub: HubProcess, origin: Origin, agents: Callable[..., AgentProcess], token: str
) -> None:
    agent = agents(agent_config(hub, token, origin.port))
    await agent.wait_log("tunnel up")

    async def one(i: int) -> bytes:
        result = await fetch_via_connect(
            hub.connect_addr, GATEWAY, "127.0.0.1", origin.port, "POST", "/echo", b"req-%d" % i
        )
        assert result.status == 200
        return result.body

    bodies = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(1000))), 120)
    assert bodies == [b"req-%d" % i for i in range(1000)]


async def _timed_download(hub: HubProcess, port: int, size: int) -> float:
    """Seconds to download ``size`` bytes through the tunnel, counted as they come.

    The body is not gathered into one buffer: growing a 32 MiB buffer in the test process made
    some samples twice as slow while the stalled clients held their own buffers here, which
    timed this process's memory, not the tunnel.
    """
    start = time.perf_counter()
    reader, writer = await open_via_connect(hub.connect_addr, GATEWAY, "127.0.0.1", port)
    try:
        writer.write(f"GET /bytes/{size} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        received = 0
        while chunk := await reader.read(1 << 20):
            received += len(chunk)
    finally:
        writer.close()
    assert received == size, f"downloaded {received} of {size} bytes"
    return time.perf_counter() - start


async def _stall_downloads(hub: HubProcess, origin: Origin, n: int) -> list[asyncio.StreamWriter]:
    """``n`` downloads of 64 MiB whose client never reads: each fills its stream window.

    Returns once every buffer on the way is full, that is when the origin's writes have stopped:
    a download measured while the stalled ones are still filling competes with 100 live
    transfers, which is a different test (and made the first loaded sample of a block up to 2x
    slow).
    """
    stalled: list[asyncio.StreamWriter] = []
    for _ in range(n):
        _, writer = await open_via_connect(hub.connect_addr, GATEWAY, "127.0.0.1", origin.port)
        writer.write(b"GET /bytes/67108864 HTTP/1.1\r\nHost: t\r\n\r\n")
        stalled.append(writer)
    await origin.wait_quiet()
    return stalled


async def test_stalled_readers_do_not_slow_a_healthy_stream(
    origin: Origin, agents: Callable[..., AgentProcess], token: str, tmp_path: Path
) -> None:
    """100 streams whose reader stopped (their windows full) cost a healthy transfer <= 10%.

    This is the window mechanism's isolation, so window tuning (PROTOCOL.md §6.5) is off on
    both ends: with it on, streams that grew before they stalled keep their growth budget while
    their bytes wait, and a healthy stream may be left with its base window (slower, never
    blocked), which says nothing about head-of-line blocking.
    """
    hub = HubProcess(tmp_path, {GATEWAY: token}, ping_interval=1.0, ping_timeout=1.0,
                     extra_args=("--window-growth-budget", "0"))  # fmt: skip
    hub.start()
    agent = agents(agent_config(hub, token, origin.port, window_growth_budget=0))
    await agent.wait_log("tunnel up")
    size = 32 * 1024 * 1024
    samples: dict[str, list[float]] = {"baseline": [], "loaded": []}

    async def phase(name: str, timed: bool) -> None:
        await _timed_download(hub, origin.port, size)  # after a pause: see below
        for _ in range(3):
            seconds = await _timed_download(hub, origin.port, size)
            if timed:
                samples[name].append(seconds)

    with no_collector_pauses():
        try:
            # Blocks alternate, so that whatever drifts during the run (the heap, the websocket's
            # TCP state after bulk traffic) weighs on both sides of the ratio alike. The first
            # block is not timed: until the tunnel has carried one round of 100 streams, its
            # transfers are about 20% slower. Nor is the first transfer after a pause, in
            # either phase: it is about 25% slower whatever came before it, so it adds only noise.
            for block in range(7):
                await phase("baseline", timed=block > 0)
                stalled = await _stall_downloads(hub, origin, 100)
                try:
                    await phase("loaded", timed=block > 0)
                    # the stalled streams are still there, and still stalled
                    status = await fetch_via_connect(
                        hub.connect_addr, GATEWAY, "127.0.0.1", origin.port, "GET", "/small"
                    )
                    assert status.body == b"ok"
                finally:
                    for writer in stalled:
                        writer.close()
                await asyncio.sleep(0.5)  # the tunnel takes the 100 streams down
        finally:
            hub.stop()
    baseline, loaded = samples["baseline"], samples["loaded"]
    ratio = statistics.median(loaded) / statistics.median(baseline)
    print(f"healthy 32 MiB: baseline {baseline} loaded {loaded} ratio {ratio:.3f}")
    assert ratio <= 1.10, f"healthy stream {ratio:.2f}x slower with 100 stalled streams"


async def test_keep_alive_connection_carries_many_requests(
    hub: HubProcess, origin: Origin, agents: Callable[..., AgentProcess], token: str
) -> None:
    agent = agents(agent_config(hub, token, origin.port))
    await agent.wait_log("tunnel up")
    reader, writer = await open_via_connect(hub.connect_addr, GATEWAY, "127.0.0.1", origin.port)
    for _ in range(50):
        result = await http_request(reader, writer, "GET", "/small", keep_alive=True)
        assert result.body == b"ok"
    writer.close()
