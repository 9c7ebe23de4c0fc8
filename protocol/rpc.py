"""The RPC layer: requests, progress and responses carried on one stream each (PROTOCOL.md §9).

The caller opens a stream with metadata ``{"kind": "rpc"}``, writes one :class:`Request` and
half-closes; the callee writes any number of :class:`Progress` messages, then exactly one
:class:`Response`, and half-closes. Each message is one msgpack map; messages follow each
other on the stream with no other framing. Cancel is a RESET of the stream with CANCEL.

This module is pure: :func:`encode_message` gives bytes, :class:`MessageDecoder` takes the
stream's bytes in any chunking and gives messages back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeAlias

import msgpack

from protocol.codes import ErrorCode
from protocol.exceptions import RemoteProtocolError

#: OPEN metadata that marks a stream as an RPC stream
RPC_STREAM_KIND = "rpc"
#: largest RPC message a decoder accepts by default
DEFAULT_MAX_MESSAGE = 4 * 1024 * 1024


class RpcErrorCode(StrEnum):
    """The error codes of §9.4. Applications may add their own; a caller treats a code it does
    not know as not retryable, like INTERNAL."""

    INVALID_ARGUMENT = "invalid_argument"  # the request is wrong; retrying it will not help
    NOT_FOUND = "not_found"  # the method or the object it names does not exist
    FAILED_PRECONDITION = "failed_precondition"  # not possible in the current state
    RESOURCE_EXHAUSTED = "resource_exhausted"  # e.g. MAAS has no machine that matches
    UNAVAILABLE = "unavailable"  # transient; safe to retry with the same idempotency key
    DEADLINE_EXCEEDED = "deadline_exceeded"
    CANCELLED = "cancelled"
    UNAUTHENTICATED = "unauthenticated"
    INTERNAL = "internal"


@dataclass(frozen=True, slots=True)
class Request:
    request_id: str
    method: str
    params: Mapping[str, Any] = field(default_factory=dict)
    #: the same key on a retried request means "the same operation": the callee answers it
    #: from the operation already under way or finished instead of starting another (§9.3)
    idempotency_key: str | None = None
    #: milliseconds the caller still waits, counted from when the callee reads the request
    deadline_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    request_id: str
    event: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What went wrong; ``code`` is one of the strings of §9.4 (or an application's own)."""

    code: str
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Response:
    request_id: str
    result: Any = None
    error: ErrorInfo | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


Message: TypeAlias = Request | Progress | Response


def encode_message(message: Message) -> bytes:
    body: dict[str, Any]
    match message:
        case Request(request_id, method, params, key, deadline):
            body = {"type": "request", "id": request_id, "method": method, "params": dict(params)}
            if key is not None:
                body["idempotency_key"] = key
            if deadline is not None:
                body["deadline_ms"] = deadline
        case Progress(request_id, event):
            body = {"type": "progress", "id": request_id, "event": dict(event)}
        case Response(request_id, result, None):
            body = {"type": "response", "id": request_id, "result": result}
        case Response(request_id, _, ErrorInfo(code, text, details)):
            body = {
                "type": "response",
                "id": request_id,
                "error": {"code": code, "message": text, "details": dict(details)},
            }
    data: bytes = msgpack.packb(body, use_bin_type=True)
    return data


def _bad(reason: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"malformed RPC message: {reason}", ErrorCode.PROTOCOL_ERROR)


def _field(body: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = body.get(name)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise _bad(f"field {name!r} is missing or of the wrong type")
    return value


def parse_message(body: object) -> Message:
    if not isinstance(body, dict):
        raise _bad(f"expected a map, got {type(body).__name__}")
    kind = body.get("type")
    request_id = _field(body, "id", str)
    if kind == "request":
        key = body.get("idempotency_key")
        deadline = body.get("deadline_ms")
        if key is not None and not isinstance(key, str):
            raise _bad("idempotency_key must be a string")
        if deadline is not None and (type(deadline) is not int or deadline < 0):
            raise _bad("deadline_ms must be a non-negative integer")
        return Request(
            request_id,
            _field(body, "method", str),
            _field(body, "params", dict),
            key,
            deadline,
        )
    if kind == "progress":
        return Progress(request_id, _field(body, "event", dict))
    if kind == "response":
        if "error" in body:
            error = _field(body, "error", dict)
            details = error.get("details", {})
            return Response(
                request_id,
                None,
                ErrorInfo(
                    _field(error, "code", str),
                    _field(error, "message", str),
                    details if isinstance(details, dict) else {},
                ),
            )
        return Response(request_id, body.get("result"))
    raise _bad(f"unknown message type {kind!r:.40}")


class MessageDecoder:
    """Turns the bytes of an RPC stream, however they were chunked, into messages."""

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE) -> None:
        self._unpacker = msgpack.Unpacker(
            raw=False, strict_map_key=True, max_buffer_size=max_message_size
        )

    def feed(self, data: bytes) -> list[Message]:
        try:
            self._unpacker.feed(data)
            return [parse_message(obj) for obj in self._unpacker]
        except RemoteProtocolError:
            raise
        except Exception as exc:  # msgpack raises many types on malformed input
            raise _bad(f"{type(exc).__name__}") from None
