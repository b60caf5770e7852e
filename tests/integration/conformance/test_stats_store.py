"""The `StatsStore` contract, on every backend: memory, a SQLite file and PostgreSQL."""

from __future__ import annotations

import dataclasses
import math
import random
import time
from typing import TYPE_CHECKING

import pytest

from conformance.records import T0, add_runs, make_run
from support import wait_until
from taskloom.runs import Run, RunStatus, new_run_id
from taskloom.store import ActiveCounts, RunStats, RunStore, StatsStore, Store, WriteBatch
from taskloom.store.stats import window_span

if TYPE_CHECKING:
    from conftest import Backend


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.open()


def test_active_counts_are_pending_runs_by_queue_and_running_runs_by_task(store: Store) -> None:
    stats: StatsStore = store
    assert stats.active_counts() == ActiveCounts(pending={}, running={})
    pending = RunStatus.PENDING
    add_runs(
        store,
        *(make_run(task="a", queue="default", created_at=T0 + i) for i in range(3)),
        make_run(task="b", queue="gpu"),
        # Claimed but not started: pending all the same, out of the claimable index.
        make_run(task="a", queue="gpu", worker_id="w1", status=pending),
        make_run(task="a", status=RunStatus.RUNNING, worker_id="w1", started_at=T0),
        make_run(task="b", status=RunStatus.RUNNING, worker_id="w2", started_at=T0),
        make_run(task="b", status=RunStatus.RUNNING, worker_id="w2", started_at=T0),
        # Running with no holder (recorded before runs were held).
        make_run(task="c", status=RunStatus.RUNNING, started_at=T0),
        # Finished runs are not active, held or not.
        make_run(task="a", status=RunStatus.COMPLETED, worker_id="w1", finished_at=T0),
        make_run(task="a", status=RunStatus.FAILED, finished_at=T0),
        make_run(task="b", status=RunStatus.CANCELLED, queue="gpu", finished_at=T0),
    )
    assert stats.active_counts() == ActiveCounts(
        pending={"default": 3, "gpu": 2}, running={"a": 1, "b": 2, "c": 1}
    )


# --- the rollup of run ends ---------------------------------------------------------------

#: The end of a window of an hour, in buckets of a minute; every run below ends before it.
NOW = T0 + 3600 * 24 + 30.0
COUNTED = ("completed", "failed", "cancelled")


def start_and_end(
    store: RunStore, run: Run, status: str, *, started_at: float | None, finished_at: float
) -> None:
    """Record a run as the engine does: inserted pending, started, then ended (each its
    own batch); a run that never started is ended from pending."""
    store.write(WriteBatch(new_runs=[run]))
    if started_at is not None:
        started = {"status": RunStatus.RUNNING, "started_at": started_at, "attempts": 1}
        store.write(WriteBatch(run_updates={run.id: started}))
    ended = {"status": RunStatus(status), "finished_at": finished_at, "result": None}
    store.write(WriteBatch(run_updates={run.id: ended}))


def hour(store: StatsStore, task: str | None = None) -> RunStats:
    since, bucket = window_span("1h", NOW)
    return store.run_stats(since=since, until=NOW, bucket_seconds=bucket, task=task)


