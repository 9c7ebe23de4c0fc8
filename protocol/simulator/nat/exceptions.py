"""Errors of the NAT topology simulator.

::

    NatError
    ├── PlanError              the plan is invalid (prefix, network, proxy settings)
    ├── NetnsUnavailable       not root, a tool is missing, or the kernel refuses namespaces
    ├── TopologyExists         ``up`` found namespaces with this prefix already there
    ├── TopologyMissing        a knob was turned on a topology that is not up
    └── CommandFailed          an ``ip``/``iptables``/``tc``/``conntrack`` command failed
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence


class NatError(Exception):
    """Base class: every error this package raises on purpose."""


class PlanError(NatError, ValueError):
    pass


class NetnsUnavailable(NatError):
    pass


class TopologyExists(NatError):
    pass


class TopologyMissing(NatError):
    pass


class CommandFailed(NatError):
    """A command exited non-zero; carries the command line and what it printed on stderr."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr.strip()
        super().__init__(
            f"command failed (exit {returncode}): {shlex.join(self.argv)}: "
            f"{self.stderr or '(no stderr)'}"
        )
