"""An attempt is on record before the task's code runs, on every executor.

Each task reads its own run through a second store on the same database, from inside its
body: the run is already `running` with its attempt counted and the attempt's row written.
So a process killed at any moment never leaves an execution that began uncounted, and
another process that looks at the run while the body runs sees it running.
"""

from __future__ import annotations

from typing import Any

import pytest

import taskloom
from taskloom import Context, Engine
from taskloom.store import SqlStore, Store

pytestmark = pytest.mark.timeout(60)

observer: list[Store] = []


def _seen(context: Context) -> dict[str, Any]:
    store = observer[0]
    run = store.get_run(context.run_id)
    assert run is not None
    attempts = store.get_attempts(context.run_id)
    return {
        "status": run.status.value,
        "attempts": run.attempts,
        "rows": [(a.number, a.status) for a in attempts],
    }


@taskloom.task
async def on_the_loop(context: Context) -> dict[str, Any]:
    return _seen(context)


@taskloom.task(thread_safe=True)
def in_the_pool(context: Context) -> dict[str, Any]:
    return _seen(context)


@taskloom.task
def in_its_own_thread(context: Context) -> dict[str, Any]:
    return _seen(context)


@taskloom.task(inline=True)
def inline_on_the_loop(context: Context) -> dict[str, Any]:
    return _seen(context)


@taskloom.task(retries=1, retry_backoff=0.01, retry_jitter=False)
async def second_attempt(context: Context) -> dict[str, Any]:
    if context.attempt == 1:
        raise RuntimeError("first attempt fails")
    return _seen(context)


@pytest.mark.parametrize(
    "task", [on_the_loop, in_the_pool, in_its_own_thread, inline_on_the_loop], ids=lambda t: t.name
)
async def test_the_start_is_committed_before_the_body_runs(database_url: str, task: Any) -> None:
    store = SqlStore(database_url if "://" in database_url else f"sqlite:///{database_url}")
    async with Engine(database_url) as engine:
        store.open()
        observer[:] = [store]
        try:
            runs = [await engine.submit(task) for _ in range(5)]
            done = await engine.wait_many([r.id for r in runs], timeout=30)
        finally:
            store.close()
    for run in done:
        assert run.status == "completed", run.error
        assert run.result == {"status": "running", "attempts": 1, "rows": [[1, "running"]]}


async def test_a_retry_is_on_record_before_it_runs(database_url: str) -> None:
    store = SqlStore(database_url if "://" in database_url else f"sqlite:///{database_url}")
    async with Engine(database_url) as engine:
        store.open()
        observer[:] = [store]
        try:
            run = await engine.run(second_attempt)
        finally:
            store.close()
    assert run.result == {
        "status": "running",
        "attempts": 2,
        "rows": [[1, "failed"], [2, "running"]],
    }
