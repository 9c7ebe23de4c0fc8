"""Session start, version negotiation, many streams, keepalive and go-away (PROTOCOL.md §4-§8)."""

from __future__ import annotations

from protocol import events as ev
from protocol.codes import ErrorCode
from protocol.connection import ConnectionConfig, Role, TunnelConnection
from protocol.exceptions import ConnectionClosed, LocalProtocolError
from protocol.frames import Settings
from protocol.state import SessionState, StreamState

from .pair import Pair, goaway_code


def test_handshake_negotiates_version_capabilities_and_settings() -> None:
    pair = Pair(Settings(stream_window=64 * 1024), Settings(max_streams=10))
    (client_done,) = pair.client.of(ev.HandshakeComplete)
    (server_done,) = pair.server.of(ev.HandshakeComplete)
    assert client_done.version == server_done.version == 1
    assert client_done.capabilities == server_done.capabilities == {"rpc"}
    assert client_done.peer_settings.max_streams == 10
    assert server_done.peer_settings.stream_window == 64 * 1024
    assert pair.client.conn.state is pair.server.conn.state is SessionState.OPEN


def test_highest_common_version_is_chosen() -> None:
    pair = Pair(client_versions=(1, 2, 7), server_versions=(1, 2))
    assert pair.client.conn.version == pair.server.conn.version == 2


def test_unknown_version_is_refused_with_unsupported_version() -> None:
    pair = Pair(client_versions=(9,), handshake=False)
    pair.pump()
    (terminated,) = pair.server.of(ev.ConnectionTerminated)
    assert terminated.code is ErrorCode.UNSUPPORTED_VERSION and not terminated.remote
    (goaway,) = pair.client.of(ev.GoAwayReceived)
    assert goaway.code is ErrorCode.UNSUPPORTED_VERSION
    assert "speaks [1]" in goaway.message
    (client_end,) = pair.client.of(ev.ConnectionTerminated)
    assert client_end.remote and client_end.code is ErrorCode.UNSUPPORTED_VERSION
    assert pair.client.conn.state is pair.server.conn.state is SessionState.CLOSED


def test_client_refuses_a_version_it_did_not_offer() -> None:
    client = TunnelConnection(ConnectionConfig(Role.CLIENT))
    server = TunnelConnection(ConnectionConfig(Role.SERVER, versions=(5,)))
    client.initiate()
    # A broken server answers with a version the client never offered.
    server.config = ConnectionConfig(Role.SERVER, versions=(5,))
    from protocol.frames import Hello, encode

    events = client.receive_data(encode(Hello((5,), (), Settings())), 0.0)
    assert isinstance(events[-1], ev.ConnectionTerminated)
    assert events[-1].code is ErrorCode.UNSUPPORTED_VERSION
    assert goaway_code(client) == ErrorCode.UNSUPPORTED_VERSION


def test_opening_before_handshake_is_a_local_error() -> None:
    client = TunnelConnection(ConnectionConfig(Role.CLIENT))
    client.initiate()
    try:
        client.open_stream()
    except LocalProtocolError as exc:
        assert "handshake" in str(exc)
    else:
        raise AssertionError("open_stream before HELLO must fail")


def test_thousand_streams_from_each_side_move_data_both_ways_and_end_cleanly() -> None:
    pair = Pair()
    client, server = pair.client, pair.server
    ids = {"client": [client.conn.open_stream({"n": i}) for i in range(1000)]}
    ids["server"] = [server.conn.open_stream({"n": i}) for i in range(1000)]
    assert all(i % 2 == 1 for i in ids["client"]) and all(i % 2 == 0 for i in ids["server"])
    pair.pump()
    for peer, mine in ((server, "client"), (client, "server")):
        opened = {e.stream_id: e.metadata["n"] for e in peer.of(ev.StreamOpened)}
        assert [opened[s] for s in ids[mine]] == list(range(1000))
        for stream_id in ids[mine]:
            peer.conn.accept_stream(stream_id)
    pair.pump()
    # each side writes a distinct payload on every stream in both directions, then half-closes
    for side, mine in ((client, "client"), (server, "server")):
        for stream_id in ids["client"] + ids["server"]:
            payload = f"{mine}:{stream_id}:".encode() * 50
            assert side.conn.send_data(stream_id, payload) == len(payload)
            side.conn.close_stream(stream_id)
    pair.pump()
    for side, peer_name in ((client, "server"), (server, "client")):
        received: dict[int, bytes] = {}
        for e in side.of(ev.DataReceived):
            received[e.stream_id] = received.get(e.stream_id, b"") + e.data
            side.conn.acknowledge(e.stream_id, len(e.data))
        assert len(received) == 2000
        for stream_id, data in received.items():
            assert data == f"{peer_name}:{stream_id}:".encode() * 50
        assert {e.stream_id for e in side.of(ev.StreamEnded)} == set(received)
    pair.pump()
    assert client.conn.open_streams == server.conn.open_streams == 0
    assert not client.of(ev.StreamReset) and not server.of(ev.StreamReset)
    assert not client.of(ev.ConnectionTerminated) and not server.of(ev.ConnectionTerminated)
    # and the session is still usable afterwards
    stream_id = client.conn.open_stream()
    assert stream_id == 2001


