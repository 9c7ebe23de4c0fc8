"""RFC 6455 frames for :class:`~protocol.aio.channel.WebSocketChannel`: the binary frames it
writes, and :class:`FrameReader`, which cuts what the peer sends into frames.

Writing. A client's frame is a header, a masking key and the masked payload (RFC 6455
§5.2-5.3); we write it ourselves because ``websockets`` draws every key with its own system
call, which on a small request cost as much as half a socket write. Our keys come from
``os.urandom`` too, 1,024 keys per call. A server's frame is the header and the payload.

Reading. While the websocket is open, every message the tunnel sends is one final binary
frame. :class:`FrameReader` takes those out of the byte stream itself, unmasks them (server
side) and returns their payloads: about 0.2 us for a small message, where ``websockets``'
generator-based parser took 2.3-2.6 us (README, "Performance"). Every other frame goes to
``websockets``' own protocol, unchanged and whole, as :class:`Raw` bytes, so the library keeps
its part: pings and pongs go through one frame at a time (the library answers the pings), and
from the first frame the reader does not take on, the reader hands it every byte that follows.
Those are a close, text, a fragment, reserved bits, wrong masking, an unknown opcode, a payload
above ``max_size``; each is handed over as soon as its first bytes say so (an oversize payload
is never buffered). The library
always starts at a frame boundary, and everything it knows how to refuse it refuses as before.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - a build of websockets without its C extension
    from websockets.utils import apply_mask

_BINARY_FIN = 0x82  # FIN, no RSV bits, opcode 2
_PING_FIN = 0x89
_PONG_FIN = 0x8A
_MASKED = 0x80
_MAX_CONTROL_PAYLOAD = 125
_HEAD_7 = struct.Struct("!BB")
_HEAD_16 = struct.Struct("!BBH")
_HEAD_64 = struct.Struct("!BBQ")


class MaskKeys:
    """Fresh, unpredictable 4-byte masking keys (RFC 6455 §5.3), drawn 1,024 at a time."""

    def __init__(self, batch: int = 1024) -> None:
        self._size = 4 * batch
        self._pool = b""
        self._at = 0

    def take(self) -> bytes:
        at = self._at
        if at >= len(self._pool):
            self._pool, at = os.urandom(self._size), 0
        self._at = at + 4
        return self._pool[at : at + 4]


def _binary_head(length: int, mask_bit: int) -> bytes:
    if length < 126:
        return _HEAD_7.pack(_BINARY_FIN, mask_bit | length)
    if length < 65536:
        return _HEAD_16.pack(_BINARY_FIN, mask_bit | 126, length)
    return _HEAD_64.pack(_BINARY_FIN, mask_bit | 127, length)


def binary_frame(message: bytes, key: bytes) -> bytes:
    """One masked, final, binary websocket frame carrying ``message`` (client to server)."""
    return _binary_head(len(message), _MASKED) + key + apply_mask(message, key)


def server_binary_frame(message: bytes) -> bytes:
    """One unmasked, final, binary websocket frame carrying ``message`` (server to client)."""
    return _binary_head(len(message), 0) + message


@dataclass(frozen=True, slots=True)
class Raw:
    """Bytes for ``websockets``' protocol: whole frames, or everything from a frame boundary on."""

    data: bytes


class FrameReader:
    """Cuts an open websocket's incoming bytes into frames (module docstring).

    :meth:`feed` returns, in order, the payload of each final binary frame (``bytes``) and
    :class:`Raw` bytes for the library. ``masked``: frames from the peer must carry a mask
    (this side is the server). Once :attr:`handed_over`, every byte is returned as :class:`Raw`.
    """

    __slots__ = ("masked", "max_size", "handed_over", "_parts", "_buffered", "_need")

    def __init__(self, *, masked: bool, max_size: int | None) -> None:
        self.masked = masked
        self.max_size = max_size
        self.handed_over = False
        self._parts: list[bytes] = []  # the start of a frame not complete yet
        self._buffered = 0  # bytes in _parts
        self._need = 0  # bytes _parts must reach before the frame can be read further

    def feed(self, data: bytes) -> list[bytes | Raw]:
        out: list[bytes | Raw] = []
        pos = 0
        while self._parts:  # complete the frame begun in earlier reads, copying no more
            missing = self._need - self._buffered
            if len(data) - pos < missing:
                if pos < len(data):
                    self._parts.append(data[pos:])
                    self._buffered += len(data) - pos
                return out
            self._parts.append(data[pos : pos + missing])
            pos += missing
            joined = b"".join(self._parts)
            self._parts = []
            self._buffered = 0
            # the frame is complete now, or only its header was and it is pending again
            self._split(joined, 0, out)
        if pos < len(data):
            if self.handed_over:
                self._give_rest(data, pos, out)
            else:
                self._split(data, pos, out)
        return out

    def hand_over(self) -> bytes:
        """From now on every byte goes to the library; returns the bytes held back so far
        (the start of an incomplete frame), which it must be given first."""
        self.handed_over = True
        held = b"".join(self._parts)
        self._parts = []
        self._buffered = 0
        return held

    def _split(self, data: bytes, pos: int, out: list[bytes | Raw]) -> None:
        end = len(data)
        masked = self.masked
        max_size = self.max_size
        while pos < end:
            left = end - pos
            if left < 2:
                self._hold(data, pos, 2)
                return
            first = data[pos]
            second = data[pos + 1]
            mask_bit = second & _MASKED
            length = second & 0x7F
            # the library refuses some frames on these two bytes: hand those over at once
            if first == _BINARY_FIN:
                taken = (mask_bit != 0) is masked
            else:  # a ping or pong carries at most 125 bytes, so no extended length
                taken = (first == _PING_FIN or first == _PONG_FIN) and length < 126
                taken = taken and (mask_bit != 0) is masked
            if not taken:
                self._give_rest(data, pos, out)
                return
            head = 2
            if length >= 126:
                head = 4 if length == 126 else 10
                if left < head:
                    self._hold(data, pos, head)
                    return
                length = int.from_bytes(data[pos + 2 : pos + head], "big")
            if max_size is not None and length > max_size:
                self._give_rest(data, pos, out)  # refused on its header alone, never buffered
                return
            if mask_bit:
                head += 4
            total = head + length
            if left < total:
                self._hold(data, pos, total)
                return
            if first == _BINARY_FIN:
                if mask_bit:
                    out.append(apply_mask(memoryview(data)[pos + head : pos + total],
                                          data[pos + head - 4 : pos + head]))  # fmt: skip
                else:
                    out.append(data[pos + head : pos + total])
            else:
                out.append(Raw(data[pos : pos + total]))
            pos += total

    def _give_rest(self, data: bytes, pos: int, out: list[bytes | Raw]) -> None:
        self.handed_over = True
        out.append(Raw(data[pos:] if pos else data))

    def _hold(self, data: bytes, pos: int, need: int) -> None:
        self._parts.append(data[pos:] if pos else data)
        self._buffered = len(data) - pos
        self._need = need


__all__ = ["FrameReader", "MaskKeys", "Raw", "binary_frame", "server_binary_frame"]