def expected_buckets(ends: list[tuple[str, float]], since: float) -> list[dict[str, float]]:
    buckets = [
        {"start": since + 60 * i, "completed": 0, "failed": 0, "cancelled": 0} for i in range(60)
    ]
    for status, finished_at in ends:
        buckets[int((finished_at - since) // 60)][status] += 1
    return buckets


def test_ends_are_counted_in_the_bucket_of_their_finish_empty_buckets_included(
    store: Store,
) -> None:
    since, _ = window_span("1h", NOW)
    assert since % 60 == 0
    assert since + 3540 <= NOW < since + 3600  # the last bucket holds NOW
    rng = random.Random(16)
    ends: list[tuple[str, float]] = []
    for i in range(90):
        status = rng.choice(COUNTED)
        # Minutes 10 to 19 of the window stay empty.
        minute = rng.choice([m for m in range(60) if not 10 <= m < 20])
        finished_at = since + minute * 60 + rng.uniform(0, 59.9)
        if finished_at >= NOW:
            finished_at = NOW - 1
        task = "adder" if i % 3 else "mailer"
        started = None if status == "cancelled" and i % 2 else finished_at - 0.5
        start_and_end(
            store, make_run(task=task), status, started_at=started, finished_at=finished_at
        )
        ends.append((status, finished_at))
    # Ends outside the window are not in it: the minute before, and NOW's next bucket.
    for finished_at in (since - 0.001, NOW + 60):
        start_and_end(store, make_run(), "completed", started_at=None, finished_at=finished_at)

    stats = hour(store)
    assert (stats.since, stats.until, stats.bucket_seconds) == (since, NOW, 60)
    assert [dataclasses.asdict(b) for b in stats.buckets] == expected_buckets(ends, since)
    assert all(b.completed + b.failed + b.cancelled == 0 for b in stats.buckets[10:20])
    totals = {s: sum(1 for e, _ in ends if e == s) for s in COUNTED}
    assert stats.totals == {**totals, "finished": 90}
    assert stats.failure_rate == pytest.approx(totals["failed"] / 90)
    assert [t.task for t in stats.tasks] == ["adder", "mailer"]  # most runs first
    assert [t.finished for t in stats.tasks] == [60, 30]
    assert sum(t.failed for t in stats.tasks) == totals["failed"]
    assert stats.tasks[0].failure_rate == pytest.approx(stats.tasks[0].failed / 60)

    narrowed = hour(store, task="mailer")
    assert [t.task for t in narrowed.tasks] == ["mailer"]
    assert narrowed.totals["finished"] == 30
    assert len(narrowed.buckets) == 60


def test_a_window_with_nothing_finished_has_its_buckets_and_no_failures(store: Store) -> None:
    stats = hour(store)
    assert len(stats.buckets) == 60
    assert stats.totals == {"completed": 0, "failed": 0, "cancelled": 0, "finished": 0}
    assert (stats.failure_rate, stats.tasks) == (0.0, [])
    since, bucket = window_span("7d", NOW)
    week = store.run_stats(since=since, until=NOW, bucket_seconds=bucket)
    assert (len(week.buckets), week.bucket_seconds) == (168, 3600)
    with pytest.raises(ValueError, match="multiples"):
        store.run_stats(since=since + 7, until=NOW, bucket_seconds=bucket)


def test_an_end_is_counted_once_however_often_it_is_written(store: Store) -> None:
    run = make_run(worker_id="w1", lease=1)
    start_and_end(store, run, "completed", started_at=NOW - 10, finished_at=NOW - 5)
    # The same end written again (a commit that was cut off and may have happened), and
    # a later change of the ended run, count nothing more.
    again = {"status": RunStatus.COMPLETED, "finished_at": NOW - 5, "result": None}
    store.write(WriteBatch(run_updates={run.id: again}))
    store.write(WriteBatch(run_updates={run.id: {**again, "status": RunStatus.FAILED}}))
    # An end refused by its fence is not counted either.
    held = make_run(worker_id="w1", lease=1, status=RunStatus.RUNNING, started_at=NOW - 9)
    store.write(WriteBatch(new_runs=[held]))
    refused = {"status": RunStatus.FAILED, "finished_at": NOW - 4}
    result = store.write(WriteBatch(run_updates={held.id: refused}, fences={held.id: ("w1", 2)}))
    assert result.rejected == {held.id}
    # Nor the end of a run that does not exist.
    store.write(WriteBatch(run_updates={new_run_id(): {**refused, "status": "cancelled"}}))
    # A run inserted ended is counted, once, and inserted and ended in one batch too.
    finished = make_run(status=RunStatus.CANCELLED, finished_at=NOW - 3)
    store.write(WriteBatch(new_runs=[finished]))
    store.write(WriteBatch(new_runs=[finished]))
    quick = make_run()
    quick_end = {"status": RunStatus.FAILED, "started_at": NOW - 2.5, "finished_at": NOW - 2}
    store.write(WriteBatch(new_runs=[quick], run_updates={quick.id: quick_end}))
    assert hour(store).totals == {"completed": 1, "failed": 1, "cancelled": 1, "finished": 3}


def test_ends_made_by_the_reaper_and_by_a_cancel_in_the_store_are_counted(store: Store) -> None:
    store.register_worker("gone", hostname="h", pid=1, ttl=0.1)
    running = {"status": RunStatus.RUNNING, "attempts": 1, "max_attempts": 1}
    lost, orphan = add_runs(
        store,
        make_run(task="lost", worker_id="gone", started_at=time.time() - 2, **running),
        make_run(task="orphan"),  # pending, held by nobody, never started
    )
    wait_until(lambda: not store.is_worker_alive("gone"), what="the lease running out")
    assert store.reap("reaper") == 1
    reaped = store.get_run(lost.id)
    assert reaped is not None
    assert reaped.status is RunStatus.FAILED
    assert store.cancel_orphaned_run(orphan.id, finished_at=time.time()) is True
    assert store.cancel_orphaned_run(orphan.id, finished_at=time.time()) is False
    now = time.time()
    since, bucket = window_span("15m", now)
    stats = store.run_stats(since=since, until=now + 1, bucket_seconds=bucket)
    assert stats.totals == {"completed": 0, "failed": 1, "cancelled": 1, "finished": 2}
    tasks = {t.task: t for t in stats.tasks}
    assert (tasks["lost"].failed, tasks["orphan"].cancelled) == (1, 1)
    assert tasks["lost"].max_seconds is not None
    assert tasks["lost"].max_seconds >= 2.0
    assert tasks["orphan"].max_seconds is None  # it never started: no duration
    assert store.reap("reaper") == 0


def test_ends_another_store_commits_are_counted(shared_backend: Backend) -> None:
    mine: Store = shared_backend.open()
    other: Store = shared_backend.open()
    for i in range(5):
        status = "failed" if i == 0 else "completed"
        start_and_end(other, make_run(), status, started_at=NOW - 100, finished_at=NOW - 50)
        start_and_end(mine, make_run(), status, started_at=NOW - 100, finished_at=NOW - 50)
    assert hour(mine).totals == hour(other).totals
    assert hour(mine).totals == {"completed": 8, "failed": 2, "cancelled": 0, "finished": 10}


def nearest_rank(durations: list[float], q: float) -> float:
    ordered = sorted(durations)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


@pytest.mark.parametrize("window", ["15m", "1h", "6h", "1d", "7d"])
def test_percentiles_are_within_ten_per_cent_of_the_exact_ones(store: Store, window: str) -> None:
    rng = random.Random(window)
    since, bucket = window_span(window, NOW)
    durations: dict[str, list[float]] = {"fast": [], "slow": []}
    runs: list[Run] = []
    updates: dict[str, dict[str, object]] = {}
    for task, median in (("fast", 0.004), ("slow", 2.5)):
        for _ in range(400):
            seconds = median * math.exp(rng.gauss(0, 1.2))
            finished_at = rng.uniform(since, NOW - 0.001)
            started_at = finished_at - seconds
            run = make_run(task=task, status=RunStatus.RUNNING, started_at=started_at)
            runs.append(run)
            updates[run.id] = {"status": RunStatus.COMPLETED, "finished_at": finished_at}
            durations[task].append(finished_at - started_at)
    store.write(WriteBatch(new_runs=runs))
    store.write(WriteBatch(run_updates=updates))  # one batch of 800 ends, like a busy writer

    stats = store.run_stats(since=since, until=NOW, bucket_seconds=bucket)
    assert {t.task: t.finished for t in stats.tasks} == {"fast": 400, "slow": 400}
    for found in stats.tasks:
        exact = durations[found.task]
        assert found.p50_seconds == pytest.approx(nearest_rank(exact, 0.50), rel=0.1)
        assert found.p95_seconds == pytest.approx(nearest_rank(exact, 0.95), rel=0.1)
        # Closer than the contract asks: a bin's value is within 4.3 % of its durations.
        assert found.p95_seconds == pytest.approx(nearest_rank(exact, 0.95), rel=0.044)
        assert found.max_seconds == pytest.approx(max(exact), rel=1e-9)


def test_rollup_rows_that_no_window_reads_are_deleted_as_ends_come_in(store: Store) -> None:
    start_and_end(store, make_run(), "completed", started_at=NOW - 2, finished_at=NOW - 1)
    assert hour(store).totals["finished"] == 1
    later = NOW + 8 * 3600
    start_and_end(store, make_run(), "failed", started_at=later - 2, finished_at=later - 1)
    # The minute rows of eight hours ago are gone (kept seven hours: the 6h window reads
    # minutes at its start); the quarters, hours and six hours (kept a day and more)
    # still count that end.
    assert hour(store).totals["finished"] == 0
    since, bucket = window_span("1d", later)
    day = store.run_stats(since=since, until=later, bucket_seconds=bucket)
    assert day.totals == {"completed": 1, "failed": 1, "cancelled": 0, "finished": 2}
    assert {t.task: t.max_seconds for t in day.tasks} == {"demo.add": 1.0}


def test_the_engines_own_fenced_ends_are_counted_from_the_batch(store: Store) -> None:
    runs = [
        make_run(task="held", worker_id="w1", lease=1, status=RunStatus.RUNNING, started_at=NOW - 9)
        for _ in range(3)
    ]
    store.write(WriteBatch(new_runs=runs))
    ends = {r.id: {"status": RunStatus.COMPLETED, "finished_at": NOW - 3} for r in runs}
    ends[runs[0].id] = {"status": RunStatus.FAILED, "finished_at": NOW - 2}
    store.write(
        WriteBatch(
            run_updates=ends,
            fences={r.id: ("w1", 1) for r in runs},
            ended={r.id: ("held", NOW - 9) for r in runs},
        )
    )
    [held] = hour(store).tasks
    assert (held.completed, held.failed, held.max_seconds) == (2, 1, 7.0)


def test_a_late_end_of_a_run_the_reaper_failed_is_refused_and_not_counted(store: Store) -> None:
    store.register_worker("paused", hostname="h", pid=1, ttl=0.1)
    started = time.time() - 1
    run = make_run(
        worker_id="paused",
        lease=1,
        status=RunStatus.RUNNING,
        attempts=1,
        max_attempts=1,
        started_at=started,
    )
    store.write(WriteBatch(new_runs=[run]))
    wait_until(lambda: not store.is_worker_alive("paused"), what="the lease running out")
    assert store.reap("reaper") == 1
    # The paused worker comes back and writes the end it had: its fence no longer holds.
    late = {"status": RunStatus.COMPLETED, "finished_at": time.time(), "result": 3}
    result = store.write(
        WriteBatch(
            run_updates={run.id: late},
            fences={run.id: ("paused", 1)},
            ended={run.id: (run.task, started)},
        )
    )
    assert result.rejected == {run.id}
    got = store.get_run(run.id)
    assert got is not None
    assert got.status is RunStatus.FAILED
    now = time.time()
    since, bucket = window_span("15m", now)
    stats = store.run_stats(since=since, until=now, bucket_seconds=bucket)
    assert stats.totals == {"completed": 0, "failed": 1, "cancelled": 0, "finished": 1}


def test_ends_written_as_they_come_over_hours_are_counted_once_in_every_window(
    store: Store,
) -> None:
    """Ends in the order they come, a few per batch, over nine hours, some of them late
    (a minute, two, or an hour behind the latest one): every window ending at the last end
    counts each end once, in its bucket and for its task, however the backend keeps its
    grains (SQLite adds its minutes to the coarser grains once the ends have moved on)."""
    rng = random.Random(9)
    first = NOW - 9 * 3600
    ends: list[tuple[str, str, float, float]] = []  # task, status, started, finished
    latest = first
    while latest < NOW - 300:
        latest += rng.uniform(5, 240)
        runs: list[Run] = []
        updates: dict[str, dict[str, object]] = {}
        for _ in range(rng.randint(1, 3)):
            late = rng.choice([0.0] * 6 + [40.0, 130.0, 3700.0])
            finished = max(first, latest - late)
            started = finished - rng.uniform(0.001, 30.0)
            task, status = rng.choice(["fast", "slow"]), rng.choice(COUNTED)
            run = make_run(task=task, status=RunStatus.RUNNING, started_at=started)
            runs.append(run)
            updates[run.id] = {"status": RunStatus(status), "finished_at": finished}
            ends.append((task, status, started, finished))
        store.write(WriteBatch(new_runs=runs))
        store.write(WriteBatch(run_updates=updates))
    until = max(finished for *_, finished in ends) + 1
    for window in ("15m", "1h", "6h", "1d", "7d"):
        since, bucket = window_span(window, until)
        stats = store.run_stats(since=since, until=until, bucket_seconds=bucket)
        seen = [end for end in ends if end[3] >= since]
        chart = [dict.fromkeys(COUNTED, 0) for _ in stats.buckets]
        for _, status, _, finished in seen:
            chart[int((finished - since) // bucket)][status] += 1
        found = [{s: getattr(b, s) for s in COUNTED} for b in stats.buckets]
        assert found == chart, window
        by_task = {t.task: (t.finished, t.max_seconds) for t in stats.tasks}
        exact = {
            task: (
                sum(1 for end in seen if end[0] == task),
                max(end[3] - end[2] for end in seen if end[0] == task),
            )
            for task in {end[0] for end in seen}
        }
        assert by_task.keys() == exact.keys(), window
        for task, (finished, longest) in exact.items():
            assert by_task[task][0] == finished, (window, task)
            assert by_task[task][1] == pytest.approx(longest, rel=1e-9), (window, task)
