"""Idempotent operations: one run per idempotency key, whatever happens to the callers
(PROTOCOL.md §9.3).

:meth:`OperationRegistry.run` is how an RPC method that may be retried runs its work::

    async def create(request: Request, progress: Progress) -> Any:
        return await registry.run(
            request.idempotency_key, request.method, request.params,
            lambda emit: do_the_work(emit), progress,
        )

* A new key starts the work as its own asyncio task. It is not tied to the RPC stream that asked
  for it: when the caller cancels, its deadline passes, its stream is reset or the tunnel session
  dies, only that caller stops listening; the work goes on and its outcome is kept.
* The same key while the work runs attaches to it: the new caller first gets every progress
  event emitted so far, in order, then the later ones, then the same result or error.
* The same key after the work ended gets the stored result or error at once (and the stored
  progress events first), without running anything.
* An error whose code is ``unavailable``, ``cancelled`` or ``deadline_exceeded`` describes a
  delivery, not the outcome: it is given to the callers attached at that moment and then
  forgotten, so a retry runs the work again.
* The same key with another method or other params is ``invalid_argument``.
* Without a key the work simply runs in the caller's task (and stops with it).

Retention (the policy §9.3 asks callees to document): a finished operation is kept for
``retention_seconds`` (default one hour) after it ended, and at most ``max_entries`` (default
1000) operations are kept; beyond that the oldest finished ones are forgotten first. Running
operations are never forgotten; when ``max_entries`` of them run at once a new key is refused
with ``resource_exhausted``. Keys live in memory: an agent restart forgets them, so methods whose
work must survive a restart (``cluster.create``) also make their work resumable.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from protocol.exceptions import RpcError
from protocol.rpc import RpcErrorCode

__all__ = ["EmitProgress", "OperationRegistry", "OperationStart", "Progress"]

log = logging.getLogger("pcg.agent.operations")

#: how an RPC handler sends one progress event to its caller (same shape as agent.rpc.Progress)
Progress = Callable[[Mapping[str, Any]], Awaitable[None]]
#: how an operation emits a progress event to every caller attached to it
EmitProgress = Callable[[Mapping[str, Any]], Awaitable[None]]
#: the work itself; given the emitter, returns the result or raises (RpcError preferably)
OperationStart = Callable[[EmitProgress], Awaitable[Any]]

#: outcomes that say how a delivery went, not how the operation went (§9.3): never stored
TRANSIENT_CODES: Final = frozenset(
    {RpcErrorCode.UNAVAILABLE, RpcErrorCode.CANCELLED, RpcErrorCode.DEADLINE_EXCEEDED}
)


class _Done:
    """End-of-events marker in a follower's queue."""


_DONE: Final = _Done()


@dataclass(eq=False)
class _Operation:
    key: str
    method: str
    params: dict[str, Any]
    events: list[Mapping[str, Any]] = field(default_factory=list)
    followers: set[asyncio.Queue[Mapping[str, Any] | _Done]] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    finished_at: float | None = None
    result: Any = None
    error: RpcError | None = None

    async def emit(self, event: Mapping[str, Any]) -> None:
        event = dict(event)
        self.events.append(event)
        for queue in self.followers:
            queue.put_nowait(event)

    def follow(self) -> asyncio.Queue[Mapping[str, Any] | _Done]:
        """A queue holding every event so far, then each new one, then _DONE at the end."""
        queue: asyncio.Queue[Mapping[str, Any] | _Done] = asyncio.Queue()
        for event in self.events:
            queue.put_nowait(event)
        if self.finished_at is None:
            self.followers.add(queue)
        else:
            queue.put_nowait(_DONE)
        return queue

    def outcome(self) -> Any:
        if self.error is not None:
            raise RpcError(self.error.code, self.error.message, self.error.details)
        return self.result


