"""The database as the queue: `taskloom worker` processes on one database share the runs.

Real worker processes on a SQLite file and on PostgreSQL: they drain what another process
submitted while one is killed with SIGKILL and (on PostgreSQL) another is paused with
SIGSTOP past its lease; priority order and a task's concurrency limit hold across them; a
cancel from another process reaches the worker that holds the run; a retry a killed
worker had scheduled is made by another at its due time.
"""

from __future__ import annotations

import asyncio
import random
import signal
import statistics
import time
from collections import Counter
from pathlib import Path

import pytest
from queue_workers import queue_tasks
from queue_workers.workers import Worker, query

from support import until
from taskloom import Engine, RunEvent

pytestmark = pytest.mark.timeout(180)


async def counted(url: str, sql: str) -> int:
    rows = await asyncio.to_thread(query, url, sql)
    return int(rows[0][0])


async def finished(url: str) -> int:
    return await counted(
        url, "SELECT count(*) FROM runs WHERE status NOT IN ('pending', 'running')"
    )


async def submit_ticks(url: str, count: int, pause: float) -> list[str]:
    """`count` runs taking from `pause` to twice that (so they do not all end together)."""
    async with Engine(url, worker=False, tasks=[queue_tasks]) as engine:
        ids: list[str] = []
        for start in range(0, count, 1000):
            chunk = [
                {"index": i, "pause": pause * (1 + (i % 7) / 6)}
                for i in range(start, min(count, start + 1000))
            ]
            ids.extend(run.id for run in await engine.submit_many("tick", chunk))
        return ids


async def drain(url: str, workers: list[Worker], count: int) -> None:
    """Let `workers` run until `count` runs have ended, then stop them (exit 0 each)."""
    try:
        for worker in workers:
            await worker.ready()

        async def drained() -> bool:
            return await finished(url) == count

        await until(drained, timeout=60)
        for worker in workers:
            assert await worker.stop() == 0, worker.output()
    finally:
        for worker in workers:
            worker.kill()


def check_drained(url: str, count: int) -> dict[str, list[tuple[int, str, str]]]:
    """Every run completed, none with two completed attempts; the attempts of each run."""
    statuses = Counter(s for (s,) in query(url, "SELECT status FROM runs"))
    assert statuses == {"completed": count}, statuses
    doubled = query(
        url,
        "SELECT run_id, count(*) FROM attempts WHERE status = 'completed' "
        "GROUP BY run_id HAVING count(*) > 1",
    )
    assert doubled == []
    attempts: dict[str, list[tuple[int, str, str]]] = {}
    for run_id, number, status, worker in query(
        url, "SELECT run_id, number, status, worker_id FROM attempts ORDER BY run_id, number"
    ):
        attempts.setdefault(run_id, []).append((number, status, worker))
    assert len(attempts) == count
    return attempts


