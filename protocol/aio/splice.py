"""Copy bytes between a tunnel stream and a TCP connection, both ways, with half-close."""

from __future__ import annotations

import asyncio
import contextlib

from protocol.aio.stream import TunnelStream
from protocol.codes import ErrorCode
from protocol.exceptions import ConnectionClosed, StreamResetError

CHUNK = 256 * 1024


async def splice(
    stream: TunnelStream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Run until both directions ended; a failure on either side aborts the other."""

    async def socket_to_tunnel() -> None:
        while data := await reader.read(CHUNK):
            await stream.write(data)
        await stream.close()

    async def tunnel_to_socket() -> None:
        while data := await stream.read():
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(socket_to_tunnel())
            group.create_task(tunnel_to_socket())
    except* (StreamResetError, ConnectionClosed):
        writer.transport.abort()
    except* OSError:
        stream.reset(ErrorCode.CONNECT_FAILED, "connection lost")
    finally:
        with contextlib.suppress(Exception):
            writer.close()
