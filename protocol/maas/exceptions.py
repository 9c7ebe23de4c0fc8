"""Every error the MAAS client raises, in one tree.

::

    MaasError
     ├── InvalidApiKey            (also ValueError)   the key is malformed; nothing was sent
     ├── InvalidEndpoint          (also ValueError)   the MAAS URL cannot be used
     ├── MaasUnreachable          (also OSError)      no HTTP answer: refused, reset, DNS, TLS
     │    └── MaasTimeout         (also TimeoutError) MAAS did not answer in time
     ├── MaasApiError                                 MAAS answered with an error status
     │    ├── BadRequest          400   .field_errors: {field: [message, ...]}
     │    ├── AuthError           401   key unknown, wrong signature, reused nonce
     │    ├── Forbidden           403
     │    ├── NotFound            404
     │    ├── Conflict            409
     │    │    ├── NoMatchingMachine   409 from allocate: nothing Ready fits the constraints
     │    │    └── WrongState          409 elsewhere: the machine's status forbids the action
     │    └── Retryable           503, or 409 with Retry-After, still failing after the retries
     └── MachineWaitError                             wait_for_status() did not reach its goal
          ├── MachineFailed                            the machine landed in a failure status
          └── MachineWaitTimeout  (also TimeoutError) the goal was not reached in time

Messages say what was wrong, with the value, and what to do. They never contain the API key:
server text is passed through :meth:`ApiKey.redact` before it is quoted, because a real MAAS
echoes the expected PLAINTEXT signature (the token secret) in its "Invalid signature" reply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from protocol.maas.models import Machine

__all__ = [
    "AuthError",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "InvalidApiKey",
    "InvalidEndpoint",
    "MaasApiError",
    "MaasError",
    "MaasTimeout",
    "MaasUnreachable",
    "MachineFailed",
    "MachineWaitError",
    "MachineWaitTimeout",
    "NoMatchingMachine",
    "NotFound",
    "Retryable",
    "WrongState",
]


class MaasError(Exception):
    """Base class of everything this package raises."""


class InvalidApiKey(MaasError, ValueError):
    """The API key is not ``consumer_key:token_key:token_secret``. The key is never quoted."""


class InvalidEndpoint(MaasError, ValueError):
    """The MAAS endpoint URL is unusable (no scheme, no host, not http/https)."""


class MaasUnreachable(MaasError, OSError):
    """No HTTP answer came back: connection refused or reset, DNS failure, TLS failure."""

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url

    def __str__(self) -> str:
        return str(self.args[0])


class MaasTimeout(MaasUnreachable, TimeoutError):
    """MAAS accepted the connection but did not answer within the timeout."""


class MaasApiError(MaasError):
    """MAAS answered with an HTTP error status.

    ``status`` is the HTTP status, ``method`` and ``url`` the request, ``body`` the server's
    text with any part of the API key redacted.
    """

    def __init__(self, message: str, *, status: int, method: str, url: str, body: str) -> None:
        super().__init__(message)
        self.status = status
        self.method = method
        self.url = url
        self.body = body

    def __str__(self) -> str:
        return str(self.args[0])


class BadRequest(MaasApiError):
    """400: MAAS rejected the request's fields; ``field_errors`` maps field -> messages."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        method: str,
        url: str,
        body: str,
        field_errors: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        super().__init__(message, status=status, method=method, url=url, body=body)
        self.field_errors: dict[str, list[str]] = {
            name: list(messages) for name, messages in (field_errors or {}).items()
        }


class AuthError(MaasApiError):
    """401: the API key is unknown or revoked, the signature is wrong, or a nonce was reused."""


class Forbidden(MaasApiError):
    """403: the key's user may not do this (for example, not an administrator)."""


class NotFound(MaasApiError):
    """404: no such machine, zone, pool, domain or subnet (or the endpoint path is wrong)."""


class Conflict(MaasApiError):
    """409 without Retry-After."""


class NoMatchingMachine(Conflict):
    """409 from allocate: no Ready machine satisfies the constraints."""


class WrongState(Conflict):
    """409: the machine's current status does not allow the action (deploy, release...)."""


class Retryable(MaasApiError):
    """503, or 409 with Retry-After: MAAS asked us to come back later, and kept asking.

    ``retry_after`` is the last Retry-After value in seconds (None if absent), ``attempts`` how
    many requests were made.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        method: str,
        url: str,
        body: str,
        retry_after: float | None,
        attempts: int,
    ) -> None:
        super().__init__(message, status=status, method=method, url=url, body=body)
        self.retry_after = retry_after
        self.attempts = attempts


class MachineWaitError(MaasError):
    """A wait for a machine status ended without reaching it. ``machine`` is the last read."""

    def __init__(self, message: str, *, machine: Machine) -> None:
        super().__init__(message)
        self.machine = machine


class MachineFailed(MachineWaitError):
    """The machine reached a failure status (e.g. Failed deployment) while we waited."""


class MachineWaitTimeout(MachineWaitError, TimeoutError):
    """The machine did not reach the wanted status before the timeout."""
