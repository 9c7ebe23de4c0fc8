"""Client for the MAAS API 2.0, shared by the gateway agent and the installer.

Public API::

    ApiKey.parse("consumer_key:token_key:token_secret")
    async with MaasClient("http://maas:5240/MAAS", api_key) as maas: ...

Errors: :mod:`protocol.maas.exceptions` (tree in its docstring). Results:
:mod:`protocol.maas.models`. Design notes: ``protocol/maas/README.md``.
"""

from protocol.maas.apikey import ApiKey
from protocol.maas.client import MaasClient
from protocol.maas.exceptions import (
    AuthError,
    BadRequest,
    Conflict,
    Forbidden,
    InvalidApiKey,
    InvalidEndpoint,
    MaasApiError,
    MaasError,
    MaasTimeout,
    MaasUnreachable,
    MachineFailed,
    MachineWaitError,
    MachineWaitTimeout,
    NoMatchingMachine,
    NotFound,
    Retryable,
    WrongState,
)
from protocol.maas.models import (
    FAILURE_STATUSES,
    Domain,
    IpRange,
    MaasVersion,
    Machine,
    NodeStatus,
    PowerState,
    Ref,
    ResourcePool,
    Subnet,
    Zone,
)
from protocol.maas.retry import RetryPolicy

__all__ = [
    "FAILURE_STATUSES",
    "ApiKey",
    "AuthError",
    "BadRequest",
    "Conflict",
    "Domain",
    "Forbidden",
    "InvalidApiKey",
    "InvalidEndpoint",
    "IpRange",
    "MaasApiError",
    "MaasClient",
    "MaasError",
    "MaasTimeout",
    "MaasUnreachable",
    "MaasVersion",
    "Machine",
    "MachineFailed",
    "MachineWaitError",
    "MachineWaitTimeout",
    "NoMatchingMachine",
    "NodeStatus",
    "NotFound",
    "PowerState",
    "Ref",
    "ResourcePool",
    "Retryable",
    "RetryPolicy",
    "Subnet",
    "WrongState",
    "Zone",
]
