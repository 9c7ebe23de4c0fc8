"""Credit-based flow control (PROTOCOL.md §6): windows are never exceeded, and a stalled
reader stalls only its own stream."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from protocol import events as ev
from protocol.exceptions import LocalProtocolError
from protocol.frames import Settings
from protocol.state import StreamState
from protocol.windows import ReceiveWindow, SendWindow

from .pair import Pair

KiB = 1024


def test_send_data_takes_no_more_than_the_stream_window() -> None:
    pair = Pair(server_settings=Settings(stream_window=8 * KiB))
    sid = pair.client.conn.open_stream()
    assert pair.client.conn.sendable(sid) == 8 * KiB
    assert pair.client.conn.send_data(sid, b"x" * 20 * KiB) == 8 * KiB
    assert pair.client.conn.send_data(sid, b"x") == 0
    pair.pump()
    pair.server.conn.accept_stream(sid)
    # acknowledging a quarter of the window gives that much credit back
    pair.server.conn.acknowledge(sid, 2 * KiB)
    pair.pump()
    assert pair.client.conn.sendable(sid) == 2 * KiB
    assert [e.stream_id for e in pair.client.of(ev.WindowUpdated)] == [sid]


def test_small_acknowledgements_are_batched() -> None:
    pair = Pair(server_settings=Settings(stream_window=8 * KiB))
    sid = pair.client.conn.open_stream()
    pair.client.conn.send_data(sid, b"x" * 4 * KiB)
    pair.pump()
    pair.server.conn.accept_stream(sid)
    for _ in range(10):
        pair.server.conn.acknowledge(sid, 100)  # 1000 bytes: under a quarter window
    pair.pump()
    assert not pair.client.of(ev.WindowUpdated)
    pair.server.conn.acknowledge(sid, 1048)
    pair.pump()
    assert pair.client.conn.sendable(sid) == 8 * KiB - 4 * KiB + 2048


def test_session_window_bounds_all_streams_together() -> None:
    pair = Pair(server_settings=Settings(stream_window=64 * KiB, session_window=100 * KiB))
    first, second = pair.client.conn.open_stream(), pair.client.conn.open_stream()
    assert pair.client.conn.send_data(first, b"a" * 64 * KiB) == 64 * KiB
    assert pair.client.conn.send_data(second, b"b" * 64 * KiB) == 36 * KiB
    assert pair.client.conn.session_send_window == 0
    pair.pump()
    # the session credit comes back as the data arrives, without any acknowledgement
    assert pair.client.conn.session_send_window == 100 * KiB


def test_a_stalled_reader_stalls_only_its_own_stream() -> None:
    pair = Pair(server_settings=Settings(stream_window=16 * KiB, session_window=64 * KiB))
    stalled = [pair.client.conn.open_stream() for _ in range(20)]
    healthy = pair.client.conn.open_stream()
    pair.pump()
    for sid in [*stalled, healthy]:
        pair.server.conn.accept_stream(sid)
    pair.pump()
    # 20 stalled streams fill 320 KiB of stream windows: five times the session window
    for _ in range(10):
        for sid in stalled:
            pair.client.conn.send_data(sid, b"s" * 16 * KiB)
        pair.pump()
    assert all(pair.client.conn.sendable(sid) == 0 for sid in stalled)
    moved = 0
    for _ in range(100):
        n = pair.client.conn.send_data(healthy, b"h" * 16 * KiB)
        assert n > 0, "the healthy stream must never be blocked by the stalled ones"
        pair.pump()
        for e in pair.server.take():
            if isinstance(e, ev.DataReceived) and e.stream_id == healthy:
                pair.server.conn.acknowledge(healthy, len(e.data))
                moved += len(e.data)
        pair.pump()
    assert moved == 100 * 16 * KiB


def test_acknowledging_more_than_received_is_a_local_error() -> None:
    window = ReceiveWindow(1024)
    window.receive(10, 1)
    try:
        window.acknowledge(11)
    except LocalProtocolError:
        pass
    else:
        raise AssertionError("over-acknowledging must fail")
    send = SendWindow(5)
    try:
        send.consume(6)
    except LocalProtocolError:
        pass
    else:
        raise AssertionError("over-sending must fail")


class FlowControlMachine(RuleBasedStateMachine):
    """Random open / send / acknowledge / close / reset sequences, both directions.

    Invariants (PROTOCOL.md §6.4): for every stream, the bytes a sender has sent but not had
    credited back never exceed the receiver's stream window; for each direction the bytes in
    flight never exceed the session window; each receiver's window accounting balances.
    """

    STREAM_WINDOW = 4 * KiB
    SESSION_WINDOW = 10 * KiB
    #: with window tuning (§6.5) a stream's window may grow up to this
    MAX_STREAM_WINDOW = 4 * KiB
    TUNING = False

    def __init__(self) -> None:
        super().__init__()
        settings = Settings(
            stream_window=self.STREAM_WINDOW,
            session_window=self.SESSION_WINDOW,
            max_frame_size=1 * KiB,
        )
        self.pair = Pair(settings, settings, tuning=self.TUNING)
        self.sides = {"c": self.pair.client, "s": self.pair.server}
        self.streams: list[int] = []
        self.sent: dict[tuple[str, int], int] = {}  # (sender, stream) -> payload bytes sent
        self.received: dict[tuple[str, int], bytes] = {}
        self.unacked: dict[tuple[str, int], int] = {}  # (receiver, stream) -> unacknowledged

    def side(self, name: str):  # noqa: ANN201
        return self.sides[name]

    def _collect(self) -> None:
        for name, side in self.sides.items():
            for e in side.take():
                if isinstance(e, ev.DataReceived):
                    key = (name, e.stream_id)
                    self.received[key] = self.received.get(key, b"") + e.data
                    self.unacked[key] = self.unacked.get(key, 0) + len(e.data)
                elif isinstance(e, ev.StreamOpened):
                    # the same delivery may already have reset it
                    if side.conn.stream_state(e.stream_id) in (
                        StreamState.SYN_RECEIVED,
                        StreamState.SYN_RECEIVED_REMOTE_CLOSED,
                    ):
                        side.conn.accept_stream(e.stream_id)
                elif isinstance(e, ev.ConnectionTerminated):
                    raise AssertionError(f"session ended: {e}")

    @rule(who=st.sampled_from("cs"))
    def open(self, who: str) -> None:
        self.streams.append(self.side(who).conn.open_stream())

    @precondition(lambda self: self.streams)
    @rule(who=st.sampled_from("cs"), index=st.integers(0, 1000), size=st.integers(0, 9 * KiB))
    def send(self, who: str, index: int, size: int) -> None:
        sid = self.streams[index % len(self.streams)]
        conn = self.side(who).conn
        sendable = conn.sendable(sid)
        try:
            n = conn.send_data(sid, bytes([sid % 251]) * size)
        except LocalProtocolError:
            assert sendable == 0
            return
        assert n == min(size, sendable)
        self.sent[(who, sid)] = self.sent.get((who, sid), 0) + n

    @rule()
    def deliver(self) -> None:
        self.pair.pump()
        self._collect()

    @precondition(lambda self: self.unacked)
    @rule(index=st.integers(0, 1000), fraction=st.floats(0, 1))
    def acknowledge(self, index: int, fraction: float) -> None:
        key = sorted(self.unacked)[index % len(self.unacked)]
        n = int(self.unacked[key] * fraction)
        self.side(key[0]).conn.acknowledge(key[1], n)
        self.unacked[key] -= n
        if not self.unacked[key]:
            del self.unacked[key]

    @precondition(lambda self: self.streams)
    @rule(who=st.sampled_from("cs"), index=st.integers(0, 1000))
    def close(self, who: str, index: int) -> None:
        sid = self.streams[index % len(self.streams)]
        try:
            self.side(who).conn.close_stream(sid)
        except LocalProtocolError:
            pass  # already half-closed or gone; the state machine refused it

    @precondition(lambda self: self.streams)
    @rule(who=st.sampled_from("cs"), index=st.integers(0, 1000))
    def reset(self, who: str, index: int) -> None:
        sid = self.streams[index % len(self.streams)]
        self.side(who).conn.reset_stream(sid)
        for side in "cs":
            self.unacked.pop((side, sid), None)

    @invariant()
    def windows_hold(self) -> None:
        for name, side in self.sides.items():
            peer = self.sides["s" if name == "c" else "c"].conn
            conn = side.conn
            assert 0 <= conn.session_send_window <= self.SESSION_WINDOW
            for sid, stream in conn._streams.items():
                assert 0 <= stream.send.available <= self.MAX_STREAM_WINDOW
                recv = stream.recv
                assert recv.remaining + recv.unacknowledged + recv.ungranted == recv.size
                assert recv.remaining >= 0
                peer_stream = peer._streams.get(sid)
                if peer_stream is not None:
                    # the peer never believes it may send more than this side will accept
                    assert peer_stream.send.available <= recv.remaining
            assert peer._session_send.available <= conn._session_recv.remaining

    @invariant()
    def data_arrives_in_order_and_intact(self) -> None:
        for (_, sid), data in self.received.items():
            assert data == bytes([sid % 251]) * len(data)


TestFlowControlMachine = FlowControlMachine.TestCase
TestFlowControlMachine.settings = settings(max_examples=300, stateful_step_count=60)


class TunedFlowControlMachine(FlowControlMachine):
    """The same sequences with window tuning on: growth keeps every invariant."""

    TUNING = True
    MAX_STREAM_WINDOW = 16 * 1024 * 1024


TestTunedFlowControlMachine = TunedFlowControlMachine.TestCase
TestTunedFlowControlMachine.settings = settings(max_examples=200, stateful_step_count=60)
