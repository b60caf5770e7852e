"""Retention of finished runs: a prune of the database in batches (`taskloom db prune`),
and the same in the background of a server or worker (`--retention 30d`).

A prune walks each status chosen in turn, one batch (one transaction) at a time, through
the store's `prune_runs`, which removes whole families only and never a pending or
running run (see `store/retention.py`). In the background a pass runs soon after the
process starts and then every few minutes, in a thread of its own so the event loop
never waits for the database; several processes may do it at once (on PostgreSQL one
prunes at a time and the others let their turn go).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..exceptions import StoreError, TaskloomError
from ..runs import RunStatus
from ..schedules.errors import ScheduleError
from ..schedules.rules import format_instant, parse_duration
from ..store.base import PruneBatch, RetentionStore

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "FIRST_PASS_DELAY",
    "PASS_INTERVAL",
    "PRUNABLE_STATUSES",
    "AutoRetention",
    "PruneReport",
    "RetentionError",
    "RetentionPolicy",
    "describe",
    "keep_pruning",
    "parse_age",
    "parse_statuses",
    "prune",
]

logger = logging.getLogger("taskloom.retention")

#: The statuses of finished runs; a pending or running run is never pruned.
PRUNABLE_STATUSES: tuple[str, ...] = (
    RunStatus.COMPLETED.value,
    RunStatus.FAILED.value,
    RunStatus.CANCELLED.value,
    RunStatus.SKIPPED.value,
)
#: Runs removed per transaction unless told otherwise: each batch takes milliseconds.
DEFAULT_BATCH_SIZE = 1000
#: The largest batch accepted: a batch is one transaction, and must stay short.
MAX_BATCH_SIZE = 100_000
#: Seconds from the start of a serving process to its first background pass.
FIRST_PASS_DELAY = 5.0
#: Seconds between two background passes.
PASS_INTERVAL = 300.0


class RetentionError(TaskloomError, ValueError):
    """A retention setting is invalid; `field` names the option at fault."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def parse_age(text: str, what: str = "--older-than") -> float:
    """Seconds from a duration as schedules write it (`30d`, `12h`, `90m`, `1h30m`);
    `RetentionError` naming `what` when it is not one or is zero."""
    try:
        seconds = parse_duration(text, what)
    except ScheduleError as exc:
        raise RetentionError(str(exc), field=what) from None
    if seconds <= 0:
        raise RetentionError(f"{what}: {text!r} is no time at all (expected e.g. 30d)", field=what)
    return seconds


