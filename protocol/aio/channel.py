"""A websocket as callbacks: websockets' Sans-I/O protocol on one asyncio protocol.

A :class:`WebSocketChannel` hands each message it receives to its receiver (the session) in the
same callback that read it from the socket, and :meth:`WebSocketChannel.write` puts a message on
the socket without awaiting. With ``websockets``' asyncio connection, or aiohttp's
``WebSocketResponse``, every message crossed two tasks, a reader parked in ``recv()`` and a
writer in ``send()``; on a small request those hops cost more than the tunnel's own work
(README, "Performance"). Both ends use it: the agent dials (:mod:`protocol.aio.dial`), the hub
takes the connection over from its aiohttp handler (:meth:`WebSocketChannel.accept`,
:mod:`protocol.aio.aiohttp_upgrade`).

What stays the library's: the opening handshake, the closing handshake, answers to pings, and
every frame other than a final binary one, all through ``websockets``' Sans-I/O
``ClientProtocol`` or ``ServerProtocol``. What is ours: the socket, the proxy ``CONNECT``
before it (:meth:`WebSocketChannel.proxy_connect`), write backpressure, which reaches the
receiver as ``pause_writing``/``resume_writing`` as in :class:`asyncio.Protocol`, and the final
binary frames both ways, the ones every tunnel message travels in (:mod:`protocol.aio.wsframes`
says why and where the line is).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Protocol, cast

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from protocol.aio.wsframes import FrameReader, MaskKeys, Raw, binary_frame, server_binary_frame

log = logging.getLogger("pcg.tunnel")

#: write buffer high-water mark: big enough that bulk transfers rarely wait on it
WRITE_LIMIT = 1024 * 1024

#: a proxy's answer to CONNECT larger than this is not an HTTP proxy's answer
MAX_PROXY_REPLY = 64 * 1024


class ChannelReceiver(Protocol):
    """What a channel calls; :class:`protocol.aio.session.TunnelSession` is one."""

    def message_received(self, message: bytes | str) -> None: ...

    def channel_lost(self, exc: Exception | None) -> None: ...

    def pause_writing(self) -> None: ...

    def resume_writing(self) -> None: ...


class ProxyRefused(Exception):
    """The proxy answered CONNECT with something other than 2xx."""

    def __init__(self, status: int) -> None:
        super().__init__(f"proxy answered HTTP {status}")
        self.status = status


class WebSocketChannel(asyncio.Protocol):
    """A websocket carrying whole binary messages; see the module docstring.

    Client life: ``loop.create_connection`` (to the hub or to the proxy), then optionally
    :meth:`proxy_connect` and ``loop.start_tls`` (:meth:`use_transport`), then :meth:`handshake`,
    then :meth:`attach` a receiver. Server life: :meth:`accept`, then :meth:`attach`. Messages
    that arrive before ``attach`` wait for it.
    """

    def __init__(self, *, max_size: int = 1024 * 1024, close_timeout: float = 2.0) -> None:
        self.max_size = max_size
        self.close_timeout = close_timeout
        self.transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._ws: ClientProtocol | ServerProtocol | None = None
        self._before_ws = bytearray()  # bytes read before the handshake: the proxy's reply
        self._waiter: asyncio.Future[None] | None = None
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self._receiver: ChannelReceiver | None = None
        self._early: list[bytes | str] = []
        self._paused = False
        self._fragments: list[bytes] = []
        self._fragment_text = False
        self._close_timer: asyncio.TimerHandle | None = None
        self._keys: MaskKeys | None = MaskKeys()  # None on the server side: it does not mask
        #: reads final binary frames once the websocket is open and the library's parser is at
        #: a frame boundary; None before, or if that never holds (then the library reads all)
        self._frames: FrameReader | None = None
        self._response = bytearray()  # client: what the hub sent until its 101 was read
        #: server side: the protocol that read the upgrade request, told when the connection ends
        self._previous: asyncio.BaseProtocol | None = None

    # ------------------------------------------------------------------ opening

    def use_transport(self, transport: asyncio.Transport) -> None:
        """Carry on over ``transport`` (the TLS transport ``loop.start_tls`` returned)."""
        self.connection_made(transport)

    async def proxy_connect(self, target: str, headers: Mapping[str, str]) -> None:
        """Ask the HTTP proxy this channel is connected to for a tunnel to ``target``
        (``host:port``); raises :class:`ProxyRefused` on a refusal."""
        assert self.transport is not None and self._ws is None
        lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self._waiter = self._loop.create_future()
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await self._waiter
        head, _, rest = bytes(self._before_ws).partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ConnectionError(f"the proxy's answer is not HTTP: {status_line[:80]!r}")
        status = int(parts[1])
        if not 200 <= status < 300:
            raise ProxyRefused(status)  # its body, if any, is of no use
        if rest:
            raise ConnectionError("the proxy sent bytes before the tunnel carried any")
        self._before_ws.clear()

    async def handshake(self, url: str, headers: Mapping[str, str], user_agent: str) -> None:
        """The websocket opening handshake; raises ``websockets``' ``InvalidHandshake``
        (``InvalidStatus`` carries the refusal's status and body)."""
        assert self.transport is not None
        ws = ClientProtocol(parse_uri(url), max_size=self.max_size)
        request = ws.connect()
        for name, value in headers.items():
            request.headers[name] = value
        request.headers["User-Agent"] = user_agent
        self._ws = ws
        self._waiter = self._loop.create_future()
        ws.send_request(request)
        self._send_pending()
        await self._waiter
        if ws.handshake_exc is not None:
            raise ws.handshake_exc
        if ws.state is not State.OPEN:
            raise ConnectionError("the websocket closed during its opening handshake")

    @classmethod
    def accept(
        cls,
        transport: asyncio.BaseTransport,
        request_head: bytes,
        *,
        max_size: int = 1024 * 1024,
        close_timeout: float = 2.0,
    ) -> WebSocketChannel | Response:
        """Server side: answer the upgrade request on ``transport`` and read from it from now on.

        ``request_head`` is the HTTP request as the server read it (request line, headers,
        blank line); ``websockets``' ``ServerProtocol`` parses it and checks the upgrade. On a
        valid one, this channel becomes the transport's protocol (the server's own protocol
        is told only when the connection ends), the 101 goes out, and the channel is returned.
        Otherwise nothing is written or taken over, and the refusal is returned for the server
        to send: an HTTP response with the reason in its body.

        The take-over cannot miss bytes: a client sends no frame before it has read the 101,
        and the 101 is written after the switch.
        """
        ws = ServerProtocol(max_size=max_size)
        ws.receive_data(request_head)
        request = next((e for e in ws.events_received() if isinstance(e, Request)), None)
        if request is None:
            return ws.reject(400, "Failed to open a WebSocket connection: bad request head.\n")
        response = ws.accept(request)
        if response.status_code != 101:
            return response
        channel = cls(max_size=max_size, close_timeout=close_timeout)
        channel._ws = ws
        channel._keys = None
        channel._previous = transport.get_protocol()
        # a client sends no frame before it has read the 101: the first byte is a frame's
        channel._frames = FrameReader(masked=True, max_size=max_size)
        transport.set_protocol(channel)
        channel.connection_made(transport)
        assert channel.transport is not None
        channel.transport.resume_reading()  # in case the server had paused it; else a no-op
        ws.send_response(response)
        channel._send_pending()
        return channel

    @property
    def reads_frames(self) -> bool:
        """Whether final binary frames are read here rather than by the library (for now)."""
        return self._frames is not None and not self._frames.handed_over

    async def wait_lost(self) -> None:
        """Return once the connection is gone."""
        await asyncio.shield(self._lost)

    def attach(self, receiver: ChannelReceiver) -> None:
        """From now on, messages and transport events go to ``receiver``."""
        self._receiver = receiver
        early, self._early = self._early, []
        for message in early:
            receiver.message_received(message)
        if self._paused:
            receiver.pause_writing()
        if self._lost.done():
            receiver.channel_lost(None)

    # ------------------------------------------------------------------ sending

    def write(self, message: bytes) -> None:
        """Send one binary message now; raises ``ConnectionError`` once the websocket closed."""
        ws, transport = self._ws, self.transport
        if ws is None or transport is None or ws.state is not State.OPEN:
            raise ConnectionError("the websocket is closed")
        if transport.is_closing():
            raise ConnectionError("the websocket's connection is closing")
        keys = self._keys
        if keys is None:
            transport.write(server_binary_frame(message))
        else:
            transport.write(binary_frame(message, keys.take()))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """The closing handshake, waiting at most ``close_timeout`` for the peer to finish it."""
        ws, transport = self._ws, self.transport
        if transport is None:
            return
        if ws is not None and ws.state is State.OPEN:
            ws.send_close(code, reason)
            self._send_pending()
        elif not transport.is_closing():
            transport.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.close_timeout):
                await asyncio.shield(self._lost)
        transport.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _send_pending(self) -> None:
        ws, transport = self._ws, self.transport
        assert ws is not None and transport is not None
        for data in ws.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():
                transport.write_eof()
            else:
                transport.close()
        if ws.close_expected() and self._close_timer is None:
            # the hub should close the TCP connection now; do it ourselves if it does not
            self._close_timer = self._loop.call_later(self.close_timeout, transport.abort)

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.set_write_buffer_limits(high=WRITE_LIMIT)

    def data_received(self, data: bytes) -> None:
        ws = self._ws
        if ws is None:
            self._before_ws += data
            if b"\r\n\r\n" in self._before_ws:
                self._wake(None)
            elif len(self._before_ws) > MAX_PROXY_REPLY:
                self._wake(ConnectionError("the proxy's answer is too long"))
            return
        frames = self._frames
        if frames is not None and ws.state is State.OPEN:
            for item in frames.feed(data):
                if type(item) is bytes:
                    self._deliver(item)
                    continue
                ws.receive_data(cast(Raw, item).data)
                self._process(ws)
                if ws.state is not State.OPEN:  # it refused a ping or pong: the rest is its
                    self._frames_to_library(ws)  # to discard
                    break
            return
        self._frames_to_library(ws)  # not open (any more): the library reads every byte
        opening = ws.state is State.CONNECTING
        ws.receive_data(data)
        if opening:
            self._after_response(ws, data)
        self._process(ws)

    def _frames_to_library(self, ws: ClientProtocol | ServerProtocol) -> None:
        """From now on the library reads every byte, from the start of the frame the reader
        holds, if any (its parser is at that frame's boundary)."""
        frames, self._frames = self._frames, None
        if frames is not None and (held := frames.hand_over()):
            ws.receive_data(held)

    def _after_response(self, ws: ClientProtocol | ServerProtocol, data: bytes) -> None:
        """Client: once the 101 is read, read frames ourselves if no byte followed it (our hub
        sends nothing before the agent's HELLO); else the library goes on reading them all."""
        self._response += data
        if ws.state is State.OPEN and self._response.find(b"\r\n\r\n") + 4 == len(self._response):
            self._frames = FrameReader(masked=False, max_size=self.max_size)
        if ws.state is not State.CONNECTING:
            self._response = bytearray()

    def eof_received(self) -> bool | None:
        ws = self._ws
        if ws is not None:
            self._frames_to_library(ws)
            ws.receive_eof()
            self._process(ws)
        return None  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
        self._wake(exc or ConnectionError("the connection closed"))
        if not self._lost.done():
            self._lost.set_result(None)
        if self._receiver is not None:
            self._receiver.channel_lost(exc)
        previous, self._previous = self._previous, None
        if previous is not None:
            previous.connection_lost(exc)

    def pause_writing(self) -> None:
        self._paused = True
        if self._receiver is not None:
            self._receiver.pause_writing()

    def resume_writing(self) -> None:
        self._paused = False
        if self._receiver is not None:
            self._receiver.resume_writing()

    # ------------------------------------------------------------------ receiving

    def _wake(self, exc: Exception | None) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)

    def _process(self, ws: ClientProtocol | ServerProtocol) -> None:
        for event in ws.events_received():
            if type(event) is Frame:
                self._on_frame(event)
            elif isinstance(event, Response):
                self._wake(None)  # handshake() reads the outcome from the protocol
        self._send_pending()  # pongs, the close frame's echo, EOF
        if ws.handshake_exc is not None:
            self._wake(None)

    def _on_frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.BINARY or opcode is Opcode.TEXT:
            if frame.fin:
                data = bytes(frame.data)
                self._deliver(data.decode(errors="replace") if opcode is Opcode.TEXT else data)
            else:
                self._fragments = [bytes(frame.data)]
                self._fragment_text = opcode is Opcode.TEXT
        elif opcode is Opcode.CONT:
            self._fragments.append(bytes(frame.data))
            if frame.fin:
                data = b"".join(self._fragments)
                self._fragments = []
                self._deliver(data.decode(errors="replace") if self._fragment_text else data)
        # PING, PONG and CLOSE: the Sans-I/O protocol has answered them

    def _deliver(self, message: bytes | str) -> None:
        receiver = self._receiver
        if receiver is None:
            self._early.append(message)
            return
        try:
            receiver.message_received(message)
        except Exception:
            log.exception("the tunnel failed on a message; closing the websocket")
            self.abort()


__all__ = ["ChannelReceiver", "ProxyRefused", "WebSocketChannel"]
