"""Every attempt records what made its call: the built-in executor's name, as the engine
chose it, on SQLite and PostgreSQL. (A Dask cluster's address is recorded as `dask
tcp://...`: see `tests/e2e/test_dask_cli.py` and `tests/browser/test_dashboard_dask.py`.)"""

from __future__ import annotations

from typing import Any

import pytest

import taskloom
from taskloom import Engine

pytestmark = pytest.mark.timeout(60)


@taskloom.task
async def on_the_loop() -> str:
    return "loop"


@taskloom.task(inline=True)
def inline_on_the_loop() -> str:
    return "inline"


@taskloom.task(thread_safe=True)
def in_the_pool() -> str:
    return "thread"


@taskloom.task
def in_its_own_thread() -> str:
    return "serial"


@taskloom.task(executor="dask")
def dask_without_a_scheduler() -> str:
    """Made in this process, in its own thread, when the engine has no Dask scheduler."""
    return "serial"


@taskloom.task(retries=2, retry_backoff=0.01, retry_jitter=False)
def fails_twice(context: taskloom.Context) -> int:
    if context.attempt < 3:
        raise RuntimeError(f"attempt {context.attempt} fails")
    return context.attempt


TASKS = [on_the_loop, inline_on_the_loop, in_the_pool, in_its_own_thread]


@pytest.mark.parametrize("task", [*TASKS, dask_without_a_scheduler], ids=lambda t: t.name)
async def test_each_attempt_names_its_executor(database_url: str, task: Any) -> None:
    async with Engine(database_url, tasks=[task]) as engine:
        runs = await engine.submit_many(task, [{} for _ in range(200)])
        done = await engine.wait_many([r.id for r in runs], timeout=30)
        attempts = [await engine.get_attempts(r.id) for r in done]
    assert {run.status for run in done} == {"completed"}
    expected = done[0].result
    # Quick calls too: every run's one attempt, begun and ended, says it.
    assert {(a.executor, a.dashboard) for tries in attempts for a in tries} == {(expected, None)}
    assert [len(tries) for tries in attempts] == [1] * 200


async def test_every_retry_names_its_executor(database_url: str) -> None:
    async with Engine(database_url, tasks=[fails_twice]) as engine:
        run = await engine.run(fails_twice)
        attempts = await engine.get_attempts(run.id)
    assert run.result == 3
    assert [(a.status, a.executor) for a in attempts] == [
        ("failed", "serial"),
        ("failed", "serial"),
        ("completed", "serial"),
    ]
