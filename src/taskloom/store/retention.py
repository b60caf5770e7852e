"""Store methods for retention: removing old finished runs in batches, and what a database
holds (rows per table, size on disk, its oldest runs).

A run comes and goes with its family: a workflow run with its step runs, a Fractal task
with the child runs it made (both point at their parent with `parent_id`), down to the
last generation. One batch of a prune looks at the next runs of one status that finished
before the cutoff, in the order of the `(status, created_at)` index; each one whose parent
is gone (or that never had one) is the head of a family. The family goes, with the
attempts and log lines of all its runs, when every run of it is finished and finished
before the cutoff (a run finished with no time of its own counts by its creation); else
all of it stays. A run whose parent is still there is decided with its head, never alone.

Each batch is one short transaction, so writers and claims get in between: on SQLite it
holds the write lock for one batch; on PostgreSQL it locks only the rows it deletes, and
takes a transaction-level advisory lock so that one process prunes at a time (a prune
that may not wait for it gives up its turn). Deletes are of what is there, so two prunes
at once remove each run once between them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, inspect, or_, select, table, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from ..runs import TERMINAL_STATUSES, Run
from .base import DatabaseStats, PruneBatch, PruneCursor, TableStats
from .rows import UNFINISHED
from .schema import runs

if TYPE_CHECKING:
    from ..runs import Attempt, LogLine

__all__ = ["MemoryRetention", "SqlRetention", "choose_families"]

#: Run ids per `IN (...)` list: well under any driver's limit of parameters.
_CHUNK = 500
#: The PostgreSQL advisory lock a batch of a prune takes (a signed 64-bit hash of a name
#: of its own, as the workers' locks are of theirs).
RETENTION_LOCK = int.from_bytes(
    hashlib.blake2b(b"taskloom-retention", digest_size=8).digest(), "big", signed=True
)
_TERMINAL = tuple(sorted(TERMINAL_STATUSES))


@dataclass(frozen=True, slots=True)
class Candidate:
    """A run a batch looks at: old enough, and of the status pruned."""

    id: str
    parent_id: str | None
    created_at: float


@dataclass(frozen=True, slots=True)
class Member:
    """A descendant of a family's head, with what decides whether it may go."""

    id: str
    parent_id: str
    status: str
    finished_at: float | None
    created_at: float

    def removable(self, cutoff: float) -> bool:
        ended = self.created_at if self.finished_at is None else self.finished_at
        return self.status in TERMINAL_STATUSES and ended < cutoff


@dataclass(frozen=True, slots=True)
class Choice:
    """What a batch removes: the ids of whole families, how many families it kept, and
    where the next batch starts (None: every candidate of the status was looked at)."""

    remove: list[str]
    kept: int
    after: PruneCursor | None


def choose_families(
    candidates: Sequence[Candidate],
    *,
    cutoff: float,
    limit: int,
    parents_present: Callable[[Collection[str]], set[str]],
    children_of: Callable[[Collection[str]], list[Member]],
) -> Choice:
    """Pick the families a batch removes: whole ones, in candidate order, until `limit`
    runs (a family larger than that goes alone). `parents_present` says which of some
    ids are runs; `children_of` reads the runs whose parent is one of some ids. Both
    backends choose with this, so they choose the same."""
    parents = {c.parent_id for c in candidates if c.parent_id is not None}
    present = parents_present(parents) if parents else set()
    heads = [c for c in candidates if c.parent_id is None or c.parent_id not in present]
    families: dict[str, list[str]] = {h.id: [h.id] for h in heads}
    kept: set[str] = set()
    frontier = {h.id: h.id for h in heads}  # a run whose children to read -> its head
    seen = set(frontier)
    while frontier:
        found: dict[str, str] = {}
        for member in children_of(list(frontier)):
            head = frontier[member.parent_id]
            if head in kept or member.id in seen:
                continue
            seen.add(member.id)
            if not member.removable(cutoff):
                kept.add(head)
                continue
            families[head].append(member.id)
            found[member.id] = head
        frontier = {run_id: head for run_id, head in found.items() if head not in kept}
    remove: list[str] = []
    kept_here = 0
    after: PruneCursor | None = None
    full = False
    for candidate in candidates:
        family = families.get(candidate.id)
        if candidate.id in kept:
            kept_here += 1
        elif family is not None:
            if remove and len(remove) + len(family) > limit:
                full = True  # this family starts the next batch
                break
            remove.extend(family)
        after = (candidate.created_at, candidate.id)
    if not full and len(candidates) < limit:
        after = None  # the last page of this status
    return Choice(remove, kept_here, after)