def parse_statuses(text: str, what: str = "--status") -> tuple[str, ...]:
    """The statuses of a comma-separated list (`completed,failed`), each one a finished
    run's; `RetentionError` naming `what` for any other."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    accepted = ", ".join(PRUNABLE_STATUSES)
    if not names:
        raise RetentionError(f"{what}: no status given (expected some of {accepted})", field=what)
    for name in names:
        if name not in PRUNABLE_STATUSES:
            why = (
                "a pending or running run is never pruned"
                if name in (RunStatus.PENDING.value, RunStatus.RUNNING.value)
                else "not a status"
            )
            raise RetentionError(
                f"{what}: {name!r} cannot be pruned ({why}); expected some of {accepted}",
                field=what,
            )
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True, kw_only=True)
class RetentionPolicy:
    """Which finished runs go: those of `statuses` finished more than `older_than` seconds
    ago, with their families, `batch_size` runs a transaction."""

    older_than: float
    statuses: tuple[str, ...] = PRUNABLE_STATUSES
    batch_size: int = DEFAULT_BATCH_SIZE

    def __post_init__(self) -> None:
        if not self.older_than > 0:
            raise RetentionError(
                f"older_than: {self.older_than!r} seconds is no time at all", field="older_than"
            )
        parse_statuses(",".join(self.statuses) or ",", "statuses")
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise RetentionError(
                f"batch_size: {self.batch_size} is not between 1 and {MAX_BATCH_SIZE:,}",
                field="batch_size",
            )


@dataclass(slots=True, kw_only=True)
class PruneReport:
    """What a prune removed (in a dry run, would remove)."""

    cutoff: float
    dry_run: bool = False
    runs: int = 0
    attempts: int = 0
    log_lines: int = 0
    #: Families old enough but kept: one of their runs is unfinished or finished since.
    kept: int = 0
    #: Transactions that removed runs (or would have).
    batches: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    #: The prune stopped before its end: asked to stop, or another process was pruning.
    stopped: bool = False

    def add(self, status: str, batch: PruneBatch) -> None:
        self.runs += batch.runs
        self.attempts += batch.attempts
        self.log_lines += batch.log_lines
        self.kept += batch.kept
        if batch.runs:
            self.batches += 1
            self.by_status[status] = self.by_status.get(status, 0) + batch.runs

    def summary(self) -> str:
        """One line: what went (or would go), from when, in how many batches."""
        verb = "would remove" if self.dry_run else "removed"
        runs = "run" if self.runs == 1 else "runs"
        batches = "batch" if self.batches == 1 else "batches"
        return (
            f"{verb} {self.runs:,} {runs} ({self.attempts:,} attempts, {self.log_lines:,} "
            f"log lines) finished before {format_instant(self.cutoff)}, in {self.batches:,} "
            f"{batches} ({self.seconds:.2f} s)"
        )


def prune(
    store: RetentionStore,
    policy: RetentionPolicy,
    *,
    now: float | None = None,
    dry_run: bool = False,
    wait: bool = True,
    stop: threading.Event | None = None,
    on_batch: Callable[[str, PruneBatch], None] | None = None,
    pause: float = 1.0,
) -> PruneReport:
    """Remove what `policy` says, batch after batch (the store is synchronous: call this
    in a thread from async code). `on_batch` hears each batch once it is committed;
    `stop` ends the prune between two batches; with `wait` False the prune ends at once
    when another process's batch holds the prune's lock.

    After each batch that removed runs the prune rests `pause` times as long as the
    batch took, so that the writers waiting meanwhile get their turn: SQLite's busy
    handler looks for the lock again only after a sleep (up to 100 ms), and a lock taken
    again at once would keep a worker's commits waiting for the whole prune.
    """
    began = time.perf_counter()
    rest = stop or threading.Event()
    cutoff = (time.time() if now is None else now) - policy.older_than
    report = PruneReport(cutoff=cutoff, dry_run=dry_run)
    try:
        for status in policy.statuses:
            after = None
            while True:
                if stop is not None and stop.is_set():
                    report.stopped = True
                    return report
                batch_began = time.perf_counter()
                batch = store.prune_runs(
                    status=status,
                    finished_before=report.cutoff,
                    after=after,
                    limit=policy.batch_size,
                    dry_run=dry_run,
                    wait=wait,
                )
                if batch is None:
                    report.stopped = True
                    return report
                took = time.perf_counter() - batch_began
                report.add(status, batch)
                if on_batch is not None:
                    on_batch(status, batch)
                if batch.runs and not dry_run and pause > 0:
                    rest.wait(took * pause)
                if batch.after is None:
                    break
                after = batch.after
    finally:
        report.seconds = time.perf_counter() - began
    return report


class AutoRetention:
    """Background retention of a serving process: a pass `first_delay` seconds after
    `start()`, then one every `interval` seconds, each in a thread of its own; `stop()`
    ends the pass in progress after its current batch."""

    def __init__(
        self,
        store: RetentionStore,
        policy: RetentionPolicy,
        *,
        interval: float = PASS_INTERVAL,
        first_delay: float = FIRST_PASS_DELAY,
    ) -> None:
        self.store = store
        self.policy = policy
        self.interval = interval
        self.first_delay = first_delay
        #: What the last pass that ended did.
        self.last: PruneReport | None = None
        self._stop = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="taskloom-retention")

    def start(self) -> None:
        self._stopping = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(
            self._passes(), name="taskloom-retention"
        )

    async def stop(self) -> None:
        self._stop.set()
        if self._stopping is not None:
            self._stopping.set()
        if self._task is not None:
            await self._task  # at most the batch in progress
        self._thread.shutdown(wait=True)

    async def _passes(self) -> None:
        assert self._stopping is not None
        loop = asyncio.get_running_loop()
        delay = self.first_delay
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)
            if self._stop.is_set():
                return
            report = await loop.run_in_executor(self._thread, self._pass)
            if report is not None:
                self.last = report
            delay = self.interval

    def _pass(self) -> PruneReport | None:
        try:
            report = prune(self.store, self.policy, wait=False, stop=self._stop)
        except StoreError as exc:
            # A database away for a moment: the next pass tries again.
            logger.warning("retention: could not prune finished runs: %s", exc)
            return None
        except Exception:
            logger.exception("retention: the prune of finished runs failed")
            return None
        if report.runs:
            logger.info("retention: %s", report.summary())
        else:
            logger.debug("retention: %s", report.summary())
        return report


@contextlib.asynccontextmanager
async def keep_pruning(
    store: RetentionStore | None,
    policy: RetentionPolicy | None,
    *,
    interval: float = PASS_INTERVAL,
    first_delay: float = FIRST_PASS_DELAY,
) -> AsyncIterator[AutoRetention | None]:
    """Background retention while inside, when there is a `policy` (else nothing)."""
    if store is None or policy is None:
        yield None
        return
    retention = AutoRetention(store, policy, interval=interval, first_delay=first_delay)
    retention.start()
    try:
        yield retention
    finally:
        await retention.stop()


def describe(policy: RetentionPolicy) -> str:
    """`runs finished more than 30d ago (completed, failed)`, for messages."""
    chosen = ", ".join(policy.statuses)
    return f"runs finished more than {_age(policy.older_than)} ago ({chosen})"


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