class OperationRegistry:
    """Operations under way or finished, by idempotency key. See the module docstring."""

    def __init__(self, retention_seconds: float = 3600.0, max_entries: int = 1000) -> None:
        if retention_seconds < 0:
            raise ValueError(f"retention_seconds must be >= 0, got {retention_seconds}")
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.retention_seconds = retention_seconds
        self.max_entries = max_entries
        self._operations: dict[str, _Operation] = {}

    def __len__(self) -> int:
        return len(self._operations)

    @property
    def running(self) -> int:
        return sum(1 for op in self._operations.values() if op.finished_at is None)

    def __contains__(self, key: object) -> bool:
        self._expire()
        return key in self._operations

    async def run(
        self,
        key: str | None,
        method: str,
        params: Mapping[str, Any],
        start: OperationStart,
        progress: Progress,
    ) -> Any:
        """Run ``start`` once per ``key``; stream its progress to ``progress``; return its result
        (or raise its RpcError). See the module docstring for the rules."""
        if key is None:
            return await start(progress)
        self._expire()
        op = self._operations.get(key)
        if op is None:
            op = self._start(key, method, params, start)
        elif op.method != method or op.params != dict(params):
            raise RpcError(RpcErrorCode.INVALID_ARGUMENT, _mismatch(op, method, params))
        else:
            log.info(
                "operation.attach key=%s method=%s finished=%s",
                key,
                method,
                op.finished_at is not None,
            )
        queue = op.follow()
        try:
            while not isinstance(event := await queue.get(), _Done):
                await progress(event)
        finally:
            op.followers.discard(queue)
        return op.outcome()

    async def close(self) -> None:
        """Cancel the operations under way (agent shutdown) and wait for them to stop."""
        tasks = [op.task for op in self._operations.values() if op.task and not op.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- internals ----------------------------------------------------------------------

    def _start(
        self, key: str, method: str, params: Mapping[str, Any], start: OperationStart
    ) -> _Operation:
        if len(self._operations) >= self.max_entries:
            self._evict(len(self._operations) - self.max_entries + 1)
        if len(self._operations) >= self.max_entries:
            raise RpcError(
                RpcErrorCode.RESOURCE_EXHAUSTED,
                f"this agent already runs {self.max_entries} operations; retry {method} later",
            )
        op = _Operation(key, method, copy.deepcopy(dict(params)))
        self._operations[key] = op
        op.task = asyncio.get_running_loop().create_task(
            self._drive(op, start), name=f"operation {method} {key}"
        )
        log.info("operation.start key=%s method=%s", key, method)
        return op

    async def _drive(self, op: _Operation, start: OperationStart) -> None:
        try:
            op.result = await start(op.emit)
        except RpcError as exc:
            op.error = exc
        except asyncio.CancelledError:
            op.error = RpcError(
                RpcErrorCode.UNAVAILABLE,
                f"{op.method} was stopped before it finished (the agent is shutting down); "
                "retry with the same idempotency key",
            )
            raise
        except Exception as exc:
            log.exception("operation.failed key=%s method=%s", op.key, op.method)
            op.error = RpcError(RpcErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}")
        finally:
            op.finished_at = asyncio.get_running_loop().time()
            for queue in op.followers:
                queue.put_nowait(_DONE)
            op.followers.clear()
            transient = op.error is not None and op.error.code in TRANSIENT_CODES
            if transient and self._operations.get(op.key) is op:
                del self._operations[op.key]
            log.info(
                "operation.end key=%s method=%s outcome=%s stored=%s",
                op.key,
                op.method,
                "ok" if op.error is None else op.error.code,
                not transient,
            )

    def _expire(self) -> None:
        now = asyncio.get_running_loop().time()
        expired = [
            key
            for key, op in self._operations.items()
            if op.finished_at is not None and now - op.finished_at >= self.retention_seconds
        ]
        for key in expired:
            del self._operations[key]

    def _evict(self, count: int) -> None:
        finished = sorted(
            (op for op in self._operations.values() if op.finished_at is not None),
            key=lambda op: op.finished_at or 0.0,
        )
        for op in finished[:count]:
            del self._operations[op.key]


def _mismatch(op: _Operation, method: str, params: Mapping[str, Any]) -> str:
    if op.method != method:
        what = f"method {op.method!r}, not {method!r}"
    else:
        keys = sorted(
            str(name)
            for name in set(op.params) | set(params)
            if op.params.get(name, _DONE) != params.get(name, _DONE)
        )
        what = f"other params (they differ in: {', '.join(keys)})"
    return (
        f"idempotency key {op.key!r} already names an operation with {what}; a retry must send "
        "the same method and params, and a new operation needs a new key"
    )
