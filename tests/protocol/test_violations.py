"""Every rule a peer can break, each in its own test, and the decoder under fuzzing
(PROTOCOL.md §10-§11): the session ends with GOAWAY carrying the rule's code, and nothing but
the protocol's own error ever escapes."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import events as ev
from protocol.codes import ErrorCode, FrameType
from protocol.connection import ConnectionConfig, Role, TunnelConnection
from protocol.exceptions import FrameDecodeError
from protocol.frames import (
    Data,
    Fin,
    Hello,
    Open,
    Settings,
    Window,
    _decode_general,
    decode_message,
    encode,
    encode_data_header,
)
from protocol.state import SessionState

from ..conftest import FUZZ_EXAMPLES
from .pair import Pair, goaway_code

PROTOCOL_ERROR_CODES = {
    ErrorCode.PROTOCOL_ERROR,
    ErrorCode.FRAME_TOO_LARGE,
    ErrorCode.FLOW_CONTROL_ERROR,
    ErrorCode.STREAM_CLOSED,
    ErrorCode.UNSUPPORTED_VERSION,
}


def open_server(settings: Settings | None = None) -> TunnelConnection:
    """A server that has completed its handshake with a (simulated) client."""
    server = TunnelConnection(ConnectionConfig(Role.SERVER, settings or Settings()))
    server.receive_data(encode(Hello((1,), ("rpc",), Settings())), 0.0)
    assert server.state is SessionState.OPEN
    server.data_to_send()
    return server


def assert_ended_with(conn: TunnelConnection, events: list[ev.Event], code: ErrorCode) -> None:
    assert isinstance(events[-1], ev.ConnectionTerminated), events
    assert events[-1].code is code and not events[-1].remote
    assert conn.state is SessionState.CLOSED
    assert goaway_code(conn) == code


def test_bad_msgpack() -> None:
    server = open_server()
    events = server.receive_data(b"\xc1\xc1\xc1", 0.0)  # 0xc1 is never valid msgpack
    assert_ended_with(server, events, ErrorCode.PROTOCOL_ERROR)
    assert "malformed msgpack" in events[-1].message


def test_message_ending_mid_frame() -> None:
    server = open_server()
    events = server.receive_data(encode(Data(1, b"hello"))[:-2], 0.0)
    assert_ended_with(server, events, ErrorCode.PROTOCOL_ERROR)


def test_message_ending_mid_frame_header() -> None:
    # a DATA frame cut after its stream id, and a FIN followed by the start of another frame
    for message in (bytes.fromhex("930301"), bytes.fromhex("92040192")):
        server = open_server()
        events = server.receive_data(message, 0.0)
        assert_ended_with(server, events, ErrorCode.PROTOCOL_ERROR)
        assert "ends mid-frame" in events[-1].message


def test_reasons_are_clipped_to_256_bytes() -> None:
    server = open_server()
    server.receive_data(encode(Open(1, {})), 0.0)
    server.reset_stream(1, ErrorCode.CANCEL, "é" * 1000)
    (reset,) = decode_message(server.data_to_send(), 1 << 20)
    assert len(reset.message.encode()) <= 256 and reset.message == "é" * 128


def test_unknown_frame_type() -> None:
    server = open_server()
    events = server.receive_data(msgpack.packb([42, 1, b""]), 0.0)
    assert_ended_with(server, events, ErrorCode.PROTOCOL_ERROR)
    assert "unknown frame type 42" in events[-1].message


def test_oversize_data_frame() -> None:
    server = open_server(Settings(max_frame_size=1024, max_message_size=64 * 1024))
    server.receive_data(encode(Open(1, {})), 0.0)
    events = server.receive_data(encode(Data(1, b"x" * 1025)), 0.0)
    assert_ended_with(server, events, ErrorCode.FRAME_TOO_LARGE)


def test_oversize_message() -> None:
    server = open_server(
        Settings(max_frame_size=1024, max_message_size=4096, max_metadata_size=1024)
    )
    events = server.receive_data(b"\x90" * 4097, 0.0)
    assert_ended_with(server, events, ErrorCode.FRAME_TOO_LARGE)


def test_data_on_a_stream_the_peer_already_closed() -> None:
    server = open_server()
    server.receive_data(encode(Open(1, {})) + encode(Fin(1)), 0.0)
    server.accept_stream(1)
    events = server.receive_data(encode(Data(1, b"late")), 0.0)
    assert_ended_with(server, events, ErrorCode.STREAM_CLOSED)


def test_data_on_a_stream_never_opened() -> None:
    server = open_server()
    events = server.receive_data(encode(Data(7, b"who?")), 0.0)
    assert_ended_with(server, events, ErrorCode.PROTOCOL_ERROR)
    assert "never opened" in events[-1].message


def test_data_on_a_stream_this_side_reset_is_dropped_not_fatal() -> None:
    server = open_server()
    server.receive_data(encode(Open(1, {})), 0.0)
    server.reset_stream(1)
    events = server.receive_data(encode(Data(1, b"in flight")), 0.0)
    assert events == [] and server.state is SessionState.OPEN


def test_stream_window_exceeded() -> None:
    server = open_server(Settings(stream_window=1024))
    server.receive_data(encode(Open(1, {})), 0.0)
    events = server.receive_data(encode(Data(1, b"x" * 1024)) + encode(Data(1, b"y")), 0.0)
    assert_ended_with(server, events, ErrorCode.FLOW_CONTROL_ERROR)


def test_session_window_exceeded() -> None:
    server = open_server(Settings(stream_window=64 * 1024, session_window=2048))
    server.receive_data(encode(Open(1, {})), 0.0)
    # within the stream's 64 KiB window, one byte over the session's 2 KiB
    events = server.receive_data(encode(Data(1, b"x" * 2049)), 0.0)
    assert_ended_with(server, events, ErrorCode.FLOW_CONTROL_ERROR)


def test_window_increment_overflow() -> None:
    server = open_server()
    events = server.receive_data(encode(Window(0, 2**31 - 1)), 0.0)
    assert_ended_with(server, events, ErrorCode.FLOW_CONTROL_ERROR)


def test_too_many_streams_are_refused_one_by_one() -> None:
    server = open_server(Settings(max_streams=3))
    events = server.receive_data(b"".join(encode(Open(i, {})) for i in (1, 3, 5, 7)), 0.0)
    assert [e.stream_id for e in events if isinstance(e, ev.StreamOpened)] == [1, 3, 5]
    frames = decode_message(server.data_to_send(), 1 << 20)
    assert [(f.stream_id, f.code) for f in frames] == [(7, ErrorCode.REFUSED_STREAM)]
    assert server.state is SessionState.OPEN  # a race the opener can hit: not fatal (§11)


def test_too_many_pending_opens_are_refused() -> None:
    server = open_server(Settings(max_pending_opens=2))
    events = server.receive_data(b"".join(encode(Open(i, {})) for i in (1, 3, 5)), 0.0)
    assert len([e for e in events if isinstance(e, ev.StreamOpened)]) == 2
    frames = decode_message(server.data_to_send(), 1 << 20)
    assert [(f.stream_id, f.code) for f in frames] == [(5, ErrorCode.REFUSED_STREAM)]
    server.accept_stream(1)  # accepting frees a pending slot
    server.receive_data(encode(Open(7, {})), 0.0)
    assert server.open_streams == 3


def test_oversize_metadata_is_refused() -> None:
    server = open_server(Settings(max_metadata_size=256))
    events = server.receive_data(encode(Open(1, {"host": "h" * 300})), 0.0)
    assert events == []
    frames = decode_message(server.data_to_send(), 1 << 20)
    assert [(f.stream_id, f.code) for f in frames] == [(1, ErrorCode.METADATA_TOO_LARGE)]


def test_reused_stream_id() -> None:
    server = open_server()
    server.receive_data(encode(Open(5, {})), 0.0)
    events = server.receive_data(encode(Open(3, {})), 0.0)
    assert_ended_with(server, events, ErrorCode.PROTOCOL_ERROR)
    assert "reused stream id 3" in events[-1].message


def test_stream_id_of_the_wrong_parity() -> None:
    server = open_server()
    events = server.receive_data(encode(Open(2, {})), 0.0)
    assert_ended_with(server, events, ErrorCode.PROTOCOL_ERROR)


def test_first_frame_must_be_hello() -> None:
    server = TunnelConnection(ConnectionConfig(Role.SERVER))
    events = server.receive_data(encode(Open(1, {})), 0.0)
    assert_ended_with(server, events, ErrorCode.PROTOCOL_ERROR)


def test_second_hello() -> None:
    server = open_server()
    events = server.receive_data(encode(Hello((1,), (), Settings())), 0.0)
    assert_ended_with(server, events, ErrorCode.PROTOCOL_ERROR)


@pytest.mark.parametrize("value", [True, 1.5, "64", None], ids=repr)
def test_hello_settings_must_be_integers(value: object) -> None:
    """The same answer compiled or not (protocol/NATIVE.md): a bool is not taken as 1."""
    frame = msgpack.unpackb(encode(Hello((1,), (), Settings())))
    frame[-1]["max_streams"] = value  # [type, stream 0, body]
    server = TunnelConnection(ConnectionConfig(Role.SERVER))
    events = server.receive_data(msgpack.packb(frame), 0.0)
    assert_ended_with(server, events, ErrorCode.PROTOCOL_ERROR)
    assert f"max_streams={value!r}" in events[-1].message


def test_nothing_is_processed_after_the_session_ended() -> None:
    server = open_server()
    server.receive_data(b"\xc1", 0.0)
    assert server.receive_data(encode(Open(1, {})), 0.0) == []


# ---------------------------------------------------------------------------- fuzzing


def valid_messages() -> list[bytes]:
    """Messages a real client sends: a handshake, opens, data, windows, closes."""
    pair = Pair()
    messages: list[bytes] = []
    for i in range(3):
        sid = pair.client.conn.open_stream({"kind": "tcp", "host": "127.0.0.1", "port": i})
        pair.client.conn.send_data(sid, bytes(range(256)) * 3)
        pair.client.conn.close_stream(sid)
    pair.client.conn.ping(0.0)
    while message := pair.client.conn.data_to_send():
        messages.append(message)
    hello = encode(Hello((1,), ("rpc",), Settings(), {"agent": "test"}))
    return [hello, *messages]


VALID = valid_messages()


def fuzz_target(messages: list[bytes], must_fail: bool = False) -> None:
    """Feed messages to a fresh server; only the protocol's own outcome is allowed."""
    server = TunnelConnection(ConnectionConfig(Role.SERVER))
    for message in messages:
        events = server.receive_data(message, 0.0)  # must not raise
        ends = [e for e in events if isinstance(e, ev.ConnectionTerminated)]
        if ends:
            assert ends[0].code in PROTOCOL_ERROR_CODES, ends[0]
            assert server.state is SessionState.CLOSED
            assert goaway_code(server) in PROTOCOL_ERROR_CODES
            return
    assert not must_fail, "a truncated message was accepted"


