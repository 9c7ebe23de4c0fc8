"""Exceptions of the agent package.

::

    AgentError                  base
    ├── ConfigError             the config file or PCG_* environment is wrong (also ValueError)
    └── DestinationRefused      a relay target is not on the allowlist
"""

from __future__ import annotations


class AgentError(Exception):
    """Base of the agent's own exceptions."""


class ConfigError(AgentError, ValueError):
    """A setting is wrong; the message names it, shows the value (never a secret) and the fix."""


class DestinationRefused(AgentError):
    """The control plane asked for a destination this gateway does not relay to."""
