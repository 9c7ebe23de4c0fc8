"""The asyncio binding: drives :class:`protocol.connection.TunnelConnection` over a websocket.

:class:`~protocol.aio.session.TunnelSession` owns one transport (anything with async
``send``/``recv``/``close`` of whole binary messages, such as aiohttp's server websocket, or a
push :class:`~protocol.aio.session.Channel` such as the agent's
:class:`~protocol.aio.channel.WebSocketChannel`);
:class:`~protocol.aio.stream.TunnelStream` gives each stream async ``read``/``write`` with
backpressure; :mod:`protocol.aio.rpc` carries requests with deadlines, progress and cancel.
"""

from protocol.aio.session import Channel, SessionStats, Transport, TunnelSession
from protocol.aio.stream import TunnelStream

__all__ = ["Channel", "SessionStats", "TunnelSession", "TunnelStream", "Transport"]