def check_prunable(status: str) -> None:
    """Only finished runs are pruned: a status of unfinished ones is a caller's mistake."""
    if status not in TERMINAL_STATUSES:
        raise ValueError(f"{status} runs are never pruned: only {', '.join(_TERMINAL)} ones are")


def chunks(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


class SqlRetention:
    """The retention methods of `SqlStore`."""

    url: str

    if TYPE_CHECKING:
        _file: Path | None

        def _use(self, what: str) -> AbstractContextManager[Engine]: ...

        def _writer(self) -> Engine: ...

    def prune_runs(
        self,
        *,
        status: str,
        finished_before: float,
        after: PruneCursor | None = None,
        limit: int = 1000,
        dry_run: bool = False,
        wait: bool = True,
    ) -> PruneBatch | None:
        check_prunable(status)
        with self._use("prune runs") as engine:
            postgres = engine.dialect.name == "postgresql"
            # A dry run only reads; a prune takes the write lock (SQLite) up front.
            begin = engine.connect() if dry_run else self._writer().begin()
            with begin as conn:
                if postgres and not dry_run:
                    lock = "pg_advisory_xact_lock" if wait else "pg_try_advisory_xact_lock"
                    taken = conn.execute(text(f"SELECT {lock}(:key)"), {"key": RETENTION_LOCK})
                    if not wait and not taken.scalar():
                        return None  # another process is pruning
                candidates = _candidates(conn, status, finished_before, after, limit)
                choice = choose_families(
                    candidates,
                    cutoff=finished_before,
                    limit=limit,
                    parents_present=lambda ids: _present(conn, ids),
                    children_of=lambda ids: _children(conn, ids),
                )
                if dry_run:
                    return PruneBatch(
                        runs=len(choice.remove),
                        attempts=_count(conn, "attempts", choice.remove),
                        log_lines=_count(conn, "log_lines", choice.remove),
                        kept=choice.kept,
                        after=choice.after,
                    )
                removed = _delete(conn, choice.remove)
        return PruneBatch(
            runs=removed[0],
            attempts=removed[1],
            log_lines=removed[2],
            kept=choice.kept,
            after=choice.after,
        )

    def database_stats(self) -> DatabaseStats:
        with self._use("read the database's statistics") as engine, engine.connect() as conn:
            names = sorted(inspect(conn).get_table_names())
            rows = {
                name: int(conn.execute(select(func.count()).select_from(table(name))).scalar_one())
                for name in names
            }
            by_status = {
                str(status): int(count)
                for status, count in conn.execute(
                    select(runs.c.status, func.count()).group_by(runs.c.status)
                ).all()
            }
            oldest = conn.execute(select(func.min(runs.c.created_at))).scalar()
            oldest_finished = conn.execute(
                select(func.min(runs.c.finished_at)).where(runs.c.status.in_(_TERMINAL))
            ).scalar()
            if engine.dialect.name == "postgresql":
                sizes = _postgres_sizes(conn, names)
                files: dict[str, int] = {}
                total = conn.execute(text("SELECT pg_database_size(current_database())"))
                size: int | None = int(total.scalar_one())
            else:
                sizes = _sqlite_sizes(conn)
                files = _sqlite_files(self._file)
                size = sum(files.values()) if files else None
        return DatabaseStats(
            backend=engine.dialect.name,
            tables=tuple(TableStats(n, rows[n], sizes.get(n)) for n in names),
            size_bytes=size,
            files=files,
            runs_by_status=by_status,
            oldest_run_at=None if oldest is None else float(oldest),
            oldest_finished_at=None if oldest_finished is None else float(oldest_finished),
        )


def _candidates(
    conn: Connection, status: str, cutoff: float, after: PruneCursor | None, limit: int
) -> list[Candidate]:
    created = runs.c.created_at
    # A run finishes after it is created, so the cutoff bounds `created_at` too: the
    # `(status, created_at)` index serves the whole walk.
    query = select(runs.c.id, runs.c.parent_id, created).where(
        runs.c.status == status, created < cutoff, runs.c.finished_at < cutoff
    )
    if after is not None:
        # The `>=` repeats the keyset as a range, so the index is entered at the cursor
        # instead of walked again from the start of the status.
        query = query.where(
            created >= after[0],
            or_(created > after[0], and_(created == after[0], runs.c.id > after[1])),
        )
    query = query.order_by(created, runs.c.id).limit(limit)
    return [Candidate(i, parent, float(at)) for i, parent, at in conn.execute(query)]


def _in(conn: Connection, sql: str, ids: Sequence[str]) -> Any:
    """Run driver SQL whose `{ids}` stands for a list of `ids`' marks: prepared by the
    driver, with none of SQLAlchemy's per-value work (most of a batch's time otherwise)."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    return conn.exec_driver_sql(sql.format(ids=", ".join([mark] * len(ids))), tuple(ids))


def _present(conn: Connection, ids: Collection[str]) -> set[str]:
    found: set[str] = set()
    for part in chunks(sorted(ids)):
        found.update(row[0] for row in _in(conn, "SELECT id FROM runs WHERE id IN ({ids})", part))
    return found


def _children(conn: Connection, ids: Collection[str]) -> list[Member]:
    sql = (
        "SELECT id, parent_id, status, finished_at, created_at FROM runs WHERE parent_id IN ({ids})"
    )
    found: list[Member] = []
    for part in chunks(sorted(ids)):
        for run_id, parent_id, status, finished_at, created_at in _in(conn, sql, part):
            finished = None if finished_at is None else float(finished_at)
            found.append(Member(run_id, parent_id, str(status), finished, float(created_at)))
    return found


def _count(conn: Connection, table: str, ids: Sequence[str]) -> int:
    total = 0
    for part in chunks(ids):
        total += int(
            _in(conn, f"SELECT count(*) FROM {table} WHERE run_id IN ({{ids}})", part).scalar_one()
        )
    return total


#: Written as NOT IN the unfinished statuses: with IN the finished ones, SQLite walks the
#: status index (every completed run) instead of looking the ids up.
_DELETE_RUNS = (
    "DELETE FROM runs WHERE id IN ({ids}) AND status NOT IN "
    f"({', '.join(repr(s) for s in UNFINISHED)}) RETURNING id"
)


def _delete(conn: Connection, ids: Sequence[str]) -> tuple[int, int, int]:
    """Delete the runs (those still finished), then the attempts and log lines of the
    runs deleted; the counts of each."""
    counts = [0, 0, 0]
    for part in chunks(ids):
        gone = [row[0] for row in _in(conn, _DELETE_RUNS, part)]
        if not gone:
            continue
        counts[0] += len(gone)
        counts[1] += _in(conn, "DELETE FROM attempts WHERE run_id IN ({ids})", gone).rowcount
        counts[2] += _in(conn, "DELETE FROM log_lines WHERE run_id IN ({ids})", gone).rowcount
    return counts[0], counts[1], counts[2]


def _postgres_sizes(conn: Connection, names: Sequence[str]) -> dict[str, int]:
    """Each table's size with its indexes and TOAST data (`pg_total_relation_size`)."""
    query = text(
        "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')"
    )
    wanted = set(names)
    return {str(name): int(size) for name, size in conn.execute(query) if name in wanted}


def _sqlite_sizes(conn: Connection) -> dict[str, int]:
    """Each table's bytes with its indexes, from the `dbstat` table SQLite offers when it
    is built with it (Python's builds are); nothing when it is not there."""
    try:
        owners: dict[str, str] = {
            str(name): str(owner)
            for name, owner in conn.execute(
                text("SELECT name, tbl_name FROM sqlite_schema WHERE tbl_name != ''")
            )
        }
        pages = conn.execute(text("SELECT name, pgsize FROM dbstat WHERE aggregate = TRUE"))
        sizes: dict[str, int] = {}
        for name, size in pages:
            owner = owners.get(str(name), str(name))
            sizes[owner] = sizes.get(owner, 0) + int(size)
    except SQLAlchemyError:
        conn.rollback()  # the read goes on without sizes
        return {}
    return sizes


def _sqlite_files(path: Path | None) -> dict[str, int]:
    """The bytes of a SQLite file and of its write-ahead log beside it (and the log's
    index), those that exist."""
    if path is None:
        return {}
    found: dict[str, int] = {}
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
        try:
            found[name] = os.stat(path.with_name(name)).st_size
        except FileNotFoundError:
            continue
    return found


class MemoryRetention:
    """The retention methods of `MemoryStore`."""

    _lock: AbstractContextManager[Any]
    _runs: dict[str, Run]
    _keys: dict[str, str]
    _attempts: dict[tuple[str, int], Attempt]
    _logs: dict[str, list[LogLine]]

    def prune_runs(
        self,
        *,
        status: str,
        finished_before: float,
        after: PruneCursor | None = None,
        limit: int = 1000,
        dry_run: bool = False,
        wait: bool = True,
    ) -> PruneBatch | None:
        check_prunable(status)
        with self._lock:
            old = sorted(
                (
                    r
                    for r in self._runs.values()
                    if r.status == status
                    and r.created_at < finished_before
                    and r.finished_at is not None
                    and r.finished_at < finished_before
                    and (after is None or (r.created_at, r.id) > after)
                ),
                key=lambda r: (r.created_at, r.id),
            )[:limit]
            choice = choose_families(
                [Candidate(r.id, r.parent_id, r.created_at) for r in old],
                cutoff=finished_before,
                limit=limit,
                parents_present=lambda ids: {i for i in ids if i in self._runs},
                children_of=self._children,
            )
            gone = [i for i in choice.remove if self._runs[i].is_finished]
            going = set(gone)
            attempt_keys = [k for k in self._attempts if k[0] in going]
            lines = sum(len(self._logs.get(i, ())) for i in gone)
            if not dry_run:
                for run_id in gone:
                    run = self._runs.pop(run_id)
                    if run.idempotency_key is not None:
                        self._keys.pop(run.idempotency_key, None)
                    self._logs.pop(run_id, None)
                for key in attempt_keys:
                    del self._attempts[key]
        return PruneBatch(
            runs=len(gone),
            attempts=len(attempt_keys),
            log_lines=lines,
            kept=choice.kept,
            after=choice.after,
        )

    def _children(self, ids: Collection[str]) -> list[Member]:
        wanted = set(ids)
        return [
            Member(r.id, r.parent_id, str(r.status), r.finished_at, r.created_at)
            for r in self._runs.values()
            if r.parent_id is not None and r.parent_id in wanted
        ]

    def database_stats(self) -> DatabaseStats:
        with self._lock:
            held: dict[str, int] = {
                "runs": len(self._runs),
                "attempts": len(self._attempts),
                "log_lines": sum(len(lines) for lines in self._logs.values()),
            }
            by_status: dict[str, int] = {}
            for run in self._runs.values():
                by_status[str(run.status)] = by_status.get(str(run.status), 0) + 1
            created = [r.created_at for r in self._runs.values()]
            finished = [
                r.finished_at
                for r in self._runs.values()
                if r.is_finished and r.finished_at is not None
            ]
        return DatabaseStats(
            backend="memory",
            tables=tuple(TableStats(name, count, None) for name, count in sorted(held.items())),
            size_bytes=None,
            files={},
            runs_by_status=by_status,
            oldest_run_at=min(created, default=None),
            oldest_finished_at=min(finished, default=None),
        )