def test_stream_states_follow_half_close() -> None:
    pair = Pair()
    sid = pair.client.conn.open_stream()
    assert pair.client.conn.stream_state(sid) is StreamState.SYN_SENT
    pair.client.conn.send_data(sid, b"early")  # allowed before ACCEPT (§5.2)
    pair.client.conn.close_stream(sid)
    assert pair.client.conn.stream_state(sid) is StreamState.SYN_SENT_LOCAL_CLOSED
    pair.pump()
    assert pair.server.conn.stream_state(sid) is StreamState.SYN_RECEIVED_REMOTE_CLOSED
    assert [e.data for e in pair.server.of(ev.DataReceived)] == [b"early"]
    pair.server.conn.accept_stream(sid)
    assert pair.server.conn.stream_state(sid) is StreamState.REMOTE_CLOSED
    pair.server.conn.send_data(sid, b"reply")
    pair.server.conn.close_stream(sid)
    assert pair.server.conn.stream_state(sid) is StreamState.CLOSED
    pair.pump()
    assert pair.client.conn.stream_state(sid) is StreamState.CLOSED
    assert [e.data for e in pair.client.of(ev.DataReceived)] == [b"reply"]


def test_acceptor_cannot_send_before_accepting() -> None:
    pair = Pair()
    sid = pair.client.conn.open_stream()
    pair.pump()
    try:
        pair.server.conn.send_data(sid, b"x")
    except LocalProtocolError:
        pass
    else:
        raise AssertionError("data before ACCEPT from the acceptor must be refused")


def test_reset_reaches_the_peer_and_frees_the_stream() -> None:
    pair = Pair()
    sid = pair.client.conn.open_stream()
    pair.pump()
    pair.server.conn.reset_stream(sid, ErrorCode.DESTINATION_NOT_ALLOWED, "127.0.0.1:22")
    pair.pump()
    (reset,) = pair.client.of(ev.StreamReset)
    assert reset.code is ErrorCode.DESTINATION_NOT_ALLOWED and reset.message == "127.0.0.1:22"
    assert pair.client.conn.open_streams == pair.server.conn.open_streams == 0
    pair.server.conn.reset_stream(sid)  # idempotent


def test_ping_measures_rtt_and_keepalive_detects_a_dead_peer() -> None:
    pair = Pair()
    # each side pings once right after the handshake, to learn the round-trip time (§6.5)
    assert len(pair.client.of(ev.PongReceived)) == 1 and len(pair.server.of(ev.PongReceived)) == 1
    pair.client.take()
    conn = pair.client.conn
    conn.ping_interval, conn.ping_timeout = 5.0, 3.0
    pair.now = 1.0
    conn.ping(pair.now)
    pair.deliver_one_way(pair.client, pair.server)
    pair.now = 1.25
    pair.deliver_one_way(pair.server, pair.client)
    (pong,) = pair.client.of(ev.PongReceived)
    assert pong.rtt == 0.25
    assert conn.next_deadline() == 6.25
    assert conn.tick(6.0) == []
    assert conn.tick(6.25) == []  # sends the next PING
    assert conn.next_deadline() == 9.25
    # the peer never answers: three seconds later the session is over
    events = conn.tick(9.25)
    assert isinstance(events[-1], ev.ConnectionTerminated)
    assert events[-1].code is ErrorCode.PEER_UNRESPONSIVE
    assert conn.state is SessionState.CLOSED and conn.next_deadline() is None


def test_pong_and_window_go_ahead_of_queued_data() -> None:
    pair = Pair()
    sid = pair.client.conn.open_stream()
    pair.pump()
    pair.server.conn.accept_stream(sid)
    pair.pump()
    pair.server.conn.send_data(sid, b"x" * 200_000)  # a backlog of bulk DATA
    pair.client.conn.ping(0.0)
    pair.deliver_one_way(pair.client, pair.server)
    first = pair.server.conn.data_to_send()
    from protocol.frames import Pong, decode_message

    assert isinstance(decode_message(first, 1 << 30)[0], Pong)


def test_no_ping_before_the_handshake() -> None:
    server = TunnelConnection(ConnectionConfig(Role.SERVER))
    server.ping(0.0)
    assert server.data_to_send() == b""


def test_graceful_goaway_drains_and_refuses_new_streams() -> None:
    pair = Pair()
    kept = pair.client.conn.open_stream()
    pair.pump()
    pair.server.conn.accept_stream(kept)
    pair.server.conn.go_away(ErrorCode.SHUTTING_DOWN, "updating", retry_after_ms=1500)
    late = pair.client.conn.open_stream()  # crosses the GOAWAY on the wire
    pair.pump()
    (goaway,) = pair.client.of(ev.GoAwayReceived)
    assert (goaway.code, goaway.last_stream_id, goaway.retry_after_ms) == (
        ErrorCode.SHUTTING_DOWN,
        kept,
        1500,
    )
    refused = [e for e in pair.client.of(ev.StreamReset) if e.stream_id == late]
    assert refused and refused[0].code is ErrorCode.REFUSED_STREAM
    try:
        pair.client.conn.open_stream()
    except ConnectionClosed:
        pass
    else:
        raise AssertionError("no stream may be opened after GOAWAY")
    # the stream opened before the GOAWAY still works both ways
    pair.client.conn.send_data(kept, b"still here")
    pair.client.conn.close_stream(kept)
    pair.server.conn.send_data(kept, b"bye")
    pair.server.conn.close_stream(kept)
    pair.pump()
    assert b"still here" in [e.data for e in pair.server.of(ev.DataReceived)]
    assert pair.server.conn.open_streams == 0 and pair.server.conn.state is SessionState.DRAINING


def test_error_goaway_ends_the_session_on_both_sides() -> None:
    pair = Pair()
    pair.client.conn.open_stream()
    pair.client.conn.go_away(ErrorCode.INTERNAL_ERROR, "boom")
    pair.pump()
    (end,) = pair.server.of(ev.ConnectionTerminated)
    assert end.remote and end.code is ErrorCode.INTERNAL_ERROR and end.message == "boom"
    assert pair.server.conn.state is SessionState.CLOSED
    assert pair.server.conn.open_streams == 0
