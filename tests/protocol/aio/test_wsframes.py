"""Websocket frames: the ones we write, checked by the library's own parsers; the reader that
takes final binary frames out of the byte stream, checked frame by frame against what the frames
are, on both sides of a real :class:`WebSocketChannel` (over a transport that records writes)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import Protocol, Side, State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from protocol.aio.channel import WebSocketChannel
from protocol.aio.wsframes import FrameReader, MaskKeys, Raw, binary_frame, server_binary_frame
from tests.support.channel import Collector

SIZES = [0, 1, 125, 126, 65535, 65536, 1 << 20]
MAX_SIZE = 100_000


def pattern(size: int) -> bytes:
    return bytes(range(256)) * (size // 256) + bytes(size % 256)


# ---------------------------------------------------------------------------------------------
# Writing


@pytest.mark.parametrize("size", SIZES)
def test_our_client_frames_are_what_a_websocket_server_parses(size: int) -> None:
    server = ServerProtocol(state=State.OPEN, max_size=None)
    server.receive_data(binary_frame(pattern(size), MaskKeys().take()))
    [frame] = server.events_received()
    assert frame.opcode is Opcode.BINARY and frame.fin and frame.data == pattern(size)
    assert server.handshake_exc is None and server.state is State.OPEN


@pytest.mark.parametrize("size", SIZES)
def test_our_server_frames_are_what_a_websocket_client_parses(size: int) -> None:
    client = ClientProtocol(parse_uri("ws://h/"), state=State.OPEN, max_size=None)
    client.receive_data(server_binary_frame(pattern(size)))
    [frame] = client.events_received()
    assert frame.opcode is Opcode.BINARY and frame.fin and frame.data == pattern(size)
    assert client.handshake_exc is None and client.state is State.OPEN


def test_masking_keys_are_fresh_and_cross_batches() -> None:
    keys = MaskKeys(batch=16)
    drawn = [keys.take() for _ in range(3000)]
    assert all(len(key) == 4 for key in drawn)
    # 3,000 draws from 2**32 values: a repeat is possible but rare; many would mean a bug
    assert len(set(drawn)) >= 2990


# ---------------------------------------------------------------------------------------------
# The reader on its own


@pytest.mark.parametrize("size", SIZES)
def test_reader_takes_a_message_fed_one_byte_at_a_time(size: int) -> None:
    reader = FrameReader(masked=True, max_size=None)
    wire = binary_frame(pattern(size), MaskKeys().take()) * 2
    step = max(1, len(wire) // 3000)  # every byte for small frames, 3,000 pieces for big ones
    out: list[bytes | Raw] = []
    for at in range(0, len(wire), step):
        out += reader.feed(wire[at : at + step])
    assert out == [pattern(size), pattern(size)] and not reader.handed_over


def test_reader_hands_over_an_oversized_frame_on_its_header_alone() -> None:
    reader = FrameReader(masked=False, max_size=MAX_SIZE)
    head = bytes([0x82, 127]) + (1 << 31).to_bytes(8, "big")  # 2 GiB announced, none sent
    assert reader.feed(head[:5]) == []
    assert reader.feed(head[5:]) == [Raw(head)]  # given to the library at once, not buffered
    assert reader.handed_over and reader.feed(b"more") == [Raw(b"more")]


@pytest.mark.parametrize(
    "start",
    [
        b"\x83\xfe",  # a reserved opcode, then a 16-bit length that has not come yet
        b"\x82\x7f",  # a binary frame without the mask a server must get
        b"\x89\xfe",  # a ping announcing more than 125 bytes
        b"\x02\xfe",  # a binary fragment
    ],
)
def test_reader_hands_over_on_two_bytes_what_the_library_refuses_on_them(start: bytes) -> None:
    reader = FrameReader(masked=True, max_size=MAX_SIZE)
    assert reader.feed(start) == [Raw(start)] and reader.handed_over


def test_reader_hands_over_a_ping_above_max_size_with_what_follows() -> None:
    reader = FrameReader(masked=False, max_size=100)
    wire = Frame(Opcode.PING, bytes(120)).serialize(mask=False) + server_binary_frame(b"after")
    assert reader.feed(wire) == [Raw(wire)]  # the library fails it (1009) and reads no further


def test_reader_hands_over_what_it_held_when_told() -> None:
    reader = FrameReader(masked=False, max_size=None)
    wire = server_binary_frame(pattern(300))
    assert reader.feed(wire[:100]) == []
    assert reader.hand_over() == wire[:100]
    assert reader.feed(wire[100:]) == [Raw(wire[100:])]


# ---------------------------------------------------------------------------------------------
# The channel, both sides: what each kind of frame does, in any order, cut anywhere


class RecordingTransport:
    """What a channel needs of an asyncio transport; keeps what is written."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closing = False
        self.eof = False
        self.protocol: object = None

    def write(self, data: bytes) -> None:
        self.written += data

    def take(self) -> bytes:
        data = bytes(self.written)
        self.written.clear()
        return data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default

    def get_protocol(self) -> object:
        return self.protocol

    def set_protocol(self, protocol: object) -> None:
        self.protocol = protocol

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def server_channel() -> tuple[WebSocketChannel, RecordingTransport, Collector]:
    client = ClientProtocol(parse_uri("ws://hub/v1/tunnel"))
    client.send_request(client.connect())
    transport = RecordingTransport()
    channel = WebSocketChannel.accept(transport, b"".join(client.data_to_send()), max_size=MAX_SIZE)
    assert isinstance(channel, WebSocketChannel)
    transport.take()  # the 101
    receiver = Collector()
    channel.attach(receiver)
    return channel, transport, receiver


