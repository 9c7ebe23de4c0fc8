"""Receive-window auto-tuning (PROTOCOL.md §6.5): streams limited by their window grow it, up to
a cap and within one budget per session; stalled streams never grow."""

from __future__ import annotations

import pytest

from protocol import events as ev
from protocol.connection import ConnectionConfig, Role, TunnelConnection
from protocol.frames import Settings
from protocol.windows import ReceiveWindow, WindowTuner

from .pair import Pair

KiB = 1024
MiB = 1024 * KiB


def test_fast_grants_double_the_window_up_to_the_cap() -> None:
    tuner = WindowTuner(base_size=64 * KiB, max_size=256 * KiB, budget=10 * MiB)
    tuner.rtt = 0.010
    window = ReceiveWindow(64 * KiB, now=0.0)
    sizes = []
    now = 0.0
    for _ in range(8):
        window.receive(window.remaining, 1)
        now += 0.001  # credit comes back well within two round trips
        increment = window.acknowledge(window.unacknowledged, now, tuner)
        assert increment > 0
        assert window.remaining + window.unacknowledged + window.ungranted == window.size
        sizes.append(window.size)
    assert sizes == [128 * KiB, 256 * KiB, 256 * KiB, 256 * KiB, 256 * KiB, 256 * KiB, 256 * KiB,
                     256 * KiB]  # fmt: skip
    assert tuner.budget == 10 * MiB - 192 * KiB
    tuner.release(window)
    assert tuner.budget == 10 * MiB


def test_a_round_trip_below_a_millisecond_counts_as_one() -> None:
    tuner = WindowTuner(base_size=64 * KiB, max_size=1 * MiB, budget=10 * MiB)
    tuner.rtt = 0.0  # a coarse clock: the PONG came back "at once"
    window = ReceiveWindow(64 * KiB, now=0.0)
    window.receive(64 * KiB, 1)
    window.acknowledge(64 * KiB, 0.0005, tuner)
    assert window.size == 128 * KiB, "grants 0.5 ms apart are fast"
    window.receive(window.remaining, 1)
    window.acknowledge(window.unacknowledged, 0.0030, tuner)
    assert window.size == 128 * KiB, "grants 2.5 ms apart are not"


def test_slow_grants_and_unknown_rtt_leave_the_window_alone() -> None:
    tuner = WindowTuner(base_size=64 * KiB, max_size=1 * MiB, budget=10 * MiB)
    window = ReceiveWindow(64 * KiB)
    window.receive(64 * KiB, 1)
    window.acknowledge(64 * KiB, 0.001, tuner)
    assert window.size == 64 * KiB, "no RTT measured yet: no growth"
    tuner.rtt = 0.010
    window.receive(64 * KiB, 1)
    window.acknowledge(64 * KiB, 1.0, tuner)  # a second later: the consumer is the bottleneck
    assert window.size == 64 * KiB


def test_growth_stops_at_the_session_budget() -> None:
    tuner = WindowTuner(base_size=64 * KiB, max_size=16 * MiB, budget=100 * KiB)
    tuner.rtt = 0.010
    window = ReceiveWindow(64 * KiB)
    for step in range(1, 6):
        window.receive(window.remaining, 1)
        window.acknowledge(window.unacknowledged, step * 0.001, tuner)
    assert window.size == 164 * KiB and tuner.budget == 0


def test_a_bulk_stream_grows_while_stalled_streams_stay_at_their_base() -> None:
    settings = Settings(stream_window=64 * KiB, session_window=64 * MiB)
    pair = Pair(settings, settings, tuning=True)
    bulk = pair.client.conn.open_stream()
    stalled = [pair.client.conn.open_stream() for _ in range(5)]
    pair.pump()
    for sid in [bulk, *stalled]:
        pair.server.conn.accept_stream(sid)
    pair.pump()
    for sid in stalled:
        pair.client.conn.send_data(sid, b"s" * 64 * KiB)
    pair.pump()
    pair.server.take()
    moved = 0
    for step in range(200):
        pair.now = step * 0.0001  # grants 0.1 ms apart; the handshake measured a zero RTT...
        pair.server.conn._tuner.rtt = 0.001  # ...so give it the RTT of a real loopback link
        pair.client.conn.send_data(bulk, b"b" * pair.client.conn.sendable(bulk))
        pair.deliver_one_way(pair.client, pair.server)
        for event in pair.server.take():
            if isinstance(event, ev.DataReceived) and event.stream_id == bulk:
                pair.server.conn.acknowledge(bulk, len(event.data))
                moved += len(event.data)
        pair.deliver_one_way(pair.server, pair.client)
    server_streams = pair.server.conn._streams
    assert server_streams[bulk].recv.size > 1 * MiB, "the bulk stream's window should grow"
    assert all(server_streams[sid].recv.size == 64 * KiB for sid in stalled)
    assert moved > 64 * MiB // 8


def test_tuning_can_be_turned_off() -> None:
    conn = TunnelConnection(ConnectionConfig(Role.SERVER, window_growth_budget=0))
    window = ReceiveWindow(64 * KiB)
    conn._tuner.rtt = 0.01
    window.receive(64 * KiB, 1)
    window.acknowledge(64 * KiB, 0.001, conn._tuner)
    assert window.size == 64 * KiB


def test_a_negative_budget_is_refused_with_its_value() -> None:
    with pytest.raises(ValueError, match=r"window_growth_budget=-1 must be 0 \(no window tuning\)"):
        ConnectionConfig(Role.SERVER, window_growth_budget=-1)