@pytest.mark.postgres
async def test_four_workers_drain_while_one_is_killed_and_one_paused(
    postgres_database: str,
) -> None:
    url, count, ttl = postgres_database, 6_000, 3.0
    await submit_ticks(url, count, pause=0.02)
    # The two that are lost hold more than a survivor claims at once (its free slots), so
    # the runs given back cannot all go to one survivor in a single claim.
    workers = [
        Worker(url, concurrency=40 if i < 2 else 12, name=f"w{i}", lease_ttl=ttl) for i in range(4)
    ]
    try:
        ids = [await w.ready() for w in workers]
        killed, paused = workers[0], workers[1]

        async def third_done() -> bool:
            return await finished(url) >= 0.3 * count

        await until(third_done, timeout=60)
        killed.signal(signal.SIGKILL)
        killed_at = time.time()
        paused.signal(signal.SIGSTOP)
        stopped_at = time.monotonic()

        async def reclaimed() -> bool:
            rows = await asyncio.to_thread(
                query,
                url,
                "SELECT min(a.started_at) FROM attempts a JOIN attempts b "
                "ON a.run_id = b.run_id AND b.number = a.number - 1 "
                "WHERE b.worker_id = :dead",
                dead=ids[0],
            )
            return rows[0][0] is not None

        try:
            await until(reclaimed, timeout=20)
        except BaseException:
            # What holds the others up: a session of the paused worker, as a rule.
            print(
                await asyncio.to_thread(
                    query,
                    url,
                    "SELECT pid, state, wait_event, now() - xact_start, query "
                    "FROM pg_stat_activity",
                )
            )
            raise
        first_reclaim = (
            await asyncio.to_thread(
                query,
                url,
                "SELECT min(a.started_at) FROM attempts a JOIN attempts b "
                "ON a.run_id = b.run_id AND b.number = a.number - 1 WHERE b.worker_id = :dead",
                dead=ids[0],
            )
        )[0][0]
        # Found by its lock: the runs of the killed worker are claimed again at once.
        assert first_reclaim - killed_at < 1.5, first_reclaim - killed_at

        async def paused_is_lost() -> bool:
            rows = await asyncio.to_thread(
                query, url, "SELECT lost_at FROM workers WHERE id = :id", id=ids[1]
            )
            return bool(rows) and rows[0][0] is not None

        try:
            await until(paused_is_lost, timeout=3 * ttl + 10)
        except BaseException:
            for worker in workers[2:]:
                print(worker.name, worker.output())
            print(await asyncio.to_thread(query, url, "SELECT * FROM workers"))
            print(
                await asyncio.to_thread(
                    query, url, "SELECT pid, state, query FROM pg_stat_activity"
                )
            )
            raise
        # Paused for three leases in all, then it runs on and finds out.
        await asyncio.sleep(max(0.0, 3 * ttl - (time.monotonic() - stopped_at)))
        paused.signal(signal.SIGCONT)

        async def drained() -> bool:
            return await finished(url) == count

        await until(drained, timeout=90)
        for worker in workers[1:]:
            assert await worker.stop() == 0, worker.output()
    finally:
        for worker in workers:
            worker.kill()
    attempts = await asyncio.to_thread(check_drained, url, count)
    # The paused worker's late writes were refused, and it said how many. Once resumed,
    # its runs' ends are written (and refused) before its next heartbeat finds the lease
    # gone, as a rule; when the heartbeat comes first, it lets those runs go unwritten
    # and says so. Either way it wrote nothing of them that counted.
    assert paused.refused() > 0 or paused.let_go() > 0, paused.output()
    # What the two lost workers held was shared among the others.
    lost_by = {ids[0], ids[1]}
    orphans = {rid: a for rid, a in attempts.items() if a[0][2] in lost_by and len(a) > 1}
    assert orphans
    finishers = Counter(a[-1][2] for a in orphans.values())
    assert {ids[2], ids[3]} <= set(finishers), finishers
    assert not set(finishers) & lost_by, finishers
    for tries in orphans.values():
        assert tries[0][1] == "failed"  # WorkerLostError, then a retry elsewhere
        assert tries[-1][1] == "completed"


async def test_two_workers_on_one_sqlite_file_drain_while_one_is_killed(tmp_path: Path) -> None:
    url, count = str(tmp_path / "queue.db"), 1_500
    await submit_ticks(url, count, pause=0.02)
    workers = [Worker(url, concurrency=8, name=f"w{i}") for i in range(2)]
    try:
        ids = [await w.ready() for w in workers]

        async def third_done() -> bool:
            return await finished(url) >= 0.3 * count

        await until(third_done, timeout=60)
        workers[0].kill()

        async def drained() -> bool:
            return await finished(url) == count

        await until(drained, timeout=90)
        assert await workers[1].stop() == 0, workers[1].output()
    finally:
        for worker in workers:
            worker.kill()
    attempts = await asyncio.to_thread(check_drained, url, count)
    assert any(a[-1][2] == ids[1] and a[0][2] == ids[0] for a in attempts.values())
    for worker in workers:
        assert "locked" not in worker.output(), worker.output()


async def test_priority_order_holds_across_two_workers(database_url: str) -> None:
    rng = random.Random(7)
    priorities = [rng.randint(-3, 3) for _ in range(40)]
    async with Engine(database_url, worker=False, tasks=[queue_tasks]) as engine:
        for p in priorities:
            await engine.submit("tick", {"index": p, "pause": 0.08}, priority=p)
    workers = [Worker(database_url, concurrency=1, name=f"w{i}") for i in range(2)]
    await drain(database_url, workers, len(priorities))
    rows = await asyncio.to_thread(
        query,
        database_url,
        "SELECT r.priority, a.worker_id FROM attempts a JOIN runs r ON r.id = a.run_id "
        "ORDER BY a.started_at",
    )
    started = [p for p, _ in rows]
    # The first two start together; after that each free slot takes the highest waiting.
    for i, p in enumerate(started):
        later = started[i + 2 :]
        assert all(q <= p for q in later), (i, started)
    assert len({w for _, w in rows}) == 2


