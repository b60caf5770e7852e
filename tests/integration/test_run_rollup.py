"""The rollup of run ends on a database upgraded to it: the runs that finished in the last
seven days before migration 0012 are counted, older ones are not; and the ends that two
`taskloom worker` processes commit at the same time add up."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from queue_workers import queue_tasks
from queue_workers.workers import Worker
from sqlalchemy import create_engine, text

from support import SQL_KINDS, database_for
from taskloom import Engine
from taskloom.runs import RunStatus
from taskloom.store import SqlStore
from taskloom.store.migrate import upgrade
from taskloom.store.stats import window_span

pytestmark = pytest.mark.timeout(60)

#: (id, task, status, started seconds ago, finished seconds ago)
OLD_RUNS = [
    ("fast-1", "fast", "completed", 30.2, 30.0),
    ("fast-2", "fast", "completed", 120.4, 120.0),
    ("fast-3", "fast", "failed", 4000.8, 4000.0),
    ("never", "slow", "cancelled", None, 50.0),
    ("days", "slow", "completed", 3 * 86400 + 9, 3 * 86400),
    ("weeks", "slow", "completed", 8 * 86400 + 9, 8 * 86400),  # before the longest window
    ("waiting", "slow", "pending", None, None),
]


@pytest.mark.parametrize("kind", SQL_KINDS)
def test_runs_that_ended_before_the_rollup_existed_are_counted_for_a_week(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = database_for(kind, tmp_path, request)
    upgrade(url, "0011")
    now = time.time()
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for run_id, task, status, started, finished in OLD_RUNS:
                conn.execute(
                    text(
                        "INSERT INTO runs (id, task, status, priority, inputs, attempts, "
                        "max_attempts, created_at, started_at, finished_at, cancel_requested) "
                        "VALUES (:id, :task, :status, 0, '{}', 1, 1, 1.0, :started, :finished, "
                        "false)"
                    ),
                    {
                        "id": run_id,
                        "task": task,
                        "status": status,
                        "started": None if started is None else now - started,
                        "finished": None if finished is None else now - finished,
                    },
                )
    finally:
        engine.dispose()
    store = SqlStore(url)  # upgrades on open, and fills the rollup
    store.open()
    try:
        since, bucket = window_span("1h", now)
        hour = store.run_stats(since=since, until=now + 1, bucket_seconds=bucket)
        assert hour.totals == {"completed": 2, "failed": 0, "cancelled": 1, "finished": 3}
        fast = {t.task: t for t in hour.tasks}["fast"]
        assert fast.max_seconds == pytest.approx(0.4, rel=1e-6)
        since, bucket = window_span("7d", now)
        week = store.run_stats(since=since, until=now + 1, bucket_seconds=bucket)
        assert week.totals == {"completed": 3, "failed": 1, "cancelled": 1, "finished": 5}
        assert {t.task: t.finished for t in week.tasks} == {"fast": 3, "slow": 2}
        assert week.pending == 1
    finally:
        store.close()


async def test_ends_that_two_worker_processes_commit_at_once_add_up(database_url: str) -> None:
    count = 600
    async with Engine(database_url, worker=False, tasks=[queue_tasks]) as engine:
        workers = [Worker(database_url, concurrency=50, name=f"w{i}") for i in range(2)]
        try:
            for worker in workers:
                await worker.ready()
            runs = await engine.submit_many(
                "tick", [{"index": i, "pause": 0.02} for i in range(count)]
            )
            done = await engine.wait_many([run.id for run in runs], timeout=60)
            assert {run.status for run in done} == {RunStatus.COMPLETED}
            for worker in workers:
                assert await worker.stop() == 0
        finally:
            for worker in workers:
                worker.kill()
        executed_by = {run.worker_id for run in done}
        assert len(executed_by) == 2  # both processes ended some of them
        stats = await engine.stats("15m")
    assert stats.totals == {"completed": count, "failed": 0, "cancelled": 0, "finished": count}
    [tick] = stats.tasks
    assert (tick.task, tick.completed) == ("tick", count)
