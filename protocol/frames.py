"""Frames: what travels in a websocket binary message (PROTOCOL.md §2-§3).

A message is one or more frames back to back; each frame is one msgpack array whose first two
elements are the frame type and the stream id. :func:`encode` turns a frame into bytes and
:func:`decode_message` turns one message back into frames, raising
:class:`~protocol.exceptions.FrameDecodeError` (and nothing else) on any malformed input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import msgpack

from protocol.codes import ErrorCode, FrameType
from protocol.exceptions import FrameDecodeError, RemoteProtocolError

__all__ = [
    "Accept",
    "Data",
    "ErrorCode",
    "Fin",
    "Frame",
    "FrameType",
    "GoAway",
    "Hello",
    "Open",
    "Ping",
    "Pong",
    "Reset",
    "Settings",
    "Window",
    "decode_batch",
    "decode_message",
    "encode",
]

KiB = 1024
MiB = 1024 * KiB

#: Largest value of a window, an increment or a stream id (2**31 - 1), PROTOCOL.md §6.
MAX_WINDOW = 2**31 - 1
MAX_STREAM_ID = 2**31 - 1
#: PING and PONG carry at most this many opaque bytes (§7).
MAX_PING_PAYLOAD = 64
#: Bytes a frame may add around a DATA payload; max_message_size must leave room for it.
FRAME_OVERHEAD = 32
#: RESET and GOAWAY reasons are cut to this many bytes of UTF-8 (§10).
MAX_REASON_BYTES = 256


def clip_reason(text: str) -> str:
    """``text`` cut to MAX_REASON_BYTES of UTF-8, on a character boundary."""
    data = text.encode()
    if len(data) <= MAX_REASON_BYTES:
        return text
    return data[:MAX_REASON_BYTES].decode(errors="ignore")


MetadataValue: TypeAlias = str | int | float | bool | bytes | None


@dataclass(frozen=True, slots=True)
class Settings:
    """What one side accepts from its peer, announced in HELLO (PROTOCOL.md §4.2)."""

    #: credit the peer gets on each new stream, in DATA payload bytes
    stream_window: int = 256 * KiB
    #: credit the peer gets for the whole session
    session_window: int = 16 * MiB
    #: largest DATA payload in one frame
    max_frame_size: int = 64 * KiB
    #: largest websocket message
    max_message_size: int = 1 * MiB
    #: streams the peer may have open that the peer opened
    max_streams: int = 4096
    #: streams the peer opened that this side has not accepted or reset yet
    max_pending_opens: int = 1024
    #: largest msgpack encoding of an OPEN frame's metadata map
    max_metadata_size: int = 4 * KiB

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("invalid tunnel settings: " + "; ".join(problems))

    def problems(self) -> list[str]:
        """Every rule of §4.2 these values break (empty when they are valid)."""
        found = []
        for name, low, high in (
            ("stream_window", 1 * KiB, MAX_WINDOW),
            ("session_window", 1 * KiB, MAX_WINDOW),
            ("max_frame_size", 1 * KiB, 16 * MiB),
            ("max_message_size", 1 * KiB + FRAME_OVERHEAD, 64 * MiB),
            ("max_streams", 1, 2**20),
            ("max_pending_opens", 1, 2**20),
            ("max_metadata_size", 256, 1 * MiB),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                found.append(f"{name}={value!r} is outside {low}..{high}")
        if not found and self.max_message_size < self.max_frame_size + FRAME_OVERHEAD:
            found.append(
                f"max_message_size={self.max_message_size} must be at least "
                f"max_frame_size + {FRAME_OVERHEAD} = {self.max_frame_size + FRAME_OVERHEAD}"
            )
        if not found and self.max_message_size < self.max_metadata_size + 64:
            found.append(
                f"max_message_size={self.max_message_size} must be at least "
                f"max_metadata_size + 64 = {self.max_metadata_size + 64}, so that every OPEN "
                "the peer may send fits in one message"
            )
        return found

    def to_wire(self) -> dict[str, int]:
        return {
            "stream_window": self.stream_window,
            "session_window": self.session_window,
            "max_frame_size": self.max_frame_size,
            "max_message_size": self.max_message_size,
            "max_streams": self.max_streams,
            "max_pending_opens": self.max_pending_opens,
            "max_metadata_size": self.max_metadata_size,
        }


# ---------------------------------------------------------------------------------------------
# Frames (PROTOCOL.md §3). Field order in the dataclass is the order on the wire.


@dataclass(frozen=True, slots=True)
class Hello:
    """Session start (§4). The client lists every version it speaks; the server exactly one."""

    versions: tuple[int, ...]
    capabilities: tuple[str, ...]
    settings: Settings
    info: Mapping[str, str] = field(default_factory=dict)
    stream_id: int = 0


@dataclass(frozen=True, slots=True)
class Open:
    stream_id: int
    metadata: Mapping[str, MetadataValue]


@dataclass(frozen=True, slots=True)
class Accept:
    stream_id: int


@dataclass(frozen=True, slots=True)
class Data:
    stream_id: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Fin:
    stream_id: int


@dataclass(frozen=True, slots=True)
class Reset:
    stream_id: int
    code: ErrorCode
    message: str = ""


@dataclass(frozen=True, slots=True)
class Window:
    """Grant ``increment`` more bytes of credit; stream id 0 is the session window."""

    stream_id: int
    increment: int


@dataclass(frozen=True, slots=True)
class Ping:
    payload: bytes
    stream_id: int = 0


@dataclass(frozen=True, slots=True)
class Pong:
    payload: bytes
    stream_id: int = 0


@dataclass(frozen=True, slots=True)
class GoAway:
    code: ErrorCode
    last_stream_id: int
    retry_after_ms: int = 0
    message: str = ""
    stream_id: int = 0


Frame: TypeAlias = Hello | Open | Accept | Data | Fin | Reset | Window | Ping | Pong | GoAway


# ---------------------------------------------------------------------------------------------
# Encoding


def _pack(obj: object) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def encode(frame: Frame) -> bytes:
    """The msgpack encoding of one frame (§3)."""
    match frame:
        case Data(stream_id, payload):
            return _pack((FrameType.DATA, stream_id, payload))
        case Window(stream_id, increment):
            return _pack((FrameType.WINDOW, stream_id, increment))
        case Open(stream_id, metadata):
            return _pack((FrameType.OPEN, stream_id, dict(metadata)))
        case Accept(stream_id):
            return _pack((FrameType.ACCEPT, stream_id))
        case Fin(stream_id):
            return _pack((FrameType.FIN, stream_id))
        case Reset(stream_id, code, message):
            return _pack((FrameType.RESET, stream_id, int(code), clip_reason(message)))
        case Ping(payload):
            return _pack((FrameType.PING, 0, payload))
        case Pong(payload):
            return _pack((FrameType.PONG, 0, payload))
        case GoAway(code, last_stream_id, retry_after_ms, message):
            reason = clip_reason(message)
            return _pack((FrameType.GOAWAY, 0, int(code), last_stream_id, retry_after_ms, reason))
        case Hello(versions, capabilities, settings, info):
            body: dict[str, Any] = {
                "versions": list(versions),
                "capabilities": list(capabilities),
                "info": dict(info),
            }
            body.update(settings.to_wire())
            return _pack((FrameType.HELLO, 0, body))
    raise TypeError(f"not a frame: {frame!r}")  # pragma: no cover - exhaustive match


def encode_data_header(stream_id: int, length: int) -> bytes:
    """The bytes of a DATA frame that come before its payload (lets a sender avoid a copy).

    ``encode_data_header(s, len(p)) + p == encode(Data(s, p))`` for every payload ``p``.
    """
    # fixarray of 3, the DATA type as a positive fixint, the stream id as the smallest msgpack
    # unsigned int that holds it, then the bin header of the payload (msgpack spec).
    if stream_id < 0x80:
        head = bytes((0x93, FrameType.DATA, stream_id))
    elif stream_id < 2**8:
        head = bytes((0x93, FrameType.DATA, 0xCC, stream_id))
    elif stream_id < 2**16:
        head = b"\x93\x03\xcd" + stream_id.to_bytes(2, "big")
    else:
        head = b"\x93\x03\xce" + stream_id.to_bytes(4, "big")
    if length < 2**8:
        return head + b"\xc4" + length.to_bytes(1, "big")
    if length < 2**16:
        return head + b"\xc5" + length.to_bytes(2, "big")
    return head + b"\xc6" + length.to_bytes(4, "big")


# ---------------------------------------------------------------------------------------------
# Decoding


def _fail(message: str, code: ErrorCode = ErrorCode.PROTOCOL_ERROR) -> FrameDecodeError:
    return FrameDecodeError(message, code)


def _uint(value: object, what: str, high: int = 2**63 - 1) -> int:
    if type(value) is not int or not 0 <= value <= high:
        raise _fail(f"{what} must be an integer in 0..{high}, got {value!r:.40}")
    return value


def _str(value: object, what: str) -> str:
    if type(value) is not str:
        raise _fail(f"{what} must be a string, got {type(value).__name__}")
    return value


def _bin(value: object, what: str) -> bytes:
    if type(value) is not bytes:
        raise _fail(f"{what} must be binary, got {type(value).__name__}")
    return value


def _arity(obj: list[Any], n: int, frame_type: FrameType) -> None:
    if len(obj) != n:
        raise _fail(f"{frame_type.name} frame has {len(obj)} elements, expected {n}")


def _metadata(value: object) -> dict[str, MetadataValue]:
    if type(value) is not dict:
        raise _fail(f"OPEN metadata must be a map, got {type(value).__name__}")
    for key, item in value.items():
        if type(key) is not str:
            raise _fail("OPEN metadata keys must be strings")
        if item is not None and type(item) not in (str, int, float, bool, bytes):
            raise _fail(f"OPEN metadata value for {key!r:.40} must be a scalar")
    return value


def _hello(body: object) -> Hello:
    if type(body) is not dict:
        raise _fail("HELLO body must be a map")
    versions = body.get("versions")
    if type(versions) is not list or not versions:
        raise _fail("HELLO must list at least one protocol version")
    capabilities = body.get("capabilities", [])
    if type(capabilities) is not list:
        raise _fail("HELLO capabilities must be a list")
    info = body.get("info", {})
    if type(info) is not dict or not all(
        type(k) is str and type(v) is str for k, v in info.items()
    ):
        raise _fail("HELLO info must be a map of strings to strings")
    defaults = Settings().to_wire()
    values = {name: body.get(name, default) for name, default in defaults.items()}
    # checked here, not left to Settings: compiled (protocol/NATIVE.md), its int fields take
    # True as 1 and refuse a float with TypeError before its own checks run
    wrong = [f"{name}={value!r:.40}" for name, value in values.items() if type(value) is not int]
    if wrong:
        raise _fail(f"HELLO settings must be integers: {', '.join(wrong)}")
    try:
        settings = Settings(**values)
    except ValueError as exc:
        raise _fail(f"HELLO settings: {exc}") from None
    return Hello(
        versions=tuple(_uint(v, "HELLO version", 2**16 - 1) for v in versions),
        capabilities=tuple(_str(c, "HELLO capability") for c in capabilities),
        settings=settings,
        info=info,
    )


_FRAME_TYPES = tuple(FrameType)  # by wire value: FrameType values are 0..9 with no gaps


def _frame(obj: object) -> Frame:
    if type(obj) is not list or len(obj) < 2:
        raise _fail(f"a frame must be an array of at least 2 elements, got {obj!r:.40}")
    raw_type = obj[0]
    if type(raw_type) is not int:
        raise _fail(f"frame type must be an integer, got {raw_type!r:.40}")
    if not 0 <= raw_type < len(_FRAME_TYPES):
        raise _fail(f"unknown frame type {raw_type}")
    frame_type = _FRAME_TYPES[raw_type]
    stream_id = _uint(obj[1], "stream id", MAX_STREAM_ID)
    if frame_type is FrameType.DATA:  # the hot path first
        _arity(obj, 3, frame_type)
        return Data(stream_id, _bin(obj[2], "DATA payload"))
    if frame_type in (FrameType.HELLO, FrameType.PING, FrameType.PONG, FrameType.GOAWAY):
        if stream_id != 0:
            raise _fail(f"{frame_type.name} must carry stream id 0, got {stream_id}")
    elif frame_type is not FrameType.WINDOW and stream_id == 0:
        raise _fail(f"{frame_type.name} needs a stream id other than 0")
    match frame_type:
        case FrameType.WINDOW:
            _arity(obj, 3, frame_type)
            return Window(stream_id, _uint(obj[2], "WINDOW increment", MAX_WINDOW))
        case FrameType.OPEN:
            _arity(obj, 3, frame_type)
            return Open(stream_id, _metadata(obj[2]))
        case FrameType.ACCEPT:
            _arity(obj, 2, frame_type)
            return Accept(stream_id)
        case FrameType.FIN:
            _arity(obj, 2, frame_type)
            return Fin(stream_id)
        case FrameType.RESET:
            _arity(obj, 4, frame_type)
            code = ErrorCode.from_wire(_uint(obj[2], "RESET code"))
            return Reset(stream_id, code, _str(obj[3], "RESET message"))
        case FrameType.PING | FrameType.PONG:
            _arity(obj, 3, frame_type)
            payload = _bin(obj[2], f"{frame_type.name} payload")
            if len(payload) > MAX_PING_PAYLOAD:
                raise _fail(f"{frame_type.name} payload of {len(payload)} bytes exceeds 64")
            return Ping(payload) if frame_type is FrameType.PING else Pong(payload)
        case FrameType.GOAWAY:
            _arity(obj, 6, frame_type)
            return GoAway(
                code=ErrorCode.from_wire(_uint(obj[2], "GOAWAY code")),
                last_stream_id=_uint(obj[3], "GOAWAY last stream id", MAX_STREAM_ID),
                retry_after_ms=_uint(obj[4], "GOAWAY retry-after", 2**32 - 1),
                message=_str(obj[5], "GOAWAY message"),
            )
        case _:  # FrameType.HELLO
            _arity(obj, 3, frame_type)
            return _hello(obj[2])


def decode_message(message: bytes, max_message_size: int) -> list[Frame]:
    """Every frame in one websocket message, in order (§2).

    Raises :class:`FrameDecodeError` with code FRAME_TOO_LARGE for an oversize message and
    PROTOCOL_ERROR for anything else that is wrong, including a message that ends mid-frame.
    """
    _check_size(message, max_message_size)
    # The hot path: a message that is one DATA frame (a small request or response) is read
    # without a msgpack unpacker; for a message of many frames the unpacker is faster.
    found = _data_frame_at(message)
    if found is not None:
        return [found]
    return _decode_general(message)


def decode_batch(message: bytes, max_message_size: int) -> list[Frame]:
    """:func:`decode_message` without its single-DATA fast path, for a caller that has made
    that check itself (:func:`data_frame_span`): the same frames and the same errors."""
    _check_size(message, max_message_size)
    return _decode_general(message)


def _check_size(message: bytes, max_message_size: int) -> None:
    if len(message) > max_message_size:
        raise _fail(
            f"message of {len(message)} bytes exceeds max_message_size {max_message_size}",
            ErrorCode.FRAME_TOO_LARGE,
        )
    if not message:
        raise _fail("empty message")


def _data_frame_at(message: bytes) -> Data | None:
    """The DATA frame that ``message`` is, when it is exactly one; else None."""
    span = data_frame_span(message)
    return None if span is None else Data(span[0], message[span[1] :])


def data_frame_span(message: bytes) -> tuple[int, int] | None:
    """``(stream_id, offset of the payload)`` when ``message`` is exactly one DATA frame: a
    fixarray of 3 with a msgpack uint stream id and a bin payload that ends where the message
    does; else None (the general decoder then reads it). A receiver's fast path."""
    end = len(message)
    if end < 4 or message[0] != 0x93 or message[1] != _DATA_TYPE:
        return None
    tag = message[2]
    if tag < 0x80:  # positive fixint
        stream_id, pos = tag, 3
    else:
        width = _UINT_WIDTH.get(tag)
        if width is None or 3 + width >= end:
            return None
        stream_id = int.from_bytes(message[3 : 3 + width], "big")
        pos = 3 + width
    width = _BIN_WIDTH.get(message[pos])
    if width is None or pos + 1 + width > end:
        return None
    start = pos + 1 + width
    if start + int.from_bytes(message[pos + 1 : start], "big") != end or stream_id > MAX_STREAM_ID:
        return None  # more frames, a cut, or a bad id: the general decoder takes it
    return stream_id, start


_DATA_TYPE = int(FrameType.DATA)
_UINT_WIDTH = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}  # msgpack uint 8/16/32/64
_BIN_WIDTH = {0xC4: 1, 0xC5: 2, 0xC6: 4}  # msgpack bin 8/16/32


def _decode_general(message: bytes) -> list[Frame]:
    """Decode ``message`` with a msgpack unpacker, a frame per object."""
    size = len(message)
    unpacker = msgpack.Unpacker(
        raw=False,
        use_list=True,
        strict_map_key=True,
        max_buffer_size=max(size, 1),
    )
    unpacker.feed(message)
    frames: list[Frame] = []
    end_of_last_frame = 0
    try:
        for obj in unpacker:
            frames.append(_frame(obj))
            end_of_last_frame = unpacker.tell()
    except RemoteProtocolError:
        raise
    except Exception as exc:  # msgpack raises many types for malformed input
        raise _fail(f"malformed msgpack: {type(exc).__name__}") from None
    # The unpacker stops quietly at a partial object (and may have consumed part of it), so
    # the end of the last complete frame is what must equal the message's length (§2).
    if end_of_last_frame != size:
        raise _fail(f"message ends mid-frame after byte {end_of_last_frame} of {size}")
    return frames
