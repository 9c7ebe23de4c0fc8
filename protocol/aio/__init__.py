"""The asyncio binding: drives :class:`protocol.connection.TunnelConnection` over a websocket.

:class:`~protocol.aio.session.TunnelSession` owns one transport (anything with async
``send``/``recv``/``close`` of whole binary messages, such as a ``websockets`` connection);
:class:`~protocol.aio.stream.TunnelStream` gives each stream async ``read``/``write`` with
backpressure; :mod:`protocol.aio.rpc` carries requests with deadlines, progress and cancel.
"""

from protocol.aio.session import SessionStats, Transport, TunnelSession
from protocol.aio.stream import TunnelStream

__all__ = ["SessionStats", "TunnelSession", "TunnelStream", "Transport"]