async def test_a_task_limit_holds_across_two_workers(database_url: str) -> None:
    async with Engine(database_url, worker=False, tasks=[queue_tasks]) as engine:
        await engine.submit_many("limited", [{"index": i, "pause": 0.15} for i in range(14)])
    workers = [Worker(database_url, concurrency=8, name=f"w{i}") for i in range(2)]
    await drain(database_url, workers, 14)
    spans = await asyncio.to_thread(
        query, database_url, "SELECT started_at, finished_at FROM attempts"
    )
    events = sorted([(s, 1) for s, _ in spans] + [(f, -1) for _, f in spans])
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    assert most == 2


async def test_a_cancel_reaches_the_worker_holding_the_run(database_url: str) -> None:
    worker = Worker(database_url, concurrency=40, name="holder")
    delays: dict[str, list[float]] = {}
    try:
        await worker.ready()
        async with Engine(database_url, worker=False, tasks=[queue_tasks]) as engine:
            for task in ("hang_async", "hang_thread", "hang_class"):
                runs = [await engine.submit(task) for _ in range(5)]  # 6 threads or more
                ids = [r.id for r in runs]

                async def all_running() -> bool:
                    got = [await engine.get_run(i) for i in ids]  # noqa: B023 - awaited here
                    return all(r.status == "running" for r in got)

                await until(all_running, timeout=20)
                for run in runs:
                    asked = time.time()
                    await engine.cancel(run.id)
                    ended = await engine.wait(run.id, timeout=10)
                    assert ended.status == "cancelled", ended
                    assert ended.finished_at is not None
                    delays.setdefault(task, []).append(ended.finished_at - asked)
        assert await worker.stop() == 0, worker.output()
    finally:
        worker.kill()
    every = sorted(d for ds in delays.values() for d in ds)
    p99 = every[min(len(every) - 1, int(0.99 * len(every)))]
    assert p99 < 0.1, (statistics.median(every), p99, delays)


async def test_a_retry_scheduled_by_a_killed_worker_is_made_by_another_when_due(
    database_url: str,
) -> None:
    first = Worker(database_url, concurrency=4, name="first")
    second: Worker | None = None
    try:
        first_id = await first.ready()
        async with Engine(database_url, worker=False, tasks=[queue_tasks]) as engine:
            run = await engine.submit("fails_first", {"index": 3})

            async def retry_scheduled() -> bool:
                got = await engine.get_run(run.id)
                return got.attempts == 1 and got.scheduled_at is not None

            await until(retry_scheduled, timeout=20)
            scheduled = await engine.get_run(run.id)
            first.kill()
            second = Worker(database_url, concurrency=4, name="second")
            second_id = await second.ready()
            done = await engine.wait(run.id, timeout=30)
        assert done.status == "completed"
        assert done.result == 3
        rows = await asyncio.to_thread(
            query,
            database_url,
            "SELECT number, worker_id, started_at, status FROM attempts "
            "WHERE run_id = :id ORDER BY number",
            id=run.id,
        )
        assert [(n, w, s) for n, w, _, s in rows] == [
            (1, first_id, "failed"),
            (2, second_id, "completed"),
        ]
        assert scheduled.scheduled_at is not None
        started = rows[1][2]
        assert scheduled.scheduled_at - 0.05 <= started < scheduled.scheduled_at + 1.0
        assert await second.stop() == 0
    finally:
        first.kill()
        if second is not None:
            second.kill()


async def test_an_engine_that_executes_nothing_hears_of_runs_a_worker_executes(
    database_url: str,
) -> None:
    heard: list[tuple[str, str, str | None]] = []
    async with Engine(database_url, worker=False, tasks=[queue_tasks]) as engine:
        engine.add_listener(
            lambda e: heard.append((e.kind, e.run.id, e.line.message if e.line else None))
        )
        worker = Worker(database_url, concurrency=4, name="elsewhere")
        try:
            await worker.ready()
            run = await engine.submit("chatty", {"lines": 5})
            done = await engine.wait(run.id, timeout=30)
            assert done.status == "completed"

            async def all_heard() -> bool:
                return ("finished", run.id, None) in heard

            await until(all_heard, timeout=10)
            assert await worker.stop() == 0
        finally:
            worker.kill()
    mine = [(kind, line) for kind, rid, line in heard if rid == run.id]
    assert mine[0] == ("submitted", None)  # this engine's own submit
    assert ("started", None) in mine
    assert [line for kind, line in mine if kind == "log"] == [f"line {i}" for i in range(5)]
    assert mine[-1] == ("finished", None)


