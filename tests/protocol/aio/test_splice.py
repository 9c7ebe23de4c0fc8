"""The relay's sockets: their kernel buffers are fixed unless told to autotune."""

from __future__ import annotations

import asyncio
import socket

import pytest

from protocol.aio.memory import memory_pipe
from protocol.aio.session import TunnelSession
from protocol.aio.splice import SOCKET_BUFFER, SocketRelay
from protocol.aio.stream import TunnelStream
from protocol.connection import ConnectionConfig, Role


async def accept_all(stream: TunnelStream) -> None:
    stream.accept()
    await stream.read()


def buffers(relay: SocketRelay) -> tuple[int, int]:
    assert relay.transport is not None
    sock = relay.transport.get_extra_info("socket")
    return (
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
    )


@pytest.mark.parametrize("size", [SOCKET_BUFFER, 64 * 1024, 0])
async def test_a_relayed_socket_gets_the_buffers_it_is_given(size: int) -> None:
    a, b = memory_pipe()
    client = TunnelSession(a, ConnectionConfig(Role.CLIENT))
    server = TunnelSession(b, ConnectionConfig(Role.SERVER), stream_handler=accept_all)
    await asyncio.gather(client.start(), server.start())
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        stream = client.open_stream({"kind": "tcp"})
        loop = asyncio.get_running_loop()
        transport, relay = await loop.create_connection(
            lambda: SocketRelay(stream, size), "127.0.0.1", port
        )
        sndbuf, rcvbuf = buffers(relay)
        if size:  # Linux doubles the value asked for, for its own bookkeeping
            assert (sndbuf, rcvbuf) == (2 * size, 2 * size)
        else:  # what any fresh connection gets (tcp_wmem, tcp_rmem), left to autotune
            plain_transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
            plain = plain_transport.get_extra_info("socket")
            assert sndbuf == plain.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            assert rcvbuf == plain.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            assert sndbuf != 2 * SOCKET_BUFFER
            plain_transport.close()
        transport.close()
    finally:
        listener.close()
        await client.close()
        await server.close()
