"""Every exception the protocol package raises.

::

    TunnelError                      base of everything below
    ├── ProtocolError                a rule of PROTOCOL.md was broken; carries the ErrorCode
    │   ├── LocalProtocolError       this side's own code misused the connection (a bug here)
    │   │   └── StreamLimitError     no stream can be opened now; retry when one closes
    │   └── RemoteProtocolError      the peer broke the spec; the session ends with GOAWAY(code)
    │       └── FrameDecodeError     bytes that do not decode to a valid frame
    ├── StreamResetError             a stream was reset (by either side); carries the ErrorCode
    ├── ConnectionClosed             the session is over; no stream can be opened or written
    ├── DialError                    the hub could not be reached (retry with backoff)
    │   ├── HubRejected              the hub refused the credentials (HTTP 401, 403 or 409)
    │   ├── TlsVerificationError     the hub's certificate did not verify
    │   └── ProxyError               the proxy refused or failed the CONNECT
    └── RpcError                     an RPC failed: the peer answered with an error, or it was
        │                            cancelled or timed out; carries a string code
        └── RpcDeadlineExceeded      the request's deadline passed (also a TimeoutError)

Wire codes are :class:`protocol.codes.ErrorCode`; exceptions only carry them.
"""

from __future__ import annotations

from collections.abc import Mapping

from protocol.codes import ErrorCode


class TunnelError(Exception):
    """Base class of every exception raised by the protocol package."""


class ProtocolError(TunnelError):
    """A rule of the wire protocol was broken."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.code = code


class LocalProtocolError(ProtocolError):
    """The local application asked the connection to do something the protocol forbids."""


class StreamLimitError(LocalProtocolError):
    """Opening a stream now would exceed the peer's limit of concurrent streams."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ErrorCode.REFUSED_STREAM)


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol; the session is ended with GOAWAY carrying :attr:`code`."""


class FrameDecodeError(RemoteProtocolError):
    """The peer sent bytes that are not a valid frame."""


class StreamResetError(TunnelError):
    """The stream was reset; :attr:`remote` tells whether the peer did it."""

    def __init__(self, stream_id: int, code: ErrorCode, message: str, *, remote: bool) -> None:
        who = "peer" if remote else "local side"
        super().__init__(f"stream {stream_id} reset by {who}: {code.name} {message}".rstrip())
        self.stream_id = stream_id
        self.code = code
        self.reason = message
        self.remote = remote


class ConnectionClosed(TunnelError):
    """The session has ended; :attr:`code` says why."""

    def __init__(self, code: ErrorCode, message: str = "") -> None:
        super().__init__(f"tunnel session closed: {code.name} {message}".rstrip())
        self.code = code
        self.reason = message


class DialError(TunnelError, OSError):
    """Opening the websocket to the hub failed; the message says where and why."""


class HubRejected(DialError):
    """The hub refused the websocket handshake (HTTP 401, 403 or 409); ``code`` is the error
    code from its JSON body (e.g. PairingCodeExpired), or empty."""

    def __init__(self, message: str, status: int, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class TlsVerificationError(DialError):
    """The hub's TLS certificate did not verify against the configured CA or system store."""


class ProxyError(DialError):
    """The HTTP proxy refused the CONNECT (for example HTTP 401/407: wrong credentials)."""


class RpcError(TunnelError):
    """An RPC ended in an error; :attr:`code` is the RPC error code string (PROTOCOL.md §9)."""

    def __init__(
        self, code: str, message: str, details: Mapping[str, object] | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details: Mapping[str, object] = dict(details or {})


class RpcDeadlineExceeded(RpcError, TimeoutError):
    """The RPC's deadline passed before its response arrived."""

    def __init__(self, message: str = "deadline exceeded") -> None:
        super().__init__("deadline_exceeded", message)
