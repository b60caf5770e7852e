"""Store methods for statistics of runs, on the SQL and in-memory backends.

Kept apart from `sql.py` and `memory.py` (which take them in as mixins), as the schedule
methods are. `active_counts()` is what gauges read: the runs waiting and executing right
now, counted through the partial indexes of the queue, so the finished runs (most of the
table) are never read.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from ..runs import Run, RunStatus
from .base import ActiveCounts

__all__ = ["MemoryStats", "SqlStats"]

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


class SqlStats:
    """The statistics methods of `SqlStore`."""

    if TYPE_CHECKING:

        def _use(self, what: str) -> AbstractContextManager[Engine]: ...

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


class MemoryStats:
    """The statistics methods of `MemoryStore`."""

    _lock: AbstractContextManager[Any]
    _runs: dict[str, Run]

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