@settings(max_examples=FUZZ_EXAMPLES)
@given(st.binary(max_size=512))
def test_fuzz_random_bytes(data: bytes) -> None:
    fuzz_target([data])
    try:
        decode_message(data, 1 << 20)
    except FrameDecodeError:
        pass


@settings(max_examples=FUZZ_EXAMPLES)
@given(st.integers(0, len(VALID) - 1), st.data())
def test_fuzz_truncated_messages(index: int, data: st.DataObject) -> None:
    message = VALID[index]
    cut = data.draw(st.integers(0, len(message) - 1))
    # every cut of a message of whole frames that is not itself on a frame boundary must fail
    boundaries = {0}
    offset = 0
    for frame in decode_message(message, 1 << 30):
        offset += len(encode(frame))
        boundaries.add(offset)
    fuzz_target([*VALID[:index], message[:cut]], must_fail=cut not in boundaries)


@settings(max_examples=FUZZ_EXAMPLES)
@given(
    st.integers(0, len(VALID) - 1),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_fuzz_mutated_messages(index: int, mutations: list[tuple[int, int]]) -> None:
    message = bytearray(VALID[index])
    for position, value in mutations:
        message[position % len(message)] = value
    fuzz_target([*VALID[:index], bytes(message), *VALID[index + 1 :]])


@settings(max_examples=FUZZ_EXAMPLES // 10)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**64 - 1)
        | st.binary(max_size=8)
        | st.text(max_size=8),
        lambda children: (
            st.lists(children, max_size=6)
            | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_fuzz_well_formed_msgpack_of_any_shape(obj: object) -> None:
    """Valid msgpack that is not a valid frame is a protocol error, never a crash."""
    fuzz_target([VALID[0], msgpack.packb(obj, use_bin_type=True)])


def test_frame_type_codes_are_stable() -> None:
    # the wire values are part of the spec (§3); changing one breaks every deployed peer
    assert [t.value for t in FrameType] == list(range(10))
    assert ErrorCode.DESTINATION_NOT_ALLOWED == 9


def general_decode(message: bytes) -> list[object] | str:
    """What the msgpack-only decoder makes of ``message``: its frames, or its error."""
    try:
        return list(_decode_general(message))
    except FrameDecodeError as exc:
        return f"{exc.code.name}: {exc}"


def fast_decode(message: bytes) -> list[object] | str:
    try:
        return list(decode_message(message, 1 << 30))
    except FrameDecodeError as exc:
        return f"{exc.code.name}: {exc}"


DATA_HEADS = st.sampled_from(
    [b"\x93\x03", b"\x93\x03\xcc", b"\x93\x03\xcd", b"\x93\x03\xce", b"\x93\x03\xcf",
     b"\x93\x03\x05\xc4", b"\x93\x03\x05\xc5", b"\x93\x03\x05\xc6"]
)  # fmt: skip


@settings(max_examples=FUZZ_EXAMPLES)
@given(
    st.lists(
        st.tuples(st.integers(0, 2**32 - 1), st.binary(max_size=300))
        | st.tuples(st.just(-1), st.sampled_from(VALID)),
        min_size=1,
        max_size=4,
    ),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=3),
    st.integers(0, 10**6),
    DATA_HEADS,
)
def test_the_data_fast_path_decodes_as_the_general_decoder(
    parts: list[tuple[int, bytes]], mutations: list[tuple[int, int]], cut: int, head: bytes
) -> None:
    """DATA frames (stream ids up to 2**32, so some too large), other messages, mutated bytes,
    a cut anywhere, and lone DATA headers: both decoders give the same frames or error."""
    message = bytearray()
    for stream_id, payload in parts:
        if stream_id < 0:
            message += payload  # whole messages of any frame type
        else:
            message += encode_data_header(stream_id, len(payload)) + payload
    for position, value in mutations:
        message[position % len(message)] = value
    for candidate in (bytes(message), bytes(message[: cut % (len(message) + 1)]), head):
        if candidate:
            assert fast_decode(candidate) == general_decode(candidate)
