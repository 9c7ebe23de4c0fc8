"""The fault run: requests and RPCs flow continuously while a driver applies faults in turn.

:class:`Load` runs on the public host's loop: HTTP workers each send ``GET /req/{id}`` with a
fresh id through the tunnel and retry that same id until it succeeds (or ``request_bound``
passes); RPC workers call ``faults.effect`` with a fresh idempotency key and retry with the same
key on ``unavailable``/``deadline_exceeded``. :class:`Driver` runs in the test thread: each
phase applies one fault and records when; afterwards :meth:`Driver.rows` says, per phase, how
many requests began in it, how many of those needed retries, the slowest, how many reached the
origin more than once, the sessions the agent lost, and how long after the fault the first
request (attempt) begun after it succeeded.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from tests.faults.tunnel_lab import ORIGIN_PORT, Outcome, RpcOutcome, Tunnel


@dataclass
class Load:
    tunnel: Tunnel
    http_workers: int = 12
    rpc_workers: int = 2
    pause: float = 0.1
    attempt_timeout: float = 2.5
    request_bound: float = 45.0
    rpc_work_s: float = 0.3
    outcomes: list[Outcome] = field(default_factory=list)
    rpc_outcomes: list[RpcOutcome] = field(default_factory=list)
    paused: bool = False
    stopping: bool = False

    async def run(self) -> None:
        workers = [self._http() for _ in range(self.http_workers)]
        workers += [self._rpc() for _ in range(self.rpc_workers)]
        await asyncio.gather(*workers)

    async def _idle(self) -> bool:
        """Wait while paused; False once stopping."""
        while self.paused and not self.stopping:
            await asyncio.sleep(0.05)
        return not self.stopping

    async def _http(self) -> None:
        caller = self.tunnel.caller
        while await self._idle():
            outcome = await caller.fetch_until_ok(
                secrets.token_hex(8),
                self.tunnel.lab.maas_address,
                ORIGIN_PORT,
                attempt_timeout=self.attempt_timeout,
                bound=self.request_bound,
            )
            self.outcomes.append(outcome)
            await asyncio.sleep(self.pause)

    async def _rpc(self) -> None:
        caller = self.tunnel.caller
        while await self._idle():
            key = secrets.token_hex(8)
            params = {"key": key, "work_s": self.rpc_work_s}
            outcome = await caller.rpc_until_done(
                "faults.effect", params, key, bound=self.request_bound
            )
            self.rpc_outcomes.append(outcome)
            await asyncio.sleep(self.pause)


@dataclass
class PhaseRow:
    name: str
    started: float
    fault_at: float
    ended: float
    sessions_lost: int
    requests: int = 0
    retried: int = 0
    slowest: float = 0.0
    rpcs: int = 0
    #: requests of the phase whose id reached the origin more than once
    served_twice: int = 0
    recovery: float | None = None

    def line(self) -> str:
        recovery = "-" if self.recovery is None else f"{self.recovery:.2f}s"
        return (
            f"{self.name:<52} {self.ended - self.started:5.1f}s  requests {self.requests:4d}  "
            f"retried {self.retried:3d}  slowest {self.slowest:5.2f}s  rpcs {self.rpcs:3d}  "
            f"served twice {self.served_twice:2d}  sessions lost {self.sessions_lost}  "
            f"recovery {recovery}"
        )


class Driver:
    def __init__(self, load: Load) -> None:
        self.load = load
        self._rows: list[PhaseRow] = []
        self._fault_at = 0.0

    def fault_now(self) -> None:
        """Mark the moment recovery is measured from (the fault, or the end of an outage)."""
        self._fault_at = time.monotonic()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        agent = self.load.tunnel.agent
        downs = agent.downs
        started = time.monotonic()
        self._fault_at = started
        yield
        self._rows.append(
            PhaseRow(name, started, self._fault_at, time.monotonic(), agent.downs - downs)
        )

    def wait_recovered(self, bound: float) -> float:
        """Block until a request begun after the fault succeeded; its delay (fails after bound)."""
        since = self._fault_at
        deadline = since + bound
        while time.monotonic() < deadline:
            done = [
                o.finished for o in list(self.load.outcomes) if o.ok and o.last_attempt >= since
            ]
            if done:
                return min(done) - since
            time.sleep(0.05)
        raise AssertionError(f"no request succeeded within {bound:.1f}s of the fault")

    def completed(self) -> int:
        return len(self.load.outcomes)

    def rows(self, served: Mapping[str, int]) -> list[PhaseRow]:
        """The phases with their figures; ``served``: id -> times the origin served it."""
        rows = self._rows
        for index, row in enumerate(rows):
            until = rows[index + 1].started if index + 1 < len(rows) else float("inf")
            ended = [o for o in self.load.outcomes if row.started <= o.finished - o.seconds < until]
            row.requests = len(ended)
            row.retried = sum(1 for o in ended if o.attempts > 1)
            row.slowest = max((o.seconds for o in ended), default=0.0)
            row.served_twice = sum(1 for o in ended if served.get(o.request_id, 0) > 1)
            row.rpcs = sum(
                1 for o in self.load.rpc_outcomes if row.started <= o.finished - o.seconds < until
            )
            recovered = [
                o.finished for o in self.load.outcomes if o.ok and o.last_attempt >= row.fault_at
            ]
            row.recovery = min(recovered) - row.fault_at if recovered else None
        return rows
