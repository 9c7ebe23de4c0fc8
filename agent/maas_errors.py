"""The one mapping of MAAS client errors to RPC errors, for every MAAS method of the agent."""

from __future__ import annotations

from agent import logs
from protocol.exceptions import RpcError
from protocol.maas.exceptions import (
    AuthError,
    BadRequest,
    Forbidden,
    InvalidApiKey,
    InvalidEndpoint,
    MaasApiError,
    MaasError,
    MaasUnreachable,
    NoMatchingMachine,
    Retryable,
)
from protocol.rpc import RpcErrorCode

__all__ = ["invalid_argument", "maas_error_to_rpc"]


def maas_error_to_rpc(exc: BaseException, context: str = "") -> RpcError:
    """The RPC error for a failure of a MAAS call. RpcErrors pass through unchanged.

    ========================================  =======================
    MaasUnreachable, MaasTimeout, Retryable   ``unavailable``
    NoMatchingMachine                         ``resource_exhausted``
    BadRequest (a zone, pool, tag... MAAS     ``invalid_argument``
    does not know)
    AuthError, Forbidden, InvalidApiKey,      ``failed_precondition``
    InvalidEndpoint (the agent's MAAS
    settings need fixing)
    anything else                             ``internal``
    ========================================  =======================
    """
    if isinstance(exc, RpcError):
        return exc
    details: dict[str, object] = {}
    if isinstance(exc, (MaasUnreachable, Retryable)):
        code = RpcErrorCode.UNAVAILABLE
        details["retryable"] = True
    elif isinstance(exc, NoMatchingMachine):
        code = RpcErrorCode.RESOURCE_EXHAUSTED
    elif isinstance(exc, BadRequest):
        code = RpcErrorCode.INVALID_ARGUMENT
        if exc.field_errors:
            details["fieldErrors"] = exc.field_errors
    elif isinstance(exc, (AuthError, Forbidden, InvalidApiKey, InvalidEndpoint)):
        code = RpcErrorCode.FAILED_PRECONDITION
    else:
        code = RpcErrorCode.INTERNAL
    if isinstance(exc, MaasApiError):
        details["maasStatus"] = exc.status
    text = str(exc) if isinstance(exc, MaasError) else f"{type(exc).__name__}: {exc}"
    message = logs.scrub(f"{context}: {text}" if context else text)
    return RpcError(code, message, details)


def invalid_argument(message: str) -> RpcError:
    """The ``invalid_argument`` error for params the caller must fix; ``message`` says how."""
    return RpcError(RpcErrorCode.INVALID_ARGUMENT, message)
