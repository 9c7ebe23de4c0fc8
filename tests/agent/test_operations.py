"""The idempotent operation registry (PROTOCOL.md §9.3)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from agent.operations import EmitProgress, OperationRegistry
from protocol.exceptions import RpcError


class Recorder:
    """A caller's progress callback that keeps what it received."""

    def __init__(self) -> None:
        self.events: list[Mapping[str, Any]] = []

    async def __call__(self, event: Mapping[str, Any]) -> None:
        self.events.append(event)


class Steps:
    """An operation that emits one event per step and waits for the test to release each."""

    def __init__(self, steps: int = 3, result: Any = "done", error: RpcError | None = None):
        self.steps = steps
        self.result = result
        self.error = error
        self.runs = 0
        self.gates = [asyncio.Event() for _ in range(steps)]
        self.emitted = [asyncio.Event() for _ in range(steps)]

    async def __call__(self, emit: EmitProgress) -> Any:
        self.runs += 1
        for index in range(self.steps):
            await emit({"step": index})
            self.emitted[index].set()
            await self.gates[index].wait()
        if self.error is not None:
            raise self.error
        return self.result

    def open_all(self) -> None:
        for gate in self.gates:
            gate.set()


async def test_without_key_just_runs() -> None:
    registry = OperationRegistry()
    op = Steps(2)
    op.open_all()
    progress = Recorder()
    assert await registry.run(None, "m", {}, op, progress) == "done"
    assert progress.events == [{"step": 0}, {"step": 1}]
    assert len(registry) == 0


async def test_attach_midway_replays_then_follows() -> None:
    registry = OperationRegistry()
    op = Steps(3)
    first, second = Recorder(), Recorder()
    one = asyncio.create_task(registry.run("k", "m", {"a": 1}, op, first))
    await op.emitted[0].wait()
    op.gates[0].set()
    await op.emitted[1].wait()
    two = asyncio.create_task(registry.run("k", "m", {"a": 1}, Steps(), second))
    await asyncio.sleep(0)
    op.gates[1].set()
    op.gates[2].set()
    assert await one == "done"
    assert await two == "done"
    assert op.runs == 1
    expected = [{"step": 0}, {"step": 1}, {"step": 2}]
    assert first.events == expected
    assert second.events == expected


async def test_finished_result_is_stored_and_replayed() -> None:
    registry = OperationRegistry()
    op = Steps(2, result={"x": 1})
    op.open_all()
    assert await registry.run("k", "m", {}, op, Recorder()) == {"x": 1}
    again = Recorder()
    other = Steps(1, result="other")
    other.open_all()
    assert await registry.run("k", "m", {}, other, again) == {"x": 1}
    assert other.runs == 0
    assert op.runs == 1
    assert again.events == [{"step": 0}, {"step": 1}]


async def test_error_outcome_is_stored() -> None:
    registry = OperationRegistry()
    op = Steps(1, error=RpcError("resource_exhausted", "no machine"))
    op.open_all()
    for _ in range(2):
        with pytest.raises(RpcError) as info:
            await registry.run("k", "m", {}, op, Recorder())
        assert info.value.code == "resource_exhausted"
        assert info.value.message == "no machine"
    assert op.runs == 1


@pytest.mark.parametrize("code", ["unavailable", "cancelled", "deadline_exceeded"])
async def test_delivery_errors_are_not_stored(code: str) -> None:
    registry = OperationRegistry()
    failing = Steps(1, error=RpcError(code, "lost"))
    failing.open_all()
    with pytest.raises(RpcError) as info:
        await registry.run("k", "m", {}, failing, Recorder())
    assert info.value.code == code
    assert "k" not in registry
    retry = Steps(1, result="second")
    retry.open_all()
    assert await registry.run("k", "m", {}, retry, Recorder()) == "second"
    assert retry.runs == 1


async def test_unexpected_exception_becomes_stored_internal() -> None:
    registry = OperationRegistry()

    async def broken(emit: EmitProgress) -> Any:
        raise KeyError("boom")

    for _ in range(2):
        with pytest.raises(RpcError) as info:
            await registry.run("k", "m", {}, broken, Recorder())
        assert info.value.code == "internal"
        assert "KeyError" in info.value.message


async def test_key_reuse_with_other_params_or_method() -> None:
    registry = OperationRegistry()
    op = Steps(1)
    op.open_all()
    await registry.run("k", "cluster.create", {"size": 1, "name": "a"}, op, Recorder())
    with pytest.raises(RpcError) as info:
        await registry.run("k", "cluster.create", {"size": 2, "name": "a"}, op, Recorder())
    assert info.value.code == "invalid_argument"
    assert "'k'" in info.value.message and "size" in info.value.message
    with pytest.raises(RpcError) as info:
        await registry.run("k", "cluster.delete", {"size": 1, "name": "a"}, op, Recorder())
    assert info.value.code == "invalid_argument"
    assert "cluster.create" in info.value.message
    assert op.runs == 1


async def test_operation_survives_cancelled_caller() -> None:
    registry = OperationRegistry()
    op = Steps(2, result="kept")
    first = Recorder()
    caller = asyncio.create_task(registry.run("k", "m", {}, op, first))
    await op.emitted[0].wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    op.open_all()
    later = Recorder()
    assert await registry.run("k", "m", {}, Steps(), later) == "kept"
    assert op.runs == 1
    assert first.events == [{"step": 0}]
    assert later.events == [{"step": 0}, {"step": 1}]


async def test_failing_progress_callback_does_not_stop_the_operation() -> None:
    registry = OperationRegistry()
    op = Steps(2, result="ok")

    async def broken_stream(event: Mapping[str, Any]) -> None:
        raise ConnectionError("stream gone")

    with pytest.raises(ConnectionError):
        await registry.run("k", "m", {}, op, broken_stream)
    op.open_all()
    assert await registry.run("k", "m", {}, op, Recorder()) == "ok"
    assert op.runs == 1


async def test_retention_and_capacity() -> None:
    registry = OperationRegistry(retention_seconds=0.05, max_entries=2)
    for key in ("a", "b", "c"):
        op = Steps(0, result=key)
        assert await registry.run(key, "m", {}, op, Recorder()) == key
    assert len(registry) == 2 and "a" not in registry  # the oldest finished one went first
    await asyncio.sleep(0.06)
    assert "b" not in registry and "c" not in registry
    fresh = Steps(0, result="new")
    assert await registry.run("b", "m", {}, fresh, Recorder()) == "new"


async def test_capacity_full_of_running_operations_refuses() -> None:
    registry = OperationRegistry(max_entries=1)
    op = Steps(1)
    running = asyncio.create_task(registry.run("a", "m", {}, op, Recorder()))
    await op.emitted[0].wait()
    with pytest.raises(RpcError) as info:
        await registry.run("b", "m", {}, Steps(0), Recorder())
    assert info.value.code == "resource_exhausted"
    op.open_all()
    assert await running == "done"


async def test_close_stops_running_operations_without_storing() -> None:
    registry = OperationRegistry()
    op = Steps(1)
    caller = asyncio.create_task(registry.run("k", "m", {}, op, Recorder()))
    await op.emitted[0].wait()
    await registry.close()
    with pytest.raises(RpcError) as info:
        await caller
    assert info.value.code == "unavailable"
    assert "k" not in registry