async def client_channel(
    after_101: bytes = b"",
) -> tuple[WebSocketChannel, RecordingTransport, Collector]:
    transport = RecordingTransport()
    channel = WebSocketChannel(max_size=MAX_SIZE)
    channel.connection_made(transport)  # type: ignore[arg-type]
    handshake = asyncio.create_task(channel.handshake("ws://hub/v1/tunnel", {}, "test"))
    await asyncio.sleep(0)
    server = ServerProtocol()
    server.receive_data(transport.take())
    [request] = server.events_received()
    server.send_response(server.accept(request))  # type: ignore[arg-type]
    channel.data_received(b"".join(server.data_to_send()) + after_101)
    await handshake
    receiver = Collector()
    channel.attach(receiver)
    return channel, transport, receiver


@dataclass(frozen=True)
class Spec:
    """One thing the peer sends, and what the channel must do with it."""

    kind: str  # binary, text, ping, pong, fragmented, close, wrong_mask, oversized, reserved_bit
    data: bytes = b""
    parts: tuple[bytes, ...] = ()

    def frames(self) -> list[Frame]:
        kind = self.kind
        if kind in ("binary", "wrong_mask", "oversized", "reserved_bit"):
            return [Frame(Opcode.BINARY, self.data)]
        if kind == "text":
            return [Frame(Opcode.TEXT, self.data)]
        if kind == "ping":
            return [Frame(Opcode.PING, self.data)]
        if kind == "pong":
            return [Frame(Opcode.PONG, self.data)]
        if kind == "close":
            return [Frame(Opcode.CLOSE, Close(1001, "bye").serialize())]
        first, *rest = self.parts  # fragmented, with a ping between the first two fragments
        frames = [Frame(Opcode.BINARY, first, fin=False), Frame(Opcode.PING, b"mid")]
        frames += [Frame(Opcode.CONT, part, fin=False) for part in rest]
        return [*frames, Frame(Opcode.CONT, b"", fin=True)]

    def wire(self, masked: bool) -> bytes:
        mask = masked != (self.kind == "wrong_mask")
        wire = b"".join(frame.serialize(mask=mask) for frame in self.frames())
        if self.kind == "reserved_bit":  # RSV1 without an extension that defines it
            wire = bytes([wire[0] | 0x40]) + wire[1:]
        return wire

    @property
    def ends(self) -> int | None:
        """The close code the channel answers with, if this ends the websocket."""
        return {"close": 1001, "wrong_mask": 1002, "reserved_bit": 1002, "oversized": 1009}.get(
            self.kind
        )


