"""Store methods for statistics of runs, on the SQL and in-memory backends.

Kept apart from `sql.py` and `memory.py` (which take them in as mixins), as the schedule
methods are. `active_counts()` is what gauges read: the runs waiting and executing right
now, counted through the partial indexes of the queue, so the finished runs (most of the
table) are never read. `run_stats()` is what the dashboard's charts read: a window of run
ends, from the rollup that each end's commit adds to (`rollup.py`), never from the runs.

A window's percentiles are nearest-rank percentiles (the duration at rank `ceil(q * n)`
of the `n` sorted durations), read from the summed histograms: the bin holding that rank
is known exactly, and the value standing for it is within 4.3 % of every duration in it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, union_all
from sqlalchemy.engine import Engine

from ..runs import Run, RunStatus
from .base import ActiveCounts, RunStats, StatsBucket, TaskStats
from .rollup import COUNTED, GRAINS, Pruning, Rollup, RollupSql, bin_value
from .schema import run_counts, run_durations

if TYPE_CHECKING:
    from .queue import QueueSql

__all__ = [
    "WINDOWS",
    "MemoryStats",
    "SqlStats",
    "grain_for",
    "window_cover",
    "window_end",
    "window_span",
]

#: The windows of statistics: their seconds and the seconds of each of their buckets.
WINDOWS: dict[str, tuple[int, int]] = {
    "15m": (900, 60),
    "1h": (3600, 60),
    "6h": (6 * 3600, 300),
    "1d": (86400, 900),
    "7d": (7 * 86400, 3600),
}

#: Each count is written as its partial index says it, and on SQLite names the index:
#: SQLite's planner, which has no statistics of the table, would otherwise read the
#: `(status, created_at)` index and visit every pending run of a backlog.
_COUNTS = {
    # Unclaimed pending runs by queue, from `ix_runs_claimable`.
    "unclaimed": (
        "SELECT queue, count(*) FROM runs{ix_runs_claimable} "
        "WHERE status = 'pending' AND worker_id IS NULL GROUP BY queue"
    ),
    # The runs workers hold, pending or running, from `ix_runs_held`: as many as the
    # workers have taken (their slots, and the runs an engine inserted for itself).
    "held": (
        "SELECT status, queue, task, count(*) FROM runs{ix_runs_held} "
        "WHERE worker_id IS NOT NULL AND status IN ('pending', 'running') "
        "GROUP BY status, queue, task"
    ),
    # Running runs nobody holds (recorded before runs were held), from the status index.
    "unheld": (
        "SELECT task, count(*) FROM runs "
        "WHERE status = 'running' AND worker_id IS NULL GROUP BY task"
    ),
}


def _counts_sql(dialect: str) -> dict[str, str]:
    indexes = ("ix_runs_claimable", "ix_runs_held")
    named = {ix: f" INDEXED BY {ix}" if dialect == "sqlite" else "" for ix in indexes}
    return {kind: sql.format(**named) for kind, sql in _COUNTS.items()}


def _add(counts: dict[str, int], key: str, n: int) -> None:
    counts[key] = counts.get(key, 0) + n


def _sum_into(
    summed: dict[tuple[str, int], list[float]], key: tuple[str, int], runs: int, seconds: float
) -> None:
    held = summed.get(key)
    if held is None:
        summed[key] = [runs, seconds]
    else:
        held[0] += runs
        held[1] = max(held[1], seconds)


def window_span(window: str, now: float) -> tuple[float, int]:
    """The start of a window ending `now` and the seconds of its buckets: the buckets are
    aligned on multiples of their length, the last one holds `now`.

    Raises `ValueError` naming the accepted windows for any other."""
    try:
        seconds, bucket = WINDOWS[window]
    except KeyError:
        accepted = ", ".join(WINDOWS)
        raise ValueError(f"window must be one of {accepted}, not {window!r}") from None
    last = math.floor(now / bucket) * bucket
    return float(last + bucket - seconds), bucket


def grain_for(since: float, bucket_seconds: int) -> int:
    """The largest grain of the rollup that both the buckets and their start are made of."""
    for grain in sorted(GRAINS, reverse=True):
        if bucket_seconds % grain == 0 and since % grain == 0:
            return grain
    raise ValueError(
        f"bucket_seconds ({bucket_seconds}) and since ({since}) must be multiples of one "
        f"of {', '.join(map(str, GRAINS))} seconds"
    )


def window_cover(since: float, end: float) -> list[tuple[int, float, float]]:
    """`[since, end)` (both multiples of the finest grain) as the fewest rollup rows that
    cover it exactly: `(grain, first, end)` ranges of bucket starts, the coarsest grain
    over the whole buckets it holds and finer ones towards both edges. A day in buckets of
    15 minutes: at most 3 quarters, 5 hours, 3 six hours, 5 hours and 3 quarters."""
    parts: list[tuple[int, float, float]] = []

    def cover(low: float, high: float, grains: tuple[int, ...]) -> None:
        if low >= high or not grains:
            return
        grain, finer = grains[0], grains[1:]
        first = float(math.ceil(low / grain) * grain)
        last = float(math.floor(high / grain) * grain)
        if first < last:
            parts.append((grain, first, last))
            cover(low, first, finer)
            cover(last, high, finer)
        else:
            cover(low, high, finer)

    cover(since, end, tuple(sorted(GRAINS, reverse=True)))
    return parts


def window_end(since: float, until: float, bucket_seconds: int) -> float:
    """The end of the last bucket of `[since, until)`: the bucket that holds `until`."""
    return since + max(0, math.ceil((until - since) / bucket_seconds)) * bucket_seconds


def _percentile(bins: list[tuple[int, int]], total: int, q: float) -> float:
    """The nearest-rank percentile `q` of a histogram given as sorted (bin, runs)."""
    rank = max(1, math.ceil(q * total))
    seen = 0
    for index, runs in bins:
        seen += runs
        if seen >= rank:
            return bin_value(index)
    return bin_value(bins[-1][0])  # pragma: no cover - the ranks add up to the total


def build_stats(
    *,
    since: float,
    until: float,
    bucket_seconds: int,
    by_bucket: Iterable[tuple[float, str, int]],
    by_task: Iterable[tuple[str, str, int]],
    durations: Iterable[tuple[str, int, int, float]],
    active: ActiveCounts,
) -> RunStats:
    """A window's statistics from the rollup's rows of it, summed: `by_bucket` as (row's
    bucket start, status, runs) at a grain that divides the buckets, `by_task` as (task,
    status, runs), `durations` as (task, bin, runs, longest)."""
    # Every bucket up to the one that holds `until`, even when `until` lies in its first
    # second (its start is not below `int(until)` then).
    end = window_end(since, until, bucket_seconds)
    starts = range(int(since), int(end), bucket_seconds)
    chart = [dict.fromkeys(COUNTED, 0) for _ in starts]
    for start, status, runs in by_bucket:
        index = int((start - since) // bucket_seconds)
        if 0 <= index < len(chart) and status in COUNTED:
            chart[index][status] += int(runs)
    counted: dict[str, dict[str, int]] = {}
    for task, status, runs in by_task:
        if status in COUNTED:
            counted.setdefault(task, dict.fromkeys(COUNTED, 0))[status] += int(runs)
    histograms: dict[str, list[tuple[int, int]]] = {}
    longest: dict[str, float] = {}
    for task, index, runs, seconds in durations:
        histograms.setdefault(task, []).append((index, runs))
        longest[task] = max(longest.get(task, seconds), seconds)
    tasks = []
    for task, statuses in counted.items():
        stats = TaskStats(task=task, **statuses)
        bins = histograms.get(task)
        if bins:
            bins.sort()
            total = sum(runs for _, runs in bins)
            top = longest[task]
            # The value of a bin stands for it; never longer than the longest run seen.
            stats.p50_seconds = min(_percentile(bins, total, 0.50), top)
            stats.p95_seconds = min(_percentile(bins, total, 0.95), top)
            stats.max_seconds = top
        if stats.finished:
            tasks.append(stats)
    tasks.sort(key=lambda t: (-t.finished, t.task))
    return RunStats(
        since=since,
        until=until,
        bucket_seconds=bucket_seconds,
        buckets=[
            StatsBucket(start=float(start), **counts)
            for start, counts in zip(starts, chart, strict=True)
        ],
        tasks=tasks,
        pending=sum(active.pending.values()),
        running=sum(active.running.values()),
    )


class SqlStats:
    """The statistics methods of `SqlStore`, and the rollup it writes with each batch."""

    if TYPE_CHECKING:
        _queue: QueueSql | None

        def _use(self, what: str) -> AbstractContextManager[Engine]: ...

    def _rollup(self) -> RollupSql:
        assert self._queue is not None
        return self._queue.rollup

    def active_counts(self) -> ActiveCounts:
        pending: dict[str, int] = {}
        running: dict[str, int] = {}
        with self._use("count the active runs") as engine, engine.connect() as conn:
            sql = _counts_sql(engine.dialect.name)
            for queue, n in conn.exec_driver_sql(sql["unclaimed"]):
                _add(pending, queue, n)
            for status, queue, task, n in conn.exec_driver_sql(sql["held"]):
                if status == RunStatus.PENDING.value:
                    _add(pending, queue, n)
                else:
                    _add(running, task, n)
            for task, n in conn.exec_driver_sql(sql["unheld"]):
                _add(running, task, n)
        return ActiveCounts(pending=pending, running=running)

    def run_stats(
        self, *, since: float, until: float, bucket_seconds: int, task: str | None = None
    ) -> RunStats:
        grain = grain_for(since, bucket_seconds)
        end = window_end(since, until, bucket_seconds)
        c, d = run_counts.c, run_durations.c
        mine = [] if task is None else [c.task == task]
        # The chart: a row per bucket and status, summed by the database from the rows of
        # the grain of its buckets.
        by_bucket = (
            select(c.bucket_start, c.status, func.sum(c.runs))
            .where(c.grain == grain, c.bucket_start >= since, c.bucket_start < end, *mine)
            .group_by(c.bucket_start, c.status)
        )
        # Per task, from the coarsest rows that cover the window's buckets exactly (a day:
        # at most 19 per task and status or bin): one range of the primary key each, all
        # in one statement (a round trip and a plan each on PostgreSQL), summed by it.
        cover = window_cover(since, end)
        counted = union_all(
            *(
                select(c.task, c.status, c.runs).where(
                    c.grain == part, c.bucket_start >= first, c.bucket_start < last, *mine
                )
                for part, first, last in cover
            )
        ).subquery()
        by_task = select(counted.c.task, counted.c.status, func.sum(counted.c.runs)).group_by(
            counted.c.task, counted.c.status
        )
        theirs = [] if task is None else [d.task == task]
        timed = union_all(
            *(
                select(d.task, d.bin, d.runs, d.max_seconds).where(
                    d.grain == part, d.bucket_start >= first, d.bucket_start < last, *theirs
                )
                for part, first, last in cover
            )
        ).subquery()
        by_bin = select(
            timed.c.task, timed.c.bin, func.sum(timed.c.runs), func.max(timed.c.max_seconds)
        ).group_by(timed.c.task, timed.c.bin)
        with self._use("read run statistics") as engine, engine.connect() as conn:
            buckets = [(start, status, int(n)) for start, status, n in conn.execute(by_bucket)]
            tasks = [(name, status, int(n)) for name, status, n in conn.execute(by_task)]
            durations = [(t, b, int(n), float(m)) for t, b, n, m in conn.execute(by_bin)]
        return build_stats(
            since=since,
            until=until,
            bucket_seconds=bucket_seconds,
            by_bucket=buckets,
            by_task=tasks,
            durations=durations,
            active=self.active_counts(),
        )


class MemoryStats:
    """The statistics methods of `MemoryStore`: the rollup in dictionaries, keyed as the
    SQL tables are."""

    _lock: AbstractContextManager[Any]
    _runs: dict[str, Run]
    _run_counts: dict[tuple[int, float, str, str], int]
    _run_durations: dict[tuple[int, float, str, int], list[float]]
    _pruning: Pruning

    def _add_rollup(self, rollup: Rollup) -> None:
        """Add a batch's ends (the caller holds the lock), and drop the rows no window
        reads any more, as the SQL store does."""
        if not rollup:
            return
        counts = self._run_counts
        for grain, start, task, status, runs in rollup.count_rows():
            key = (grain, start, task, status)
            counts[key] = counts.get(key, 0) + runs
        durations = self._run_durations
        for grain, start, task, index, runs, seconds in rollup.duration_rows():
            slot = (grain, start, task, index)
            held = durations.get(slot)
            if held is None:
                durations[slot] = [runs, seconds]
            else:
                held[0] += runs
                held[1] = max(held[1], seconds)
        dead = dict(self._pruning.cutoffs(rollup))
        if dead:
            for key in [k for k in counts if k[1] < dead[k[0]]]:
                del counts[key]
            for slot in [k for k in durations if k[1] < dead[k[0]]]:
                del durations[slot]

    def active_counts(self) -> ActiveCounts:
        pending: dict[str, int] = {}
        running: dict[str, int] = {}
        with self._lock:
            for run in self._runs.values():
                if run.status is RunStatus.PENDING:
                    _add(pending, run.queue, 1)
                elif run.status is RunStatus.RUNNING:
                    _add(running, run.task, 1)
        return ActiveCounts(pending=pending, running=running)

    def run_stats(
        self, *, since: float, until: float, bucket_seconds: int, task: str | None = None
    ) -> RunStats:
        grain = grain_for(since, bucket_seconds)
        end = window_end(since, until, bucket_seconds)
        cover = window_cover(since, end)

        def counted(key: tuple[Any, ...]) -> bool:
            return key[0] == grain and since <= key[1] < end and (task is None or key[2] == task)

        def timed(key: tuple[Any, ...]) -> bool:
            return (task is None or key[2] == task) and any(
                key[0] == part and first <= key[1] < last for part, first, last in cover
            )

        with self._lock:
            counts = [(k[1], k[2], k[3], n) for k, n in self._run_counts.items() if counted(k)]
            tasks = [(k[2], k[3], n) for k, n in self._run_counts.items() if timed(k)]
            summed: dict[tuple[str, int], list[float]] = {}
            for key, (runs, seconds) in self._run_durations.items():
                if timed(key):
                    _sum_into(summed, (key[2], key[3]), int(runs), seconds)
        durations = [(t, b, int(n), m) for (t, b), (n, m) in summed.items()]
        return build_stats(
            since=since,
            until=until,
            bucket_seconds=bucket_seconds,
            by_bucket=[(start, status, n) for start, _, status, n in counts],
            by_task=tasks,
            durations=durations,
            active=self.active_counts(),
        )
