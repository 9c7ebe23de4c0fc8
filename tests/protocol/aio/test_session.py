"""The asyncio session over an in-memory pipe: streams, backpressure, RPC, ending.

Each test runs twice: the client on a pull transport, and the client on a push channel (as the
agent is, over its websocket), the server always on a pull transport (as the hub is).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from protocol.aio import TunnelSession, TunnelStream
from protocol.aio.memory import MemoryChannel, memory_channel_pipe, memory_pipe
from protocol.aio.rpc import RpcServer, call
from protocol.codes import ErrorCode
from protocol.connection import ConnectionConfig, Role
from protocol.exceptions import ConnectionClosed, RpcDeadlineExceeded, RpcError, StreamResetError
from protocol.frames import Settings
from protocol.rpc import Request, RpcErrorCode


async def echo(stream: TunnelStream) -> None:
    stream.accept()
    while data := await stream.read():
        await stream.write(data)


@pytest.fixture(params=[False, True], ids=["pull-client", "push-client"])
def push(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


async def make_pair(
    stream_handler: Any = echo,
    rpc_server: Any = None,
    settings: Settings | None = None,
    *,
    push: bool,
    **server_kwargs: Any,
) -> tuple[TunnelSession, TunnelSession]:
    a, b = memory_channel_pipe() if push else memory_pipe()
    client = TunnelSession(a, ConnectionConfig(Role.CLIENT, settings or Settings()), label="c")
    server = TunnelSession(
        b,
        ConnectionConfig(Role.SERVER, settings or Settings()),
        stream_handler=stream_handler,
        rpc_server=rpc_server,
        label="s",
        **server_kwargs,
    )
    await asyncio.gather(client.start(), server.start())
    return client, server


@pytest.fixture
async def pair(push: bool) -> AsyncIterator[tuple[TunnelSession, TunnelSession]]:
    client, server = await make_pair(push=push)
    yield client, server
    await client.close()
    await server.close()


async def test_echo_round_trip(pair: tuple[TunnelSession, TunnelSession]) -> None:
    client, _ = pair
    stream = client.open_stream({"kind": "echo"})
    payload = bytes(range(256)) * 4096  # 1 MiB: several windows' worth
    writer = asyncio.create_task(stream.write(payload))
    received = bytearray()
    while len(received) < len(payload):
        received += await stream.read()
    await writer
    await stream.close()
    assert await stream.read() == b""
    assert bytes(received) == payload


async def test_many_concurrent_streams(pair: tuple[TunnelSession, TunnelSession]) -> None:
    client, server = pair

    async def one(i: int) -> bytes:
        stream = client.open_stream()
        await stream.write(f"stream {i}".encode())
        await stream.close()
        out = b""
        while chunk := await stream.read():
            out += chunk
        return out

    results = await asyncio.gather(*(one(i) for i in range(500)))
    assert results == [f"stream {i}".encode() for i in range(500)]
    await asyncio.sleep(0.05)
    assert client.stats().open_streams == 0 and server.stats().open_streams == 0


async def test_writer_waits_for_window_when_the_reader_stops(push: bool) -> None:
    started = asyncio.Event()

    async def never_reads(stream: TunnelStream) -> None:
        stream.accept()
        started.set()
        await asyncio.sleep(3600)

    settings = Settings(stream_window=16 * 1024)
    client, server = await make_pair(never_reads, settings=settings, push=push)
    try:
        stream = client.open_stream()
        write = asyncio.create_task(stream.write(b"x" * 64 * 1024))
        await started.wait()
        await asyncio.sleep(0.1)
        assert not write.done(), "write must block once the 16 KiB window is used"
        assert client.conn.sendable(stream.stream_id) == 0
        write.cancel()
    finally:
        await client.close()
        await server.close()


async def test_reset_reaches_the_reader(push: bool) -> None:
    async def refuse(stream: TunnelStream) -> None:
        stream.reset(ErrorCode.DESTINATION_NOT_ALLOWED, "not on the allowlist")

    client, server = await make_pair(refuse, push=push)
    try:
        stream = client.open_stream({"kind": "tcp", "host": "127.0.0.1", "port": 22})
        with pytest.raises(StreamResetError) as info:
            await stream.wait_accepted()
        assert info.value.code is ErrorCode.DESTINATION_NOT_ALLOWED and info.value.remote
    finally:
        await client.close()
        await server.close()


async def test_session_end_fails_open_streams(pair: tuple[TunnelSession, TunnelSession]) -> None:
    client, server = pair
    stream = client.open_stream()
    await stream.write(b"hello")
    await asyncio.sleep(0.01)
    await server.close(ErrorCode.SHUTTING_DOWN, "going down")
    reason = await asyncio.wait_for(client.wait_closed(), 2)
    assert reason.code in (ErrorCode.SHUTTING_DOWN, ErrorCode.NO_ERROR)
    with pytest.raises(ConnectionClosed):
        await stream.read()
        await stream.read()
    with pytest.raises(ConnectionClosed):
        client.open_stream()


async def rpc_handler(request: Request, progress: Any) -> Any:
    if request.method == "add":
        for step in ("started", "halfway"):
            await progress({"step": step})
        return {"sum": request.params["a"] + request.params["b"], "key": request.idempotency_key}
    if request.method == "slow":
        await asyncio.sleep(10)
    if request.method == "fail":
        raise RpcError(RpcErrorCode.RESOURCE_EXHAUSTED, "No machine available.", {"pool": "x"})
    raise RpcError(RpcErrorCode.NOT_FOUND, f"no method {request.method}")


async def test_rpc_result_progress_and_errors(push: bool) -> None:
    client, server = await make_pair(rpc_server=RpcServer(rpc_handler), push=push)
    try:
        seen: list[Mapping[str, Any]] = []
        result = await call(
            client, "add", {"a": 2, "b": 3}, idempotency_key="k1", on_progress=seen.append
        )
        assert result == {"sum": 5, "key": "k1"}
        assert [e["step"] for e in seen] == ["started", "halfway"]
        with pytest.raises(RpcError) as info:
            await call(client, "fail")
        assert info.value.code == "resource_exhausted" and info.value.details == {"pool": "x"}
        with pytest.raises(RpcError) as info:
            await call(client, "nope")
        assert info.value.code == "not_found"
    finally:
        await client.close()
        await server.close()


async def test_rpc_deadline_and_cancel_stop_the_callee(push: bool) -> None:
    cancelled = asyncio.Event()

    async def handler(request: Request, progress: Any) -> Any:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    client, server = await make_pair(rpc_server=RpcServer(handler), push=push)
    try:
        with pytest.raises(RpcDeadlineExceeded):
            await call(client, "slow", deadline=0.2)
        await asyncio.wait_for(cancelled.wait(), 2)
        cancelled.clear()
        task = asyncio.create_task(call(client, "slow"))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(cancelled.wait(), 2)
    finally:
        await client.close()
        await server.close()


async def test_rpc_interrupted_by_session_loss_is_unavailable(push: bool) -> None:
    client, server = await make_pair(rpc_server=RpcServer(rpc_handler), push=push)
    task = asyncio.create_task(call(client, "slow"))
    await asyncio.sleep(0.1)
    await server.close(ErrorCode.INTERNAL_ERROR, "crash")
    with pytest.raises(RpcError) as info:
        await task
    assert info.value.code == "unavailable" and info.value.details["retryable"]
    await client.close()


async def test_keepalive_detects_a_silent_peer(push: bool) -> None:
    a, b = memory_channel_pipe() if push else memory_pipe()
    config = ConnectionConfig(Role.CLIENT, ping_interval=0.1, ping_timeout=0.2)
    client = TunnelSession(a, config)
    server = TunnelSession(b, ConnectionConfig(Role.SERVER))
    await asyncio.gather(client.start(), server.start())
    # freeze the server: its tasks stop, the pipe stays open
    for task in server._tasks:
        task.cancel()
    reason = await asyncio.wait_for(client.wait_closed(), 2)
    assert reason.code is ErrorCode.PEER_UNRESPONSIVE
    await client.close()


async def test_malformed_rpc_messages_reset_the_stream_not_the_session(push: bool) -> None:
    client, server = await make_pair(rpc_server=RpcServer(rpc_handler), push=push)
    try:
        stream = client.open_stream({"kind": "rpc"})
        await stream.write(b"\xc1\xc1")  # never valid msgpack
        await stream.close()
        with pytest.raises(StreamResetError) as info:
            await stream.read()
            await stream.read()
        assert info.value.code is ErrorCode.PROTOCOL_ERROR
        # the session is fine: a well-formed call still works
        assert (await call(client, "add", {"a": 1, "b": 1}))["sum"] == 2
    finally:
        await client.close()
        await server.close()


async def test_a_malformed_response_fails_the_call_only(push: bool) -> None:
    async def garbage(stream: TunnelStream) -> None:
        stream.accept()
        await stream.read()
        await stream.write(b"\x81\xa4type\xa3bad")  # a map, but not an RPC message
        await stream.close()

    client, server = await make_pair(rpc_server=garbage, push=push)
    try:
        with pytest.raises(RpcError) as info:
            await call(client, "anything")
        assert info.value.code == "internal" and "malformed" in str(info.value)
        assert not client.closed
    finally:
        await client.close()
        await server.close()


async def test_a_stalled_channel_holds_writes_until_it_drains() -> None:
    client, server = await make_pair(push=True)
    try:
        channel = client.transport
        assert isinstance(channel, MemoryChannel)
        stream = client.open_stream()
        await asyncio.sleep(0.01)  # the OPEN goes out
        channel.stall()
        sent_while_stalled = client.stats().bytes_sent
        await stream.write(b"held")
        await asyncio.sleep(0.05)
        assert client.stats().bytes_sent == sent_while_stalled, "queued, not written"
        channel.unstall()
        assert await asyncio.wait_for(stream.read(), 2) == b"held"
        assert client.stats().bytes_sent > sent_while_stalled
    finally:
        await client.close()
        await server.close()


async def test_a_channel_stalled_past_the_write_timeout_ends_the_session() -> None:
    client, server = await make_pair(push=True)
    client.write_timeout = 0.3
    try:
        channel = client.transport
        assert isinstance(channel, MemoryChannel)
        channel.stall()
        reason = await asyncio.wait_for(client.wait_closed(), 3)
        assert reason.code is ErrorCode.PEER_UNRESPONSIVE and "stalled" in reason.reason
    finally:
        await client.close()
        await server.close()


async def test_a_lost_channel_ends_the_session_and_its_streams() -> None:
    client, server = await make_pair(push=True)
    stream = client.open_stream()
    await stream.write(b"x")
    await server.transport.close()
    reason = await asyncio.wait_for(client.wait_closed(), 2)
    assert "transport closed" in reason.reason
    with pytest.raises(ConnectionClosed):
        await stream.read()
        await stream.read()
    await client.close()
    await server.close()