payloads = st.one_of(
    st.binary(max_size=300), st.sampled_from([125, 126, 65535, 65536]).map(pattern)
)
specs = st.one_of(
    st.builds(Spec, st.just("binary"), payloads),
    st.builds(Spec, st.just("text"), st.text(max_size=50).map(str.encode)),
    st.builds(Spec, st.sampled_from(["ping", "pong"]), st.binary(max_size=125)),
    st.builds(
        Spec,
        st.just("fragmented"),
        st.just(b""),
        st.lists(st.binary(max_size=200), min_size=1, max_size=4).map(tuple),
    ),
    st.builds(Spec, st.sampled_from(["close", "wrong_mask", "reserved_bit"])),
    st.builds(Spec, st.just("oversized"), st.just(bytes(MAX_SIZE + 1))),
)


def expected(sent: list[Spec]) -> tuple[list[bytes | str], list[bytes], int | None]:
    """Messages delivered, pong payloads written and the close code, by what the peer sent."""
    messages: list[bytes | str] = []
    pongs: list[bytes] = []
    for spec in sent:
        if spec.ends is not None:
            return messages, pongs, spec.ends
        if spec.kind == "binary":
            messages.append(spec.data)
        elif spec.kind == "text":
            messages.append(spec.data.decode())
        elif spec.kind == "ping":
            pongs.append(spec.data)
        elif spec.kind == "fragmented":
            pongs.append(b"mid")
            messages.append(b"".join(spec.parts))
    return messages, pongs, None


def written(side: Side, wire: bytes) -> tuple[list[bytes], int | None]:
    """Pong payloads and the close code in what a channel on ``side`` wrote."""
    peer = Protocol(Side.CLIENT if side is Side.SERVER else Side.SERVER, state=State.OPEN)
    peer.receive_data(wire)
    pongs, code = [], None
    for frame in peer.events_received():
        assert isinstance(frame, Frame) and code is None  # nothing after a close
        if frame.opcode is Opcode.PONG:
            pongs.append(frame.data)
        else:
            assert frame.opcode is Opcode.CLOSE
            code = Close.parse(frame.data).code
    return pongs, code


@settings(max_examples=150, deadline=None)
@given(
    side=st.sampled_from([Side.SERVER, Side.CLIENT]),
    sent=st.lists(specs, max_size=12),
    cuts=st.lists(st.floats(0, 1), max_size=8),
)
def test_channel_does_what_each_frame_says_wherever_the_reads_cut(
    side: Side, sent: list[Spec], cuts: list[float]
) -> None:
    wire = b"".join(spec.wire(masked=side is Side.SERVER) for spec in sent)
    points = sorted({0, len(wire), *(int(cut * len(wire)) for cut in cuts)})

    async def check() -> None:
        opened = server_channel() if side is Side.SERVER else client_channel()
        channel, transport, receiver = await opened
        assert channel.reads_frames
        for start, end in zip(points, points[1:], strict=False):
            channel.data_received(wire[start:end])
        messages, pongs, code = expected(sent)
        assert receiver.messages == messages
        assert written(side, transport.take()) == (pongs, code)
        # frames of any other kind, from the first one on, go to the library
        assert channel.reads_frames is all(s.kind in ("binary", "ping", "pong") for s in sent)

    asyncio.run(check())


def test_client_reads_frames_that_came_with_the_101_through_the_library() -> None:
    async def check() -> None:
        first = server_binary_frame(b"early")
        channel, transport, receiver = await client_channel(after_101=first)
        assert not channel.reads_frames  # a frame was in the same read as the 101
        channel.data_received(server_binary_frame(b"later"))
        assert receiver.messages == [b"early", b"later"]
        assert transport.take() == b""

    asyncio.run(check())


def test_eof_inside_a_frame_is_the_library_s_to_judge() -> None:
    async def check() -> None:
        channel, transport, receiver = await server_channel()
        channel.data_received(binary_frame(b"whole", MaskKeys().take()))
        channel.data_received(binary_frame(b"cut short", MaskKeys().take())[:6])
        channel.eof_received()
        assert receiver.messages == [b"whole"]
        assert not channel.reads_frames
        assert transport.take() == b"" and transport.eof  # no close frame: the TCP end
        # the library was given the held start of the frame before the end: it says so
        assert channel._ws is not None and "expected 9 bytes" in str(channel._ws.parser_exc)

    asyncio.run(check())
