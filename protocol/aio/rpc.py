"""RPC over tunnel streams (PROTOCOL.md §9): the caller's ``call`` and the callee's server."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from protocol.aio.session import TunnelSession
from protocol.aio.stream import TunnelStream
from protocol.codes import ErrorCode
from protocol.exceptions import (
    ConnectionClosed,
    RemoteProtocolError,
    RpcDeadlineExceeded,
    RpcError,
    StreamResetError,
)
from protocol.rpc import (
    RPC_STREAM_KIND,
    ErrorInfo,
    MessageDecoder,
    Progress,
    Request,
    Response,
    RpcErrorCode,
    encode_message,
)

log = logging.getLogger("pcg.rpc")

ProgressCallback = Callable[[Mapping[str, Any]], Awaitable[None] | None]
#: what a callee implements: the request, and a way to send progress events
RpcHandler = Callable[[Request, Callable[[Mapping[str, Any]], Awaitable[None]]], Awaitable[Any]]

_request_ids = itertools.count(1)
_READ_CHUNK = 64 * 1024


async def call(
    session: TunnelSession,
    method: str,
    params: Mapping[str, Any] | None = None,
    *,
    idempotency_key: str | None = None,
    deadline: float | None = None,
    on_progress: ProgressCallback | None = None,
) -> Any:
    """Send one request and return its result; raise :class:`RpcError` for an error response.

    ``deadline`` (seconds) bounds the wait here and travels with the request (§9.2).

    A session that ends or a stream that is reset before the response raises RpcError with
    code ``unavailable``: the request may or may not have run, so retry it on a new session
    with the same ``idempotency_key``. Cancelling the caller resets the stream (CANCEL).
    """
    request_id = f"{session.label or 'rpc'}-{next(_request_ids)}"
    deadline_ms = None if deadline is None else max(0, int(deadline * 1000))
    request = Request(request_id, method, dict(params or {}), idempotency_key, deadline_ms)
    try:
        stream = session.open_stream({"kind": RPC_STREAM_KIND})
    except ConnectionClosed as exc:
        raise RpcError(RpcErrorCode.UNAVAILABLE, f"tunnel session unusable: {exc}") from exc
    try:
        async with asyncio.timeout(deadline):
            await stream.write(encode_message(request))
            await stream.close()
            return await _await_response(stream, request_id, on_progress)
    except TimeoutError:
        stream.reset(ErrorCode.DEADLINE_EXCEEDED, "caller's deadline passed")
        raise RpcDeadlineExceeded(f"{method} got no response within {deadline}s") from None
    except asyncio.CancelledError:
        stream.reset(ErrorCode.CANCEL, "caller cancelled")
        raise
    except (StreamResetError, ConnectionClosed) as exc:
        raise RpcError(
            RpcErrorCode.UNAVAILABLE, f"{method} was interrupted: {exc}", {"retryable": True}
        ) from exc
    except RemoteProtocolError as exc:
        # a malformed RPC message ends that stream only, never the session (PROTOCOL.md §9.1)
        stream.reset(ErrorCode.PROTOCOL_ERROR, "malformed RPC message")
        raise RpcError(RpcErrorCode.INTERNAL, f"{method}: the peer answered {exc}") from None


async def _await_response(
    stream: TunnelStream, request_id: str, on_progress: ProgressCallback | None
) -> Any:
    decoder = MessageDecoder()
    while True:
        data = await stream.read(_READ_CHUNK)
        if not data:
            raise RpcError(RpcErrorCode.UNAVAILABLE, "the stream ended without a response")
        for message in decoder.feed(data):
            if isinstance(message, Progress):
                if on_progress is not None:
                    result = on_progress(message.event)
                    if result is not None:
                        await result
            elif isinstance(message, Response):
                if message.error is not None:
                    error = message.error
                    if error.code == RpcErrorCode.DEADLINE_EXCEEDED:
                        raise RpcDeadlineExceeded(error.message)
                    raise RpcError(error.code, error.message, error.details)
                return message.result


class RpcServer:
    """A stream handler for RPC streams that runs ``handler`` for each request."""

    def __init__(self, handler: RpcHandler, *, max_request_size: int = 4 * 1024 * 1024) -> None:
        self.handler = handler
        self.max_request_size = max_request_size

    async def __call__(self, stream: TunnelStream) -> None:
        stream.accept()
        decoder = MessageDecoder(self.max_request_size)
        request: Request | None = None
        while request is None:
            data = await stream.read(_READ_CHUNK)
            if not data:
                stream.reset(ErrorCode.PROTOCOL_ERROR, "RPC stream ended before a request")
                return
            try:
                messages = decoder.feed(data)
            except RemoteProtocolError as exc:
                log.warning("malformed RPC request stream=%d error=%s", stream.stream_id, exc)
                stream.reset(ErrorCode.PROTOCOL_ERROR, "malformed RPC message")
                return
            for message in messages:
                if not isinstance(message, Request):
                    stream.reset(ErrorCode.PROTOCOL_ERROR, "expected an RPC request")
                    return
                request = message
        response = await self._run(stream, request)
        await stream.write(encode_message(response))
        await stream.close()

    async def _run(self, stream: TunnelStream, request: Request) -> Response:
        async def progress(event: Mapping[str, Any]) -> None:
            await stream.write(encode_message(Progress(request.request_id, event)))

        task = asyncio.current_task()
        assert task is not None

        # a RESET from the caller (cancel, or its deadline) stops the work
        def cancel_work(_reason: BaseException) -> None:
            task.cancel()

        stream.on_reset = cancel_work
        timeout = None if request.deadline_ms is None else request.deadline_ms / 1000
        try:
            async with asyncio.timeout(timeout):
                result = await self.handler(request, progress)
            return Response(request.request_id, result)
        except TimeoutError:
            return _error(request, RpcErrorCode.DEADLINE_EXCEEDED, "the deadline passed")
        except RpcError as exc:
            return _error(request, exc.code, exc.message, exc.details)
        except (StreamResetError, ConnectionClosed):
            raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("RPC handler failed method=%s id=%s", request.method, request.request_id)
            return _error(request, RpcErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}")
        finally:
            stream.on_reset = None


def _error(
    request: Request, code: str, message: str, details: Mapping[str, Any] | None = None
) -> Response:
    return Response(request.request_id, None, ErrorInfo(code, message, dict(details or {})))
