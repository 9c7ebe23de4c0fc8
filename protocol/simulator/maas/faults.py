"""Faults the simulated MAAS can inject, switchable at start-up and while it runs.

* ``fail_deploy``: machines (system_id or hostname) whose deployment ends in Failed deployment.
* ``latency``: seconds added before every API answer.
* rules, each for the next ``count`` matching API requests (``count=None``: until cleared):
  ``unavailable`` answers 503 with ``Retry-After``; ``busy`` answers 409 with ``Retry-After``
  (MAAS's "retry this transaction"); ``drop`` closes the connection without answering.
  ``match`` limits a rule to requests whose ``"METHOD /path?query"`` contains that text, e.g.
  ``"op=allocate"``.

The same settings travel as JSON through the control endpoint (``/MAAS/sim/faults``), see
:meth:`Faults.update` and :meth:`Faults.to_json`. Faults never apply to ``/MAAS/sim/``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FaultKind", "FaultRule", "Faults"]


class FaultKind(enum.Enum):
    UNAVAILABLE = "unavailable"
    BUSY = "busy"
    DROP = "drop"


@dataclass(slots=True)
class FaultRule:
    kind: FaultKind
    remaining: int | None = 1
    retry_after: int = 1
    match: str | None = None

    def matches(self, request_line: str) -> bool:
        return self.match is None or self.match in request_line

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "remaining": self.remaining,
            "retry_after": self.retry_after,
            "match": self.match,
        }


@dataclass(slots=True)
class Faults:
    fail_deploy: set[str] = field(default_factory=set)
    latency: float = 0.0
    rules: list[FaultRule] = field(default_factory=list)

    # -- switches -------------------------------------------------------------------------

    def fail_deployment(self, *machines: str) -> None:
        """Deployments of these machines (system_id or hostname) end in Failed deployment."""
        self.fail_deploy.update(machines)

    def set_latency(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"latency must be >= 0 seconds, got {seconds}")
        self.latency = seconds

    def unavailable(
        self, count: int | None = 1, *, retry_after: int = 1, match: str | None = None
    ) -> None:
        """The next ``count`` matching requests get 503 with ``Retry-After``."""
        self._add(FaultRule(FaultKind.UNAVAILABLE, count, retry_after, match))

    def busy(
        self, count: int | None = 1, *, retry_after: int = 1, match: str | None = None
    ) -> None:
        """The next ``count`` matching requests get 409 with ``Retry-After``."""
        self._add(FaultRule(FaultKind.BUSY, count, retry_after, match))

    def drop_connections(self, count: int | None = 1, *, match: str | None = None) -> None:
        """The next ``count`` matching requests have their connection closed unanswered."""
        self._add(FaultRule(FaultKind.DROP, count, 0, match))

    def clear(self) -> None:
        self.fail_deploy.clear()
        self.latency = 0.0
        self.rules.clear()

    def _add(self, rule: FaultRule) -> None:
        if rule.remaining is not None and rule.remaining < 1:
            raise ValueError(f"fault count must be >= 1 or None, got {rule.remaining}")
        if rule.retry_after < 0:
            raise ValueError(f"retry_after must be >= 0 seconds, got {rule.retry_after}")
        self.rules.append(rule)

    # -- use ------------------------------------------------------------------------------

    def should_fail_deploy(self, system_id: str, hostname: str) -> bool:
        return system_id in self.fail_deploy or hostname in self.fail_deploy

    def take(self, request_line: str) -> FaultRule | None:
        """The first rule matching ``request_line``, consuming one of its uses."""
        for rule in self.rules:
            if rule.matches(request_line):
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self.rules.remove(rule)
                return rule
        return None

    # -- JSON (control endpoint, CLI) ------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "fail_deploy": sorted(self.fail_deploy),
            "latency": self.latency,
            "rules": [rule.to_json() for rule in self.rules],
        }

    def update(self, data: Mapping[str, Any]) -> None:
        """Apply a JSON document, e.g. ``{"latency": 0.5, "fail_deploy": ["node-03"],
        "unavailable": {"count": 2, "retry_after": 1}, "drop": {"count": 1, "match":
        "op=deploy"}, "busy": {...}, "clear": true}``. Raises ValueError naming a bad key."""
        known = {"clear", "fail_deploy", "latency", "unavailable", "busy", "drop"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault setting(s) {sorted(unknown)}; known: {sorted(known)}")
        if data.get("clear"):
            self.clear()
        if "fail_deploy" in data:
            machines = data["fail_deploy"]
            if isinstance(machines, str) or not isinstance(machines, list):
                raise ValueError("fail_deploy must be a list of system_ids or hostnames")
            self.fail_deployment(*(str(item) for item in machines))
        if "latency" in data:
            self.set_latency(float(data["latency"]))
        for name, add in (
            ("unavailable", self.unavailable),
            ("busy", self.busy),
        ):
            if name in data:
                spec = _rule_spec(name, data[name])
                add(spec["count"], retry_after=spec["retry_after"], match=spec["match"])
        if "drop" in data:
            spec = _rule_spec("drop", data["drop"])
            self.drop_connections(spec["count"], match=spec["match"])


def _rule_spec(name: str, value: object) -> dict[str, Any]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"count": value}
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a count or {{count, retry_after, match}}")
    count = value.get("count", 1)
    return {
        "count": None if count is None else int(count),
        "retry_after": int(value.get("retry_after", 1)),
        "match": None if value.get("match") is None else str(value["match"]),
    }
