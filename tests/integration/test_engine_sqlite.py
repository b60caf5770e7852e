"""The engine on a real database: a SQLite file, and PostgreSQL when it is reachable.

Retries and backoff, timeouts, cancellation, priorities, idempotency, and what stays in
the database for another process to read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

import taskloom
from support import WAIT, in_thread_wait
from taskloom import Engine, InputValidationError, RunStatus
from taskloom.store import open_store

EPSILON = 0.01  # clock granularity allowed when comparing stored times

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[Engine]:
    async with Engine(database_url, shutdown_grace=1.0) as running:
        yield running


async def stored(engine: Engine, run_id: str) -> taskloom.Run:
    """The run as the database has it (not the engine's memory)."""
    await engine.flush()
    assert engine.store is not None
    found = await asyncio.to_thread(engine.store.get_run, run_id)
    assert found is not None
    return found


@taskloom.task
def adder(a: int, b: int) -> int:
    return a + b


# --- retries ---------------------------------------------------------------------------------


async def test_a_persistent_failure_uses_every_retry(engine: Engine) -> None:
    @taskloom.task(retries=2, retry_backoff=0.01)
    async def always_fails(context: taskloom.Context) -> None:
        raise ValueError(f"failure {context.attempt}")

    done = await engine.run(always_fails)
    assert done.status == "failed"
    assert done.attempts == 3
    assert done.error is not None
    assert done.error.type == "ValueError"
    assert done.error.message == "failure 3"
    attempts = await engine.get_attempts(done.id)
    assert [a.number for a in attempts] == [1, 2, 3]
    assert [a.status for a in attempts] == ["failed"] * 3
    assert [a.error.message if a.error else None for a in attempts] == [
        "failure 1",
        "failure 2",
        "failure 3",
    ]
    assert all(a.error is not None and a.error.type == "ValueError" for a in attempts)
    persisted = await stored(engine, done.id)
    assert persisted.status == "failed"
    assert persisted.attempts == 3
    assert persisted.max_attempts == 3


async def test_a_retry_that_succeeds_completes_the_run(engine: Engine) -> None:
    @taskloom.task(retries=3, retry_backoff=0.01)
    def second_time_lucky(context: taskloom.Context) -> int:
        if context.attempt < 2:
            raise ConnectionError("not yet")
        return context.attempt

    done = await engine.run(second_time_lucky)
    assert done.status == "completed"
    assert done.result == 2
    assert done.attempts == 2
    assert done.error is None
    persisted = await stored(engine, done.id)
    assert persisted.status == "completed"
    assert persisted.error is None
    assert [a.status for a in await engine.get_attempts(done.id)] == ["failed", "completed"]


async def test_backoff_is_respected(engine: Engine) -> None:
    @taskloom.task(retries=2, retry_backoff=0.2, retry_backoff_factor=2)
    async def slow_to_recover() -> None:
        raise RuntimeError("down")

    done = await engine.run(slow_to_recover)
    attempts = await engine.get_attempts(done.id)
    assert len(attempts) == 3
    # With jitter the delay before attempt n+1 is within [d/2, d], d = 0.2 * 2 ** (n-1).
    for previous, following, full in zip(attempts[:-1], attempts[1:], (0.2, 0.4), strict=True):
        assert previous.finished_at is not None
        gap = following.started_at - previous.finished_at
        assert gap >= full / 2 - EPSILON, (gap, full)


async def test_raise_retry_with_a_delay_is_honoured(engine: Engine) -> None:
    # The task's own backoff is long: only honouring Retry(delay=...) finishes in time.
    @taskloom.task(retries=1, retry_backoff=30)
    async def asks_to_wait(context: taskloom.Context) -> str:
        if context.attempt == 1:
            raise taskloom.Retry("rate limited", delay=0.3)
        return "served"

    run = await engine.submit(asks_to_wait)
    done = await engine.wait(run.id, timeout=WAIT)
    assert done.status == "completed"
    assert done.result == "served"
    assert done.attempts == 2
    first, second = await engine.get_attempts(run.id)
    assert first.error is not None
    assert first.error.type == "Retry"
    assert first.error.message == "rate limited"
    assert first.finished_at is not None
    assert second.started_at - first.finished_at >= 0.3 - EPSILON


async def test_retry_on_restricts_which_errors_retry(engine: Engine) -> None:
    @taskloom.task(retries=3, retry_backoff=0, retry_on=ConnectionError)
    def picky(kind: str, context: taskloom.Context) -> int:
        if context.attempt == 1:
            raise ConnectionError("flaky") if kind == "connection" else ValueError("bad data")
        return context.attempt

    not_retried = await engine.run(picky, {"kind": "value"})
    assert not_retried.status == "failed"
    assert not_retried.attempts == 1
    assert not_retried.error is not None
    assert not_retried.error.type == "ValueError"
    retried = await engine.run(picky, {"kind": "connection"})
    assert retried.status == "completed"
    assert retried.attempts == 2


# --- timeouts --------------------------------------------------------------------------------


async def test_an_async_task_over_its_timeout_fails(engine: Engine) -> None:
    @taskloom.task(timeout=0.2)
    async def too_slow() -> str:
        await asyncio.sleep(WAIT)
        return "never"

    done = await engine.run(too_slow)
    assert done.status == "failed"
    assert done.error is not None
    assert done.error.type == "TaskTimeoutError"
    assert "'too_slow'" in done.error.message
    assert done.id in done.error.message
    assert "attempt 1" in done.error.message
    assert done.result is None
    persisted = await stored(engine, done.id)
    assert persisted.error is not None
    assert persisted.error.type == "TaskTimeoutError"


async def test_a_sync_task_over_its_timeout_fails_and_its_late_result_is_discarded(
    engine: Engine,
) -> None:
    release = threading.Event()
    returned = threading.Event()

    @taskloom.task(timeout=0.2)
    def stuck(block: bool) -> str:
        if block:
            release.wait(WAIT)
            returned.set()
            return "late"
        return "quick"

    try:
        timed_out = await engine.run(stuck, {"block": True})
        assert timed_out.status == "failed"
        assert timed_out.error is not None
        assert timed_out.error.type == "TaskTimeoutError"
        assert timed_out.id in timed_out.error.message
        assert "'stuck'" in timed_out.error.message
    finally:
        release.set()
    await in_thread_wait(returned)
    # Calls of this task run one after another: once the next run is done, the late
    # result of the first one has been handed back (and must have been ignored).
    after = await engine.run(stuck, {"block": False})
    assert after.status == "completed"
    assert after.result == "quick"
    persisted = await stored(engine, timed_out.id)
    assert persisted.status == "failed"
    assert persisted.result is None
    assert persisted.error is not None
    assert persisted.error.type == "TaskTimeoutError"


async def test_a_thread_safe_sync_task_over_its_timeout_fails(engine: Engine) -> None:
    release = threading.Event()

    @taskloom.task(timeout=0.2, thread_safe=True)
    def stuck_in_pool() -> str:
        release.wait(WAIT)
        return "late"

    try:
        done = await engine.run(stuck_in_pool)
    finally:
        release.set()
    assert done.status == "failed"
    assert done.error is not None
    assert done.error.type == "TaskTimeoutError"
    assert "attempt 1" in done.error.message


async def test_waiting_behind_an_abandoned_call_does_not_use_up_a_timeout(
    engine: Engine,
) -> None:
    # A timed-out sync call cannot be killed: it goes on in its thread. The next run of
    # the task may wait for it, but its timeout counts its own execution only.
    release = threading.Event()

    @taskloom.task(timeout=0.2)
    def sometimes_stuck(block: bool) -> str:
        if block:
            release.wait(WAIT)
            return "late"
        return "quick"

    try:
        abandoned = await engine.run(sometimes_stuck, {"block": True})
        assert abandoned.error is not None
        assert abandoned.error.type == "TaskTimeoutError"
        following = await engine.submit(sometimes_stuck, {"block": False})
        # Longer than the timeout: enough for a wrong clock to run out.
        with contextlib.suppress(taskloom.WaitTimeoutError):
            await engine.wait(following.id, timeout=0.6)
    finally:
        release.set()
    done = await engine.wait(following.id, timeout=WAIT)
    assert done.status == "completed", done.error
    assert done.result == "quick"


async def test_timeouts_with_retries_make_more_attempts(engine: Engine) -> None:
    @taskloom.task(timeout=0.1, retries=2, retry_backoff=0)
    async def always_slow() -> None:
        await asyncio.sleep(WAIT)

    done = await engine.run(always_slow)
    assert done.status == "failed"
    assert done.attempts == 3
    attempts = await engine.get_attempts(done.id)
    assert [a.error.type if a.error else None for a in attempts] == ["TaskTimeoutError"] * 3
    for number, attempt in enumerate(attempts, start=1):
        assert attempt.error is not None
        assert f"attempt {number}" in attempt.error.message


# --- cancellation ------------------------------------------------------------------------------


async def test_cancelling_a_running_async_run(engine: Engine) -> None:
    started = asyncio.Event()
    stopped = asyncio.Event()

    @taskloom.task
    async def long_haul() -> str:
        started.set()
        try:
            await asyncio.sleep(WAIT * 3)
        except asyncio.CancelledError:
            stopped.set()
            raise
        return "finished"

    run = await engine.submit(long_haul)
    await asyncio.wait_for(started.wait(), WAIT)
    cancelled = await engine.cancel(run.id)
    assert cancelled.status == "cancelled"
    assert cancelled.cancel_requested is True
    assert stopped.is_set()
    assert (await engine.wait(run.id, timeout=WAIT)).status == "cancelled"
    persisted = await stored(engine, run.id)
    assert persisted.status == "cancelled"
    assert persisted.cancel_requested is True
    assert persisted.finished_at is not None
    assert [a.status for a in await engine.get_attempts(run.id)] == ["cancelled"]


async def test_a_sync_run_in_a_thread_sees_the_cancellation(engine: Engine) -> None:
    started = threading.Event()
    finished = threading.Event()
    seen: dict[str, bool] = {}

    @taskloom.task
    def cooperative(block: bool, context: taskloom.Context) -> str:
        if not block:
            return "next"
        started.set()
        seen["waited"] = context.wait_cancelled(WAIT)
        seen["cancelled"] = context.cancelled
        finished.set()
        return "late result"

    run = await engine.submit(cooperative, {"block": True})
    await in_thread_wait(started)
    cancelled = await engine.cancel(run.id)
    assert cancelled.status == "cancelled"
    await in_thread_wait(finished)
    assert seen == {"waited": True, "cancelled": True}
    # The next call of this (serial) task is handed back after the late result.
    assert (await engine.run(cooperative, {"block": False})).result == "next"
    persisted = await stored(engine, run.id)
    assert persisted.status == "cancelled"
    assert persisted.result is None
    assert persisted.cancel_requested is True


class Interruptible(taskloom.Task):
    """Waits until `cancel()` is called (the aipartnerupflow cancellation shape)."""

    id = "interruptible"
    started: asyncio.Event
    cancel_calls: list[str] = []

    async def execute(self, inputs: dict[str, Any]) -> dict[str, Any]:
        self._stop = asyncio.Event()
        type(self).started.set()
        await asyncio.wait_for(self._stop.wait(), WAIT)
        return {"status": "cancelled", "message": "stopped on request"}

    async def cancel(self) -> dict[str, Any]:
        self.cancel_calls.append(self.context.run_id)
        self.context.logger.info("cancel asked for")
        logging.getLogger("vendor.driver").warning("closing the connection")
        self._stop.set()
        return {"status": "cancelled", "message": "Cancellation requested"}


async def test_a_class_task_cancel_method_is_called(engine: Engine) -> None:
    Interruptible.started = asyncio.Event()
    Interruptible.cancel_calls = []
    run = await engine.submit(Interruptible, {})
    await asyncio.wait_for(Interruptible.started.wait(), WAIT)
    cancelled = await engine.cancel(run.id)
    assert cancelled.status == "cancelled"
    assert Interruptible.cancel_calls == [run.id]
    persisted = await stored(engine, run.id)
    assert persisted.status == "cancelled"
    assert persisted.result is None
    # What cancel() logs is the run's, as what execute() logs is.
    lines = [(line.level, line.message) for line in await engine.get_logs(run.id)]
    assert ("INFO", "cancel asked for") in lines
    assert ("WARNING", "closing the connection") in lines


class IgnoresCancel(taskloom.Task):
    """Its `cancel()` does nothing: the engine stops it after `cancel_grace`."""

    id = "ignores_cancel"
    started: asyncio.Event
    cancel_calls = 0

    async def execute(self, inputs: dict[str, Any]) -> dict[str, Any]:
        type(self).started.set()
        await asyncio.sleep(WAIT * 3)
        return {"status": "completed"}

    async def cancel(self) -> None:
        type(self).cancel_calls += 1


async def test_a_class_task_whose_cancel_does_not_stop_it(database_url: str) -> None:
    IgnoresCancel.started = asyncio.Event()
    IgnoresCancel.cancel_calls = 0
    async with Engine(database_url, cancel_grace=0.1, shutdown_grace=1.0) as engine:
        run = await engine.submit(IgnoresCancel, {})
        await asyncio.wait_for(IgnoresCancel.started.wait(), WAIT)
        cancelled = await asyncio.wait_for(engine.cancel(run.id), WAIT)
        assert cancelled.status == "cancelled"
        assert IgnoresCancel.cancel_calls == 1
        assert (await stored(engine, run.id)).status == "cancelled"


async def test_a_queued_run_cancelled_before_it_starts_never_executes(database_url: str) -> None:
    release = asyncio.Event()
    executed: list[str] = []

    @taskloom.task
    async def blocker() -> None:
        await release.wait()

    @taskloom.task
    async def record(label: str) -> str:
        executed.append(label)
        return label

    async with Engine(database_url, concurrency=1, shutdown_grace=1.0) as engine:
        holding = await engine.submit(blocker)
        try:
            victim = await engine.submit(record, {"label": "victim"})
            assert (await engine.get_run(victim.id)).status == "pending"
            cancelled = await engine.cancel(victim.id)
            assert cancelled.status == "cancelled"
        finally:
            release.set()
        await engine.wait(holding.id, timeout=WAIT)
        # A later run of the same task goes through: the cancelled one had its chance.
        assert (await engine.run(record, {"label": "after"})).result == "after"
        assert executed == ["after"]
        persisted = await stored(engine, victim.id)
        assert persisted.status == "cancelled"
        assert persisted.cancel_requested is True
        assert persisted.attempts == 0
        assert await engine.get_attempts(victim.id) == []


async def test_cancelling_a_finished_run_returns_it_unchanged(engine: Engine) -> None:
    done = await engine.run(adder, {"a": 2, "b": 3})
    again = await engine.cancel(done.id)
    assert again.status == "completed"
    assert again.result == 5
    assert again.cancel_requested is False
    assert again.finished_at == pytest.approx(done.finished_at)
    persisted = await stored(engine, done.id)
    assert persisted.status == "completed"
    assert persisted.cancel_requested is False


# --- priorities -----------------------------------------------------------------------------------


async def test_higher_priority_runs_first(database_url: str) -> None:
    release = asyncio.Event()
    order: list[int] = []

    @taskloom.task
    async def blocker() -> None:
        await release.wait()

    @taskloom.task
    async def record(p: int) -> int:
        order.append(p)
        return p

    @taskloom.task(priority=7)
    async def important(p: int) -> int:
        order.append(p)
        return p

    async with Engine(database_url, concurrency=1, shutdown_grace=1.0) as engine:
        holding = await engine.submit(blocker)
        try:
            runs = [await engine.submit(record, {"p": p}, priority=p) for p in (0, 5, -1, 10)]
            runs.append(await engine.submit(important, {"p": 7}))  # the task's default
            assert runs[-1].priority == 7
        finally:
            release.set()
        await engine.wait(holding.id, timeout=WAIT)
        done = await engine.wait_many([r.id for r in runs], timeout=WAIT)
        assert [r.status for r in done] == ["completed"] * 5
        assert order == [10, 7, 5, 0, -1]
        assert [(await stored(engine, r.id)).priority for r in runs] == [0, 5, -1, 10, 7]


# --- idempotency ----------------------------------------------------------------------------------


async def test_the_same_idempotency_key_gives_the_same_run(engine: Engine) -> None:
    calls: list[int] = []

    @taskloom.task
    async def once(n: int) -> int:
        calls.append(n)
        return n

    first = await engine.submit(once, {"n": 1}, idempotency_key="order-42")
    second = await engine.submit(once, {"n": 1}, idempotency_key="order-42")
    assert second.id == first.id
    assert (await engine.wait(first.id, timeout=WAIT)).result == 1
    third = await engine.submit(once, {"n": 1}, idempotency_key="order-42")
    assert third.id == first.id
    assert third.status == "completed"
    await engine.flush()
    assert calls == [1]
    assert [r.id for r in await engine.list_runs()] == [first.id]


async def test_concurrent_submits_with_one_key_make_one_run(engine: Engine) -> None:
    calls: list[int] = []

    @taskloom.task
    async def once(n: int) -> int:
        calls.append(n)
        return n

    runs = await asyncio.gather(
        *(engine.submit(once, {"n": 7}, idempotency_key="same") for _ in range(10))
    )
    assert len({r.id for r in runs}) == 1
    done = await engine.wait(runs[0].id, timeout=WAIT)
    assert done.result == 7
    assert calls == [7]
    assert len(await engine.list_runs()) == 1


async def test_a_listing_read_while_a_run_ends_shows_the_end_once_it_is_committed(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listing reads the store without waiting for the writer, then lays the engine's
    own records over what it read. A run whose end was committed while the read went on
    shows that end, not the row read before it (it is no longer held by then)."""
    release = asyncio.Event()

    @taskloom.task
    async def held(n: int) -> int:
        await release.wait()
        return n

    run = await engine.submit(held, {"n": 3})
    assert engine.store is not None
    read, read_done, go_on = engine.store.list_runs, threading.Event(), threading.Event()

    def slow_read(**options: Any) -> list[taskloom.Run]:
        rows = read(**options)
        read_done.set()
        go_on.wait(WAIT)  # the run ends, and its end is committed, meanwhile
        return rows

    running = await engine.list_runs()
    assert [r.status for r in running] == [RunStatus.RUNNING]
    monkeypatch.setattr(engine.store, "list_runs", slow_read)
    listing = asyncio.ensure_future(engine.list_runs())
    assert await asyncio.to_thread(read_done.wait, WAIT)
    release.set()
    ended = await engine.wait(run.id, timeout=WAIT)  # returns once the end is committed
    assert ended.status == RunStatus.COMPLETED
    go_on.set()
    [found] = await listing
    assert (found.id, found.status, found.result) == (run.id, RunStatus.COMPLETED, 3)


async def test_the_key_holds_across_engines_on_one_database(database_url: str) -> None:
    async with Engine(database_url) as first_engine:
        first = await first_engine.run(adder, {"a": 1, "b": 1}, idempotency_key="k")
    async with Engine(database_url) as second_engine:
        second = await second_engine.submit(adder, {"a": 1, "b": 1}, idempotency_key="k")
        assert second.id == first.id
        assert len(await second_engine.list_runs()) == 1


# --- validation and durability ------------------------------------------------------------------


async def test_nothing_is_recorded_for_invalid_input(engine: Engine) -> None:
    with pytest.raises(InputValidationError) as info:
        await engine.submit(adder, {"a": "one", "b": 2})
    assert [e.field for e in info.value.errors] == ["a"]
    with pytest.raises(InputValidationError):
        await engine.submit(adder, {"a": 1})
    with pytest.raises(InputValidationError):
        await engine.submit(adder, {"a": 1, "b": 2, "c": 3})
    assert await engine.list_runs() == []


READER = """
import json, sys
from taskloom.store import open_store

store = open_store(sys.argv[1])
try:
    runs = store.list_runs(limit=1000)
    print(json.dumps({r.id: [r.status.value, r.result, r.attempts] for r in runs}))
finally:
    store.close()
"""


async def test_runs_outlive_the_engine_and_are_read_by_another_process(
    database_url: str,
) -> None:
    @taskloom.task
    def noisy(n: int, context: taskloom.Context) -> int:
        context.logger.warning("working on %d", n)
        if n < 0:
            raise ValueError("negative")
        return n * 10

    async with Engine(database_url) as engine:
        runs = [await engine.submit(noisy, {"n": n}) for n in (1, 2, -1)]
        await engine.wait_many([r.id for r in runs], timeout=WAIT)
    ok, _, bad = runs

    store = await asyncio.to_thread(open_store, database_url)
    try:
        again = await asyncio.to_thread(store.get_run, ok.id)
        assert again is not None
        assert again.status == RunStatus.COMPLETED
        assert again.result == 10
        assert again.inputs == {"n": 1}
        assert again.task == "noisy"
        failed = await asyncio.to_thread(store.get_run, bad.id)
        assert failed is not None
        assert failed.status == "failed"
        assert failed.error is not None
        assert failed.error.message == "negative"
        listed = await asyncio.to_thread(store.list_runs)
        assert [r.id for r in listed] == [r.id for r in reversed(runs)]
        logs = await asyncio.to_thread(store.get_logs, ok.id)
        assert [line.message for line in logs] == ["working on 1"]
        attempts = await asyncio.to_thread(store.get_attempts, bad.id)
        assert [a.status for a in attempts] == ["failed"]
    finally:
        await asyncio.to_thread(store.close)

    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        READER,
        database_url,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(child.communicate(), 30)
    assert child.returncode == 0, err.decode()
    seen = json.loads(out)
    assert seen == {
        runs[0].id: ["completed", 10, 1],
        runs[1].id: ["completed", 20, 1],
        runs[2].id: ["failed", None, 1],
    }


async def test_a_later_engine_reads_and_waits_on_earlier_runs(database_url: str) -> None:
    async with Engine(database_url) as engine:
        done = await engine.run(adder, {"a": 20, "b": 22})
    async with Engine(database_url) as later:
        assert (await later.get_run(done.id)).result == 42
        assert (await later.wait(done.id, timeout=WAIT)).status == "completed"
        cancelled = await later.cancel(done.id)
        assert cancelled.status == "completed"


async def test_cancelling_a_run_that_waits_for_a_retry(engine: Engine) -> None:
    retrying = asyncio.Event()
    engine.add_listener(lambda event: retrying.set() if event.kind == "retrying" else None)

    @taskloom.task(retries=1, retry_backoff=30, retry_jitter=False)
    async def fails_once() -> None:
        raise ConnectionError("unreachable")

    run = await engine.submit(fails_once)
    await asyncio.wait_for(retrying.wait(), WAIT)
    cancelled = await engine.cancel(run.id)
    assert cancelled.status == "cancelled"
    assert cancelled.attempts == 1
    persisted = await stored(engine, run.id)
    assert persisted.status == "cancelled"
    assert [a.status for a in await engine.get_attempts(run.id)] == ["failed"]


async def test_a_run_executing_in_another_engine_is_stopped_by_its_owner(
    database_url: str,
) -> None:
    started = asyncio.Event()

    @taskloom.task
    async def held_elsewhere() -> str:
        started.set()
        await asyncio.sleep(WAIT * 3)
        return "finished"

    async with (
        Engine(database_url, heartbeat_interval=0.05, shutdown_grace=1.0) as owner,
        Engine(database_url, shutdown_grace=1.0) as other,
    ):
        run = await owner.submit(held_elsewhere)
        await asyncio.wait_for(started.wait(), WAIT)
        requested = await other.cancel(run.id)
        # The other engine only records the request: the owner is alive and stops it (the
        # request's commit wakes it, so it may have done so already).
        assert requested.status in ("running", "cancelled")
        assert requested.cancel_requested is True
        done = await owner.wait(run.id, timeout=WAIT)
        assert done.status == "cancelled"
        seen = await other.wait(run.id, timeout=WAIT)
        assert seen.status == "cancelled"


async def test_runs_interrupted_by_shutdown_go_to_the_next_engine_without_a_retry(
    database_url: str,
) -> None:
    started = asyncio.Event()

    @taskloom.task
    async def patient(context: taskloom.Context) -> int:
        if context.attempt == 1:
            started.set()
            await asyncio.sleep(WAIT * 3)
        return context.attempt

    async with Engine(database_url, shutdown_grace=0.05) as first:
        run = await first.submit(patient)
        await asyncio.wait_for(started.wait(), WAIT)
    left = await asyncio.to_thread(_read_run, database_url, run.id)
    assert left.status == "pending"
    assert left.attempts == 1

    async with Engine(database_url, tasks=[patient], shutdown_grace=1.0) as second:
        done = await second.wait(run.id, timeout=WAIT)
        assert done.status == "completed"
        assert done.result == 2
        assert done.attempts == 2
        attempts = await second.get_attempts(run.id)
        assert [a.status for a in attempts] == ["interrupted", "completed"]
        assert attempts[1].worker_id == second.worker_id


def _read_run(url: str, run_id: str) -> taskloom.Run:
    store = open_store(url)
    try:
        found = store.get_run(run_id)
        assert found is not None
        return found
    finally:
        store.close()
