"""The engine on a `MemoryStore`: the public surface and how functions and classes execute."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel

import taskloom
from support import WAIT, in_thread_wait, load_helper
from taskloom import Engine, InputValidationError, Run, RunEvent, RunStatus


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    async with Engine("memory://", shutdown_grace=1.0) as running:
        yield running


@taskloom.task
def adder(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@taskloom.task
async def async_adder(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


@taskloom.task
def explode(message: str) -> None:
    raise ValueError(message)


# --- the contract surface ---------------------------------------------------------------------


async def test_submit_wait_get_run(engine: Engine) -> None:
    run = await engine.submit(adder, {"a": 1, "b": 2})
    assert isinstance(run, Run)
    assert run.task == "adder"
    assert run.inputs == {"a": 1, "b": 2}
    assert run.parent_id is None
    done = await engine.wait(run.id, timeout=WAIT)
    assert done.id == run.id
    assert done.status == "completed"
    assert done.status is RunStatus.COMPLETED
    assert done.result == 3
    assert done.error is None
    assert done.attempts == 1
    fetched = await engine.get_run(run.id)
    assert fetched.status == "completed"
    assert fetched.result == 3
    stored = engine.store.get_run(run.id) if engine.store else None
    assert stored is not None
    assert stored.result == 3


async def test_submit_returns_a_snapshot(engine: Engine) -> None:
    run = await engine.submit(async_adder, {"a": 1, "b": 1})
    status = run.status
    done = await engine.wait(run.id, timeout=WAIT)
    assert done.status == "completed"
    assert run.status == status  # the engine's later updates do not reach the caller's copy
    assert run.result is None


async def test_run_ids_sort_in_submission_order(engine: Engine) -> None:
    runs = [await engine.submit(adder, {"a": i, "b": 0}) for i in range(50)]
    runs += await engine.submit_many(adder, [{"a": i, "b": 0} for i in range(200)])
    ids = [r.id for r in runs]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    await engine.wait_many(ids, timeout=WAIT)
    assert [r.id for r in await engine.list_runs(limit=1000)] == ids[::-1]


async def test_async_function_task(engine: Engine) -> None:
    done = await engine.run(async_adder, {"a": 2, "b": 5})
    assert done.status == "completed"
    assert done.result == 7


async def test_submit_by_registered_name(engine: Engine) -> None:
    engine.register(adder)
    done = await engine.run("adder", {"a": "4", "b": 1})
    assert done.result == 5
    assert done.inputs == {"a": 4, "b": 1}
    with pytest.raises(taskloom.UnknownTaskError, match="'nope'"):
        await engine.submit("nope", {})


async def test_list_runs_filters(engine: Engine) -> None:
    ok = await engine.run(adder, {"a": 1, "b": 1})
    bad = await engine.run(explode, {"message": "boom"})
    child = await engine.run(adder, {"a": 2, "b": 2}, parent_id=ok.id)
    everything = await engine.list_runs()
    assert [r.id for r in everything] == [child.id, bad.id, ok.id]  # newest first
    assert {r.id for r in await engine.list_runs(task="adder")} == {ok.id, child.id}
    assert [r.id for r in await engine.list_runs(status="failed")] == [bad.id]
    assert [r.id for r in await engine.list_runs(status=["failed", "completed"], limit=2)] == [
        child.id,
        bad.id,
    ]
    assert [r.id for r in await engine.list_runs(parent_id=ok.id)] == [child.id]
    assert child.parent_id == ok.id
    assert await engine.list_runs(status="running") == []


async def test_a_failing_task_fails_its_run(engine: Engine) -> None:
    done = await engine.run(explode, {"message": "boom"})
    assert done.status == "failed"
    assert done.error is not None
    assert done.error.type == "ValueError"
    assert done.error.message == "boom"
    assert done.error.traceback is not None
    assert "ValueError: boom" in done.error.traceback
    assert done.result is None
    attempts = await engine.get_attempts(done.id)
    assert [(a.number, a.status) for a in attempts] == [(1, "failed")]


async def test_invalid_input_raises_and_records_nothing(engine: Engine) -> None:
    with pytest.raises(InputValidationError) as info:
        await engine.submit(adder, {"a": "one", "b": 2})
    assert str(info.value) == "task 'adder': input 'a': expected an integer, got 'one'"
    assert await engine.list_runs() == []


async def test_unknown_runs(engine: Engine) -> None:
    with pytest.raises(taskloom.RunNotFoundError):
        await engine.get_run("no-such-run")
    with pytest.raises(taskloom.RunNotFoundError):
        await engine.wait("no-such-run", timeout=1)
    with pytest.raises(taskloom.RunNotFoundError):
        await engine.cancel("no-such-run")


async def test_wait_with_a_timeout(engine: Engine) -> None:
    release = asyncio.Event()

    @taskloom.task
    async def held() -> str:
        await release.wait()
        return "released"

    run = await engine.submit(held)
    with pytest.raises(taskloom.WaitTimeoutError, match=run.id):
        await engine.wait(run.id, timeout=0.05)
    release.set()
    done = await engine.wait(run.id, timeout=WAIT)
    assert done.result == "released"


async def test_an_engine_that_is_not_started_refuses_work() -> None:
    engine = Engine("memory://")
    with pytest.raises(taskloom.EngineClosedError):
        await engine.submit(adder, {"a": 1, "b": 2})
    async with engine:
        assert (await engine.run(adder, {"a": 1, "b": 2})).result == 3
    with pytest.raises(taskloom.EngineClosedError):
        await engine.submit(adder, {"a": 1, "b": 2})


async def test_results_are_stored_as_json(engine: Engine) -> None:
    class Shape(BaseModel):
        sides: int

    @taskloom.task
    def shapes() -> dict[str, Any]:
        return {"shape": Shape(sides=3), "pair": (1, 2)}

    done = await engine.run(shapes)
    assert done.result == {"shape": {"sides": 3}, "pair": [1, 2]}


async def test_a_result_that_is_not_json_fails_the_run(engine: Engine) -> None:
    @taskloom.task
    def opaque() -> object:
        return object()

    done = await engine.run(opaque)
    assert done.status == "failed"
    assert done.error is not None
    assert "'opaque'" in done.error.message


# --- where functions execute --------------------------------------------------------------------


async def test_a_sync_function_runs_in_a_thread_without_stalling_the_loop(engine: Engine) -> None:
    entered = threading.Event()
    release = threading.Event()

    @taskloom.task
    def blocking() -> int:
        entered.set()
        assert release.wait(WAIT)
        return threading.get_ident()

    try:
        slow = await engine.submit(blocking)
        await in_thread_wait(entered)
        # While the sync task holds its thread, the loop runs an async task to the end.
        quick = await engine.run(async_adder, {"a": 1, "b": 1})
        assert quick.status == "completed"
        assert (await engine.get_run(slow.id)).status == "running"
    finally:
        release.set()
    done = await engine.wait(slow.id, timeout=WAIT)
    assert done.status == "completed"
    assert done.result != threading.get_ident()


@pytest.mark.parametrize("timeout", [None, 30.0], ids=["no-timeout", "with-timeout"])
async def test_runs_waiting_for_a_serial_sync_task_are_pending(
    engine: Engine, timeout: float | None
) -> None:
    # Calls of a sync task that is not thread-safe take turns. A run waiting for its
    # turn has not started: it is pending, with no attempt, until its call begins.
    entered = threading.Event()
    release = threading.Event()

    @taskloom.task(timeout=timeout)
    def one_at_a_time(i: int) -> int:
        entered.set()
        assert release.wait(WAIT)
        return i

    try:
        runs = [await engine.submit(one_at_a_time, {"i": i}) for i in range(3)]
        await in_thread_wait(entered)
        current = [await engine.get_run(r.id) for r in runs]
        assert [r.status for r in current] == ["running", "pending", "pending"]
        assert [r.attempts for r in current] == [1, 0, 0]
        assert [r.started_at is None for r in current] == [False, True, True]
    finally:
        release.set()
    done = await engine.wait_many([r.id for r in runs], timeout=WAIT)
    assert [r.result for r in done] == [0, 1, 2]


async def test_runs_waiting_for_a_free_thread_are_pending() -> None:
    # The same for a thread-safe task when every thread is busy.
    entered = threading.Event()
    release = threading.Event()

    @taskloom.task(thread_safe=True)
    def pooled(i: int) -> int:
        entered.set()
        assert release.wait(WAIT)
        return i

    async with Engine("memory://", threads=1, shutdown_grace=1.0) as engine:
        try:
            runs = [await engine.submit(pooled, {"i": i}) for i in range(3)]
            await in_thread_wait(entered)
            current = [await engine.get_run(r.id) for r in runs]
            assert [r.status for r in current] == ["running", "pending", "pending"]
            assert [r.attempts for r in current] == [1, 0, 0]
        finally:
            release.set()
        done = await engine.wait_many([r.id for r in runs], timeout=WAIT)
        assert [r.result for r in done] == [0, 1, 2]


@pytest.mark.parametrize("timeout", [None, 30.0], ids=["no-timeout", "with-timeout"])
async def test_a_sync_function_never_runs_twice_at_once(
    engine: Engine, timeout: float | None
) -> None:
    lock = threading.Lock()
    active = 0
    most = 0

    @taskloom.task(timeout=timeout)
    def not_thread_safe(i: int) -> int:
        nonlocal active, most
        with lock:
            active += 1
            most = max(most, active)
        time.sleep(0.001)  # give an overlapping call the chance to show up
        with lock:
            active -= 1
        return i

    runs = await asyncio.gather(*(engine.submit(not_thread_safe, {"i": i}) for i in range(60)))
    done = await engine.wait_many([r.id for r in runs], timeout=WAIT)
    assert [r.status for r in done] == ["completed"] * 60
    assert sorted(r.result for r in done) == list(range(60))
    assert most == 1


async def test_a_thread_safe_function_runs_in_parallel(engine: Engine) -> None:
    # Each call waits for the other: they can only both finish if they overlap.
    barrier = threading.Barrier(2, timeout=WAIT)

    @taskloom.task(thread_safe=True)
    def meet() -> int:
        return barrier.wait()

    first = await engine.submit(meet)
    second = await engine.submit(meet)
    done = await engine.wait_many([first.id, second.id], timeout=WAIT + 5)
    assert [r.status for r in done] == ["completed", "completed"]
    assert sorted(r.result for r in done) == [0, 1]


async def test_inline_runs_on_the_loop_thread(engine: Engine) -> None:
    @taskloom.task(inline=True)
    def on_loop() -> int:
        return threading.get_ident()

    @taskloom.task
    def off_loop() -> int:
        return threading.get_ident()

    assert (await engine.run(on_loop)).result == threading.get_ident()
    assert (await engine.run(off_loop)).result != threading.get_ident()


async def test_a_failing_inline_function_fails_its_run(engine: Engine) -> None:
    @taskloom.task(inline=True)
    def broken() -> None:
        raise KeyError("missing")

    done = await engine.run(broken)
    assert done.status == "failed"
    assert done.error is not None
    assert done.error.type == "KeyError"


# --- special parameters --------------------------------------------------------------------------


class Settings(BaseModel):
    factor: int = 2
    name: str = "default"


class Tally:
    def __init__(self) -> None:
        self.calls: list[int] = []


async def test_state_is_one_instance_per_task_per_engine(engine: Engine) -> None:
    @taskloom.task
    def count(n: int, state: Tally) -> list[int]:
        state.calls.append(n)
        return list(state.calls)

    @taskloom.task
    def other(n: int, state: Tally) -> list[int]:
        state.calls.append(n)
        return list(state.calls)

    assert (await engine.run(count, {"n": 1})).result == [1]
    assert (await engine.run(count, {"n": 2})).result == [1, 2]
    assert (await engine.run(other, {"n": 9})).result == [9]  # its own instance
    assert (await engine.run(count, {"n": 3})).result == [1, 2, 3]
    async with Engine("memory://") as fresh:
        assert (await fresh.run(count, {"n": 4})).result == [4]


async def test_config_is_validated_at_submit_and_defaults_when_absent(engine: Engine) -> None:
    @taskloom.task
    def scaled(a: int, config: Settings) -> dict[str, Any]:
        return {"value": a * config.factor, "name": config.name}

    default = await engine.run(scaled, {"a": 3})
    assert default.result == {"value": 6, "name": "default"}
    assert default.config == {"factor": 2, "name": "default"}

    given = await engine.run(scaled, {"a": 3}, config={"factor": "5"})
    assert given.result == {"value": 15, "name": "default"}
    assert given.config == {"factor": 5, "name": "default"}

    instance = await engine.run(scaled, {"a": 1}, config=Settings(factor=7, name="x"))
    assert instance.result == {"value": 7, "name": "x"}

    before = len(await engine.list_runs())
    with pytest.raises(InputValidationError) as info:
        await engine.submit(scaled, {"a": 3}, config={"factor": "many"})
    assert [e.field for e in info.value.errors] == ["factor"]
    assert "config" in str(info.value)
    assert len(await engine.list_runs()) == before


async def test_config_for_a_task_without_config_is_refused(engine: Engine) -> None:
    with pytest.raises(InputValidationError, match="config"):
        await engine.submit(adder, {"a": 1, "b": 2}, config={"factor": 1})
    assert await engine.list_runs() == []


async def test_timestamp_is_an_int_in_milliseconds(engine: Engine) -> None:
    @taskloom.task
    def stamped(timestamp: int) -> int:
        return timestamp

    done = await engine.run(stamped)
    assert type(done.result) is int
    assert abs(done.result - done.created_at * 1000) <= 1


def _special_function(specials: tuple[str, ...]) -> Any:
    """A task taking `a` and the given special parameters; it reports what it received."""
    annotations = {
        "config": "Settings",
        "state": "Tally",
        "timestamp": "int",
        "context": "taskloom.Context",
    }
    params = ", ".join(["a: int", *(f"{name}: {annotations[name]}" for name in specials)])
    report = ", ".join(f"{name!r}: describe({name})" for name in specials)
    name = "special_" + ("_".join(specials) or "none")
    source = f"def {name}({params}) -> dict:\n    return {{'a': a, {report}}}\n"
    namespace: dict[str, Any] = {
        "Settings": Settings,
        "Tally": Tally,
        "taskloom": taskloom,
        "describe": lambda value: type(value).__name__,
    }
    exec(source, namespace)
    return taskloom.task(namespace[name])


SPECIAL_COMBINATIONS = [
    combo
    for size in range(5)
    for combo in itertools.combinations(("config", "state", "timestamp", "context"), size)
]


@pytest.mark.parametrize("specials", SPECIAL_COMBINATIONS, ids=lambda c: "+".join(c) or "none")
async def test_every_combination_of_special_parameters_runs(
    engine: Engine, specials: tuple[str, ...]
) -> None:
    done = await engine.run(_special_function(specials), {"a": 5})
    assert done.status == "completed", done.error
    expected = {"config": "Settings", "state": "Tally", "timestamp": "int", "context": "Context"}
    assert done.result == {"a": 5, **{name: expected[name] for name in specials}}


async def test_context_describes_the_run(engine: Engine) -> None:
    @taskloom.task
    async def introspect(context: taskloom.Context) -> dict[str, Any]:
        return {
            "run_id": context.run_id,
            "task": context.task,
            "attempt": context.attempt,
            "cancelled": context.cancelled,
        }

    done = await engine.run(introspect)
    assert done.result == {
        "run_id": done.id,
        "task": "introspect",
        "attempt": 1,
        "cancelled": False,
    }


# --- logs, progress, events -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_log_lines_of_a_run_are_stored(engine: Engine, kind: str) -> None:
    if kind == "sync":

        @taskloom.task(name="chatty")
        def chatty(context: taskloom.Context) -> None:
            context.logger.info("through the context")
            logging.getLogger("somebody.else").warning("through logging")

    else:

        @taskloom.task(name="chatty")
        async def chatty(context: taskloom.Context) -> None:
            context.logger.info("through the context")
            logging.getLogger("somebody.else").warning("through logging")

    logging.getLogger("somebody.else").warning("outside of any run")
    done = await engine.run(chatty)
    lines = await engine.get_logs(done.id)
    assert [(line.level, line.message) for line in lines] == [
        ("INFO", "through the context"),
        ("WARNING", "through logging"),
    ]
    assert {line.run_id for line in lines} == {done.id}
    assert {line.attempt for line in lines} == {1}
    assert lines[0].id is not None
    assert lines[1].id is not None
    assert lines[0].id < lines[1].id
    assert await engine.get_logs(done.id, after_id=lines[0].id) == lines[1:]


async def test_progress_is_stored_and_announced(engine: Engine) -> None:
    events: list[RunEvent] = []
    engine.add_listener(events.append)

    @taskloom.task
    def halfway(context: taskloom.Context) -> str:
        context.progress(0.5, "half way")
        return "done"

    done = await engine.run(halfway)
    assert done.progress == 0.5
    assert done.progress_message == "half way"
    stored = await engine.list_runs()
    assert stored[0].progress == 0.5
    assert stored[0].progress_message == "half way"
    progress = [e for e in events if e.kind == "progress"]
    assert len(progress) == 1
    assert progress[0].run.id == done.id
    assert progress[0].run.progress == 0.5


async def test_progress_is_clamped_to_zero_and_one(engine: Engine) -> None:
    @taskloom.task
    async def overshoot(context: taskloom.Context) -> None:
        context.progress(3.0)

    done = await engine.run(overshoot)
    assert done.progress == 1.0


async def test_listener_events_come_in_order(engine: Engine) -> None:
    events: list[RunEvent] = []
    remove = engine.add_listener(events.append)
    done = await engine.run(adder, {"a": 1, "b": 2})
    kinds = [e.kind for e in events if e.run.id == done.id]
    assert kinds == ["submitted", "started", "finished"]
    assert events[-1].run.status == "completed"
    assert events[-1].run.result == 3
    remove()
    await engine.run(adder, {"a": 1, "b": 2})
    assert len(events) == 3


async def test_a_retried_run_announces_each_attempt(engine: Engine) -> None:
    calls = 0

    @taskloom.task(retries=2, retry_backoff=0)
    async def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError(f"try {calls}")
        return calls

    events: list[RunEvent] = []
    engine.add_listener(events.append)
    done = await engine.run(flaky)
    assert done.status == "completed"
    assert done.result == 3
    assert done.attempts == 3
    assert [e.kind for e in events] == [
        "submitted",
        "started",
        "retrying",
        "started",
        "retrying",
        "started",
        "finished",
    ]
    attempts = await engine.get_attempts(done.id)
    assert [a.status for a in attempts] == ["failed", "failed", "completed"]
    assert attempts[0].error is not None
    assert attempts[0].error.message == "try 1"


async def test_a_failing_listener_does_not_break_the_engine(engine: Engine) -> None:
    def broken(event: RunEvent) -> None:
        raise RuntimeError("listener bug")

    engine.add_listener(broken)
    done = await engine.run(adder, {"a": 1, "b": 2})
    assert done.result == 3


# --- class tasks ---------------------------------------------------------------------------------


async def test_the_seed_greeting_executor_runs_unchanged(engine: Engine) -> None:
    load_helper("greeting_executor")  # its @executor_register() puts it in the registry
    done = await engine.run("greeting_executor", {"name": "Alice", "language": "en"})
    assert done.status == "completed"
    assert done.result == {"greeting": "Hello, Alice!", "name": "Alice", "language": "en"}
    french = await engine.run("greeting_executor", {"name": "Bob", "language": "fr"})
    assert french.result["greeting"] == "Bonjour, Bob!"


async def test_the_seed_executor_schema_is_enforced(engine: Engine) -> None:
    load_helper("greeting_executor")
    with pytest.raises(InputValidationError) as missing:
        await engine.submit("greeting_executor", {"language": "es"})
    assert [e.field for e in missing.value.errors] == ["name"]
    with pytest.raises(InputValidationError) as wrong:
        await engine.submit("greeting_executor", {"name": "Eve", "language": "de"})
    assert [e.field for e in wrong.value.errors] == ["language"]
    assert await engine.list_runs() == []
    defaulted = await engine.run("greeting_executor", {"name": "Eve"})
    assert defaulted.inputs == {"name": "Eve", "language": "en"}
    assert defaulted.result["language"] == "en"


class Recorded(taskloom.Task):
    """Resize something, recording what the engine calls."""

    id = "recorded"
    name = "Recorded task"
    calls: list[str] = []

    class Inputs(BaseModel):
        width: int
        fail: bool = False

    async def setup(self) -> None:
        self.calls.append("setup")

    async def execute(self, inputs: Any) -> dict[str, int]:
        self.calls.append(f"execute {inputs.width}")
        if inputs.fail:
            raise RuntimeError("resize failed")
        return {"width": inputs.width * 2}

    async def teardown(self) -> None:
        self.calls.append("teardown")


async def test_idiomatic_class_with_setup_and_teardown(engine: Engine) -> None:
    Recorded.calls = []
    done = await engine.run(Recorded, {"width": "21"})
    assert done.task == "recorded"
    assert done.status == "completed"
    assert done.result == {"width": 42}
    assert done.inputs == {"width": 21, "fail": False}
    assert Recorded.calls == ["setup", "execute 21", "teardown"]


async def test_teardown_runs_even_when_execute_fails(engine: Engine) -> None:
    Recorded.calls = []
    done = await engine.run(Recorded, {"width": 1, "fail": True})
    assert done.status == "failed"
    assert done.error is not None
    assert done.error.type == "RuntimeError"
    assert done.error.message == "resize failed"
    assert Recorded.calls == ["setup", "execute 1", "teardown"]


async def test_a_class_task_is_found_by_its_id(engine: Engine) -> None:
    engine.register(Recorded)
    Recorded.calls = []
    done = await engine.run("recorded", {"width": 2})
    assert done.result == {"width": 4}
    assert engine.task("recorded").label == "Recorded task"


async def test_a_class_returning_failed_status_fails_the_run(engine: Engine) -> None:
    class ReportsFailure(taskloom.Task):
        id = "reports_failure"

        async def execute(self, inputs: dict[str, Any]) -> dict[str, Any]:
            return {"status": "failed", "error": "disk full", "error_type": "io_error"}

    done = await engine.run(ReportsFailure, {})
    assert done.status == "failed"
    assert done.error is not None
    assert done.error.message == "disk full"
    assert done.error.type == "io_error"


async def test_a_class_reported_failure_is_retried(engine: Engine) -> None:
    class FailsOnce(taskloom.Task, retries=1, retry_backoff=0):
        id = "fails_once"

        async def execute(self, inputs: dict[str, Any]) -> dict[str, Any]:
            if self.context.attempt == 1:
                return {"status": "failed", "error": "busy", "error_type": "busy_error"}
            return {"status": "completed", "attempt": self.context.attempt}

    done = await engine.run(FailsOnce, {})
    assert done.status == "completed"
    assert done.attempts == 2
    attempts = await engine.get_attempts(done.id)
    assert attempts[0].error is not None
    assert (attempts[0].error.type, attempts[0].error.message) == ("busy_error", "busy")


async def test_a_class_returning_completed_status_keeps_its_result(engine: Engine) -> None:
    class Completes(taskloom.Task):
        id = "completes"

        async def execute(self, inputs: dict[str, Any]) -> dict[str, Any]:
            return {"status": "completed", "result": inputs.get("data", "none")}

    done = await engine.run(Completes, {"data": "x"})
    assert done.status == "completed"
    assert done.result == {"status": "completed", "result": "x"}


async def test_a_class_task_gets_its_context(engine: Engine) -> None:
    class Aware(taskloom.Task):
        id = "aware"

        async def execute(self, inputs: dict[str, Any]) -> dict[str, Any]:
            self.context.logger.info("hello from a class")
            return {"run_id": self.context.run_id}

    done = await engine.run(Aware, {})
    assert done.result == {"run_id": done.id}
    assert [line.message for line in await engine.get_logs(done.id)] == ["hello from a class"]


async def test_a_class_task_over_its_timeout_fails(engine: Engine) -> None:
    class Sluggish(taskloom.Task, timeout=0.1):
        id = "sluggish"
        torn_down = False

        async def execute(self, inputs: dict[str, Any]) -> dict[str, Any]:
            await asyncio.sleep(WAIT)
            return {}

        async def teardown(self) -> None:
            type(self).torn_down = True

    done = await engine.run(Sluggish, {})
    assert done.status == "failed"
    assert done.error is not None
    assert done.error.type == "TaskTimeoutError"
    assert Sluggish.torn_down


# --- limits ---------------------------------------------------------------------------------------


async def test_a_task_concurrency_limit_holds_its_runs_but_not_others(engine: Engine) -> None:
    gate = asyncio.Event()
    two_in = asyncio.Event()
    active = 0
    most = 0

    @taskloom.task(concurrency=2)
    async def limited(i: int) -> int:
        nonlocal active, most
        active += 1
        most = max(most, active)
        if active == 2:
            two_in.set()
        await gate.wait()
        active -= 1
        return i

    try:
        runs = [await engine.submit(limited, {"i": i}) for i in range(6)]
        await asyncio.wait_for(two_in.wait(), WAIT)
        # Another task is not held up by the runs parked behind the limit.
        assert (await engine.run(async_adder, {"a": 1, "b": 2})).result == 3
        assert active == 2
        statuses = [(await engine.get_run(r.id)).status for r in runs]
        assert statuses == ["running"] * 2 + ["pending"] * 4
    finally:
        gate.set()
    done = await engine.wait_many([r.id for r in runs], timeout=WAIT)
    assert [r.result for r in done] == list(range(6))
    assert most == 2


async def test_the_engine_concurrency_limit() -> None:
    gate = asyncio.Event()
    entered: list[int] = []
    three_in = asyncio.Event()

    @taskloom.task
    async def held(i: int) -> int:
        entered.append(i)
        if len(entered) == 3:
            three_in.set()
        await gate.wait()
        return i

    async with Engine("memory://", concurrency=3, shutdown_grace=1.0) as engine:
        try:
            runs = [await engine.submit(held, {"i": i}) for i in range(7)]
            await asyncio.wait_for(three_in.wait(), WAIT)
            assert len(await engine.list_runs(status="running")) == 3
            assert len(await engine.list_runs(status="pending")) == 4
            assert entered == [0, 1, 2]
        finally:
            gate.set()
        done = await engine.wait_many([r.id for r in runs], timeout=WAIT)
        assert [r.result for r in done] == list(range(7))
        assert entered == list(range(7))


# --- cancellation --------------------------------------------------------------------------------


async def test_a_task_that_ignores_cancellation_is_cancelled_after_the_grace() -> None:
    started = asyncio.Event()
    ignored = asyncio.Event()
    finish = asyncio.Event()
    returned = asyncio.Event()

    @taskloom.task
    async def stubborn() -> str:
        started.set()
        try:
            await asyncio.sleep(WAIT * 3)
        except asyncio.CancelledError:
            ignored.set()  # and go on regardless
        await finish.wait()
        returned.set()
        return "late"

    async with Engine("memory://", cancel_grace=0.1, shutdown_grace=1.0) as engine:
        run = await engine.submit(stubborn)
        await asyncio.wait_for(started.wait(), WAIT)
        cancelled = await asyncio.wait_for(engine.cancel(run.id), WAIT)
        assert cancelled.status == "cancelled"
        assert ignored.is_set()
        # Its slot is free again, and what it returns later is discarded.
        assert (await engine.run(async_adder, {"a": 1, "b": 1})).result == 2
        finish.set()
        await asyncio.wait_for(returned.wait(), WAIT)
        assert (await engine.get_run(run.id)).status == "cancelled"
        assert (await engine.get_run(run.id)).result is None
