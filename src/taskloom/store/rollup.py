"""The rollup of run ends: counts and duration histograms written with the ends they count.

A window of statistics (`stats.py`) must not scan the runs that finished in it: a day can
hold millions. So every transaction that ends runs also adds them, grouped, to two small
tables (`schema.run_counts`, `schema.run_durations`): per grain (a bucket of a minute, a
quarter of an hour, an hour or six hours), bucket start, task, and status or duration
bin. Written in the same commit as the ends, the counts are exact and right across
processes; a window reads a few hundred rows per task whatever the number of runs.

A run is counted when it goes from pending or running to completed, failed or cancelled,
and only then: the store reads the runs a batch ends inside the write transaction (on
PostgreSQL locking them, as the updates would), so a batch written again after a commit
that was cut off, or an end that another process (a reaper, a cancel) made first, is not
counted twice.

Durations go into logarithmic bins, eight per doubling (the idea of DDSketch: Masson,
Rim and Lee, "DDSketch: a fast and fully-mergeable quantile sketch with relative-error
guarantees", VLDB 2019): bin `i` holds the durations in `(g**(i-1), g**i]` with
`g = 2**(1/8)`, and the one value `bin_value(i)` stands for all of them within
`(g-1)/(g+1)`, 4.3 %. Histograms of any buckets add up, so a window's percentiles are
those of its rows summed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from ..runs import Run
from .base import WriteBatch

__all__ = [
    "COUNTED",
    "GRAINS",
    "KEPT",
    "Pruning",
    "Rollup",
    "RollupSql",
    "bin_value",
    "duration_bin",
    "ends_of",
    "rollup_of",
    "trusted_ends",
]

#: The bucket sizes the rollup keeps, in seconds. A window's chart is read from the largest
#: grain that divides its buckets (a day in buckets of 15 minutes: 96 rows per task and
#: status); its per-task counts and durations from the coarsest rows that cover it exactly
#: (a day: at most 3 six hours, 10 hours and 6 quarters per key; `stats.window_cover`).
GRAINS = (60, 900, 3600, 21600)
#: How long the rows of each grain are kept: the longest window that reads them (6h reads
#: minutes at its start, 1d quarters, 7d hours and six hours) and an hour more.
KEPT = {60: 7 * 3600.0, 900: 25 * 3600.0, 3600: 7 * 86400.0 + 3600, 21600: 7 * 86400.0 + 3600}
#: Seconds of ends between two looks for dead rollup rows.
PRUNE_EVERY = 600.0
#: The statuses counted: the ends of runs that were pending or running.
COUNTED = frozenset({"completed", "failed", "cancelled"})
#: A status (a `RunStatus` hashes like its string) to the plain string stored.
_COUNTED = {status: status for status in COUNTED}
_UNFINISHED = frozenset({"pending", "running"})

#: Bins per doubling of a duration.
BINS_PER_DOUBLING = 8
_GROWTH: float = 2.0 ** (1 / BINS_PER_DOUBLING)
#: Durations at or under a microsecond (and negative ones, from clocks that disagree)
#: share the first bin.
SHORTEST = 1e-6
_FIRST_BIN = math.ceil(math.log2(SHORTEST) * BINS_PER_DOUBLING)
_ceil, _log2 = math.ceil, math.log2


def duration_bin(seconds: float) -> int:
    """The histogram bin of a duration: `i` such that `g**(i-1) < seconds <= g**i`."""
    if seconds <= SHORTEST:
        return _FIRST_BIN
    return math.ceil(math.log2(seconds) * BINS_PER_DOUBLING)


def bin_value(index: int) -> float:
    """The duration that stands for bin `index`: within 4.3 % of every duration in it."""
    return 2 * _GROWTH**index / (1 + _GROWTH)


#: A run as the store holds it before a batch: task, status, started_at.
Prior = tuple[str, str, float | None]


@dataclass(slots=True)
class Rollup:
    """Run ends grouped as the rollup tables hold them, at the finest grain; `count_rows`
    and `duration_rows` give them at every grain, in key order (so that two transactions
    on PostgreSQL lock shared rows in the same order and never deadlock)."""

    #: (minute start, task, status) -> runs
    counts: dict[tuple[float, str, str], int] = field(default_factory=dict)
    #: (minute start, task, bin) -> [runs, longest]
    durations: dict[tuple[float, str, int], list[float]] = field(default_factory=dict)
    #: The latest end added.
    latest: float = -math.inf

    def __bool__(self) -> bool:
        return bool(self.counts)

    def add(self, task: str, status: str, started_at: float | None, finished_at: float) -> None:
        # Called for every run that ends: kept to a few dictionary operations.
        if finished_at > self.latest:
            self.latest = finished_at
        minute = finished_at - finished_at % 60.0
        key = (minute, task, status)
        counts = self.counts
        counts[key] = counts.get(key, 0) + 1
        if started_at is None:
            return  # never started: counted, without a duration
        seconds = finished_at - started_at
        index = _ceil(_log2(seconds) * BINS_PER_DOUBLING) if seconds > SHORTEST else _FIRST_BIN
        slot = (minute, task, index)
        held = self.durations.get(slot)
        if held is None:
            self.durations[slot] = [1, seconds]
        else:
            held[0] += 1
            if seconds > held[1]:
                held[1] = seconds

    def count_rows(self) -> list[tuple[int, float, str, str, int]]:
        """`(grain, bucket_start, task, status, runs)` rows."""
        if len(self.counts) == 1:  # one key (an end alone): its rows are in order already
            [((minute, task, status), runs)] = self.counts.items()
            return [(grain, minute - minute % grain, task, status, runs) for grain in GRAINS]
        rows: dict[tuple[int, float, str, str], int] = {}
        for (minute, task, status), runs in self.counts.items():
            for grain in GRAINS:
                key = (grain, minute - minute % grain, task, status)
                rows[key] = rows.get(key, 0) + runs
        return [(*key, runs) for key, runs in sorted(rows.items())]

    def duration_rows(self) -> list[tuple[int, float, str, int, int, float]]:
        """`(grain, bucket_start, task, bin, runs, max_seconds)` rows."""
        if len(self.durations) == 1:
            [((minute, task, index), (runs, longest))] = self.durations.items()
            return [
                (grain, minute - minute % grain, task, index, int(runs), longest)
                for grain in GRAINS
            ]
        rows: dict[tuple[int, float, str, int], list[float]] = {}
        for (minute, task, index), (runs, longest) in self.durations.items():
            for grain in GRAINS:
                key = (grain, minute - minute % grain, task, index)
                held = rows.get(key)
                if held is None:
                    rows[key] = [runs, longest]
                else:
                    held[0] += runs
                    held[1] = max(held[1], longest)
        return [(*key, int(runs), longest) for key, (runs, longest) in sorted(rows.items())]


class Pruning:
    """When a store next deletes the rollup rows that no window reads any more: those of
    each grain older than the longest window read from it, and an hour more (the clocks of
    processes differ). Looked at as ends come in, by their own time, at most once every
    `PRUNE_EVERY` seconds of ends; so the rollup holds a few hundred buckets per task."""

    def __init__(self) -> None:
        self._next = -math.inf

    def cutoffs(self, rollup: Rollup) -> list[tuple[int, float]]:
        """`(grain, bucket start)` pairs: the rows of a grain starting before are dead;
        none when it is not time yet."""
        latest = rollup.latest
        if latest < self._next:
            return []
        self._next = latest + PRUNE_EVERY
        return [(grain, latest - kept) for grain, kept in KEPT.items()]


def ends_of(batch: WriteBatch) -> list[str]:
    """The runs a batch may end: those it updates to a counted status, and the new runs
    it inserts already ended (the store looks at how they stood before the batch)."""
    ids = [
        run_id for run_id, fields in batch.run_updates.items() if fields.get("status") in COUNTED
    ]
    ids.extend(run.id for run in batch.new_runs if run.status in COUNTED)
    return ids


def trusted_ends(batch: WriteBatch, ends: Collection[str]) -> set[str]:
    """The ends a batch says enough about to be counted without reading their runs: those
    the writer names with their task and start (`WriteBatch.ended`) and whose changes are
    fenced. A fence that holds means the run is still held under the lease it ends it
    with, so nobody ended it first (a reaper that fails a run, or a cancel of a run whose
    worker is gone, moves its lease on)."""
    ended, fences = batch.ended, batch.fences
    return {run_id for run_id in ends if run_id in ended and run_id in fences}


def rollup_of(
    batch: WriteBatch,
    ends: Collection[str],
    prior: Mapping[str, Prior],
    skip: Collection[str] = (),
    trusted: Collection[str] = (),
) -> Rollup:
    """The ends among `ends` (from `ends_of`) that this batch makes, given how the store
    held those runs before it (`prior`: the runs it has, of those not `trusted`; see
    `trusted_ends`); `skip` are the runs whose changes were refused by their fence."""
    rollup = Rollup()
    add = rollup.add
    updates = batch.run_updates
    ended = batch.ended
    inserted: dict[str, Run] | None = None
    for run_id in ends:
        if run_id in skip:
            continue
        fields = updates.get(run_id)
        if run_id in trusted and fields is not None:  # the engine's own end, the usual one
            task, started_at = ended[run_id]
            end = _COUNTED.get(fields.get("status", ""))
            finished_at = fields.get("finished_at")
            if end is not None and finished_at is not None:
                add(task, end, fields.get("started_at", started_at), finished_at)
            continue
        before = prior.get(run_id)
        if before is not None:
            if fields is None or before[1] not in _UNFINISHED:
                continue  # ended already (by an earlier commit of this batch, or another)
            # The common case: a run the store held pending or running ends.
            end = _COUNTED.get(fields.get("status", ""))
            finished_at = fields.get("finished_at")
            if end is not None and finished_at is not None:
                add(before[0], end, fields.get("started_at", before[2]), finished_at)
            continue
        if inserted is None:
            inserted = {run.id: run for run in batch.new_runs}
        new_run = inserted.get(run_id)
        if new_run is None:
            continue  # no such run: the update changes nothing
        fields = fields or {}
        end = _COUNTED.get(fields.get("status", new_run.status))
        finished_at = fields.get("finished_at", new_run.finished_at)
        if end is not None and finished_at is not None:
            started_at = fields.get("started_at", new_run.started_at)
            add(new_run.task, end, started_at, finished_at)
    return rollup


class RollupSql:
    """The rollup's statements for one dialect, run on a driver cursor inside the write
    transaction."""

    def __init__(self, dialect_name: str) -> None:
        self.postgres = dialect_name == "postgresql"
        m = "%s" if self.postgres else "?"
        if self.postgres:
            # Locked in id order, as a fence check locks runs: the updates that follow
            # would lock them anyway, and an end made meanwhile by another transaction
            # is seen once it commits.
            self.prior = (
                f"SELECT id, task, status, started_at FROM runs WHERE id = ANY({m}) "
                "ORDER BY id FOR UPDATE"
            )
        else:
            # One statement whatever the number of ids (SQLite holds the write lock).
            self.prior = (
                "SELECT id, task, status, started_at FROM runs "
                f"WHERE id IN (SELECT value FROM json_each({m}))"
            )
        longest = "GREATEST" if self.postgres else "max"
        # Each PostgreSQL session adds to rows of its own (`shard`, its backend pid), so
        # that no two workers' commits wait on one row; and each upsert is one statement
        # over arrays of its rows, never an `executemany`: psycopg sends that as a
        # pipeline, and a process paused in the middle of one leaves its session waiting
        # for the rest without the server's idle timeout (armed only once a statement is
        # answered in full), holding its locks.
        counts = (
            "SELECT g, b, t, s, pg_backend_pid(), r FROM unnest(%s::integer[], "
            "%s::double precision[], %s::text[], %s::text[], %s::bigint[]) AS u(g, b, t, s, r)"
            if self.postgres
            else "VALUES {rows}"
        )
        self.add_counts = _Upsert(
            f"INSERT INTO run_counts (grain, bucket_start, task, status, shard, runs) {counts} "
            "ON CONFLICT (grain, bucket_start, task, status, shard) "
            "DO UPDATE SET runs = run_counts.runs + excluded.runs",
            "(?, ?, ?, ?, 0, ?)",
            self.postgres,
        )
        self.prune_counts = f"DELETE FROM run_counts WHERE grain = {m} AND bucket_start < {m}"
        self.prune_durations = f"DELETE FROM run_durations WHERE grain = {m} AND bucket_start < {m}"
        self.pruning = Pruning()
        durations = (
            "SELECT g, b, t, i, pg_backend_pid(), r, x FROM unnest(%s::integer[], "
            "%s::double precision[], %s::text[], %s::integer[], %s::bigint[], "
            "%s::double precision[]) AS u(g, b, t, i, r, x)"
            if self.postgres
            else "VALUES {rows}"
        )
        self.add_durations = _Upsert(
            "INSERT INTO run_durations (grain, bucket_start, task, bin, shard, runs, "
            f"max_seconds) {durations} "
            "ON CONFLICT (grain, bucket_start, task, bin, shard) "
            "DO UPDATE SET runs = run_durations.runs + excluded.runs, "
            f"max_seconds = {longest}(run_durations.max_seconds, excluded.max_seconds)",
            "(?, ?, ?, ?, 0, ?, ?)",
            self.postgres,
        )

    def read_prior(self, cursor: Any, ids: Collection[str]) -> dict[str, Prior]:
        """How the store holds the runs `ids` now (those it has)."""
        cursor.execute(self.prior, [list(ids) if self.postgres else json.dumps(list(ids))])
        return {run_id: (task, status, started) for run_id, task, status, started in cursor}

    def write(self, cursor: Any, rollup: Rollup) -> None:
        """Add the ends to the rollup, and now and then delete its rows no window reads."""
        if not rollup:
            return
        self.add_counts.execute(cursor, rollup.count_rows())
        durations = rollup.duration_rows()
        if durations:
            self.add_durations.execute(cursor, durations)
        dead = self.pruning.cutoffs(rollup)
        if dead:  # through the primary key: (grain, bucket_start) leads it
            for grain, before in dead:  # a statement each, for the reason given above
                cursor.execute(self.prune_counts, (grain, before))
                cursor.execute(self.prune_durations, (grain, before))


class _Upsert:
    """One upsert of rollup rows as a single statement: on PostgreSQL over arrays of its
    columns, on SQLite with a `VALUES` row per row (its text kept per number of rows; an
    end usually adds one key at each grain). One statement costs SQLite a step where an
    `executemany` of the same rows costs one per row."""

    def __init__(self, sql: str, row: str, postgres: bool) -> None:
        self._sql, self._row, self._postgres = sql, row, postgres
        self._texts: dict[int, str] = {}

    def execute(self, cursor: Any, rows: list[tuple[Any, ...]]) -> None:
        if self._postgres:
            # Columns as arrays; the rows stay in key order (see `Rollup`).
            cursor.execute(self._sql, [list(column) for column in zip(*rows, strict=True)])
            return
        for start in range(0, len(rows), _SQLITE_ROWS):
            chunk = rows[start : start + _SQLITE_ROWS]
            text = self._texts.get(len(chunk))
            if text is None:
                text = self._texts[len(chunk)] = self._sql.replace(
                    "{rows}", ", ".join([self._row] * len(chunk))
                )
            cursor.execute(text, list(_flatten(chunk)))


#: Rows per SQLite statement: within its limit of 32,766 parameters at 7 a row, and few
#: statement texts to keep (an end adds 4 rows; a batch of a thousand ends of one task in
#: one minute adds 4 as well).
_SQLITE_ROWS = 64
_flatten = chain.from_iterable