async def test_an_engine_that_executes_nothing_hears_a_claimed_run_start_before_its_end(
    database_url: str,
) -> None:
    # `tick` is async: the worker's claim starts it. Its start is heard from the claim's
    # notice or read once its submit's hold is over (the claim's notice itself is checked
    # in test_run_notices.py); its end is told from the record its notice carries (on
    # PostgreSQL), which is the run as stored.
    heard: list[tuple[str, str, float]] = []
    ends = []
    async with Engine(database_url, worker=False, tasks=[queue_tasks]) as engine:

        def listen(event: RunEvent) -> None:
            heard.append((event.kind, event.run.id, time.time()))
            if event.kind == "finished":
                ends.append(event.run)

        engine.add_listener(listen)
        worker = Worker(database_url, concurrency=4, name="elsewhere")
        try:
            await worker.ready()
            run = await engine.submit("tick", {"index": 0, "pause": 3.0})
            done = await engine.wait(run.id, timeout=30)
            assert done.status == "completed"

            async def end_heard() -> bool:
                return bool(ends)

            await until(end_heard, timeout=10)
            stored = await engine.get_run(run.id)
            assert await worker.stop() == 0, worker.output()
        finally:
            worker.kill()
    started = [at for kind, rid, at in heard if kind == "started" and rid == run.id]
    assert len(started) == 1
    assert stored.finished_at is not None
    assert started[0] < stored.finished_at  # told while it ran, not with its end
    assert [r.as_dict() for r in ends] == [stored.as_dict()]


async def test_an_engine_that_executes_nothing_tells_each_end_of_another_s_runs_once(
    database_url: str,
) -> None:
    # Many short runs: a run is often read back already ended on the notice of its start,
    # and the notice of its end comes after; that end is not told a second time.
    finished_heard: Counter[str] = Counter()
    async with Engine(database_url, worker=False, tasks=[queue_tasks]) as engine:
        engine.add_listener(
            lambda e: finished_heard.update([e.run.id]) if e.kind == "finished" else None
        )
        worker = Worker(database_url, concurrency=50, name="elsewhere")
        try:
            await worker.ready()
            ids = await submit_ticks(database_url, 600, pause=0.001)

            async def all_ended_heard() -> bool:
                return finished_heard.keys() >= set(ids)

            await until(all_ended_heard, timeout=60)
            # Whatever notices of those runs were still on their way came before this
            # run's end: its own notices follow theirs.
            marker = await engine.submit("tick", {"index": -1})
            await engine.wait(marker.id, timeout=30)

            async def marker_heard() -> bool:
                return marker.id in finished_heard

            await until(marker_heard, timeout=10)
            assert await worker.stop() == 0, worker.output()
        finally:
            worker.kill()
    told_twice = {run_id: n for run_id, n in finished_heard.items() if n > 1}
    assert told_twice == {}


async def test_a_worker_engine_tells_its_listeners_of_its_own_runs_once(
    database_url: str,
) -> None:
    heard: list[tuple[str, str]] = []
    async with Engine(database_url, tasks=[queue_tasks]) as engine:
        engine.add_listener(lambda e: heard.append((e.kind, e.run.id)))
        runs = [await engine.submit("chatty", {"lines": 2}) for _ in range(3)]
        for run in runs:
            await engine.wait(run.id, timeout=20)
        # Its own commits come back through the change feed too. A run another engine
        # executes after them (and its log line) is heard of after them all.
        async with Engine(database_url, tasks=[queue_tasks], recover=False) as other:
            marker = await other.run("chatty", {"lines": 1})

            async def marker_heard() -> bool:
                return ("log", marker.id) in heard

            await until(marker_heard, timeout=10)
    for run in runs:
        kinds = [kind for kind, rid in heard if rid == run.id]
        assert kinds.count("finished") == 1, kinds
        assert kinds.count("started") == 1, kinds
        assert kinds.count("log") == 2, kinds
