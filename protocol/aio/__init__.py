"""The asyncio binding: drives :class:`protocol.connection.TunnelConnection` over a websocket.

:class:`~protocol.aio.session.TunnelSession` owns one transport: a push
:class:`~protocol.aio.session.Channel` such as :class:`~protocol.aio.channel.WebSocketChannel`
(the agent's and the hub's websocket), or anything with async ``send``/``recv``/``close`` of
whole binary messages (the in-memory pipe of the tests);
:class:`~protocol.aio.stream.TunnelStream` gives each stream async ``read``/``write`` with
backpressure; :mod:`protocol.aio.rpc` carries requests with deadlines, progress and cancel.
"""

from protocol.aio.session import Channel, SessionStats, Transport, TunnelSession
from protocol.aio.stream import TunnelStream

__all__ = ["Channel", "SessionStats", "TunnelSession", "TunnelStream", "Transport"]
