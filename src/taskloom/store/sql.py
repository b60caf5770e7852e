"""`SqlStore`: the store on SQLite or PostgreSQL, through SQLAlchemy's synchronous engine.

One code path serves both databases; it branches on the dialect only for the idempotent
insert and for worker liveness (`liveness`). `write()` is the hot path: its SQL is built
once per store from the table definitions and executed with the driver's `executemany`,
so no per-row SQLAlchemy processing runs (`rows.Statements`).
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from collections.abc import Collection, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from types import TracebackType
from typing import Any

from pydantic_core import PydanticSerializationError
from sqlalchemy import (
    Double,
    Table,
    and_,
    bindparam,
    delete,
    event,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import QueuePool

from ..exceptions import StoreError, StoreUnavailableError
from ..runs import Attempt, LogLine, Run, RunStatus
from .base import (
    LEASE_TTL,
    NOTHING_WRITTEN,
    ApiTokenRecord,
    PackageRecord,
    ServiceLogLine,
    ServiceRecord,
    ServiceRequest,
    ServiceStartRecord,
    StoreBusyError,
    UncertainCommitError,
    WorkerRecord,
    WriteBatch,
    WriteResult,
)
from .checkpoint import Checkpointer
from .connect import BUSY_TIMEOUT, create_store_engine, resolve_database_url, sqlite_file
from .feed import ChangeFeed, Notice, PostgresFeed, SqliteFeed
from .liveness import AdvisoryLocks, LocalWorkers, LockFiles, WorkerLocks
from .migrate import HEAD_REVISION, current_revision, upgrade
from .pipelines import SqlPipelines
from .queue import (
    CANCEL_CHANNEL,
    LISTENING_CHANNEL,
    QUEUE_CHANNEL,
    RECORDS_FOR,
    QueueSql,
    claim_notices,
    notices,
)
from .retention import SqlRetention
from .rollup import Rollup, ends_of, rollup_of, trusted_ends
from .rows import (
    ATTEMPT_READ,
    LOG_READ,
    MAX_LIMIT,
    PACKAGE_READ,
    RUN_READ,
    SERVICE_LOG_READ,
    SERVICE_READ,
    SERVICE_REQUEST_READ,
    SERVICE_START_READ,
    UNFINISHED,
    Statements,
    attempt_from_row,
    json_or_none,
    log_from_row,
    package_from_row,
    package_row,
    plan_batch,
    run_from_row,
    run_row,
    service_from_row,
    service_log_from_row,
    service_request_from_row,
    service_row,
    service_start_from_row,
    service_start_row,
)
from .schedules import SqlSchedules
from .schema import (
    api_tokens,
    attempts,
    log_lines,
    packages,
    run_changes,
    runs,
    service_log_lines,
    service_requests,
    service_starts,
    services,
    workers,
)
from .service_attributes import SqlServiceAttributes
from .stats import SqlStats

__all__ = ["SqlStore"]

#: A reap looks for runs whose owner has no live record once in this many rounds.
ORPHANS_EVERY = 10
#: Seconds a SQLite file keeps its journal of changed runs (`run_changes`).
JOURNAL_KEEP = 60.0

_CANCEL_REQUESTS = (
    select(runs.c.id)
    .where(
        runs.c.worker_id == bindparam("worker"),
        text("cancel_requested"),  # as in the index ix_runs_cancel_requested
        runs.c.status.in_(UNFINISHED),
    )
    .order_by(runs.c.id)
)


#: Seconds `close` waits for connections still checked out by other threads.
CHECKIN_WAIT = 5.0


def _await_checkins(engine: Engine) -> None:
    """Until the pool has every connection back (for `CHECKIN_WAIT` at most). A read that
    another thread still makes as the store closes (the thread of a task that was
    cancelled goes on) would give its connection back to a pool disposed meanwhile, which
    never closes it: dropped unclosed, the driver's connection warns when collected."""
    pool = engine.pool
    if not isinstance(pool, QueuePool):
        return  # one connection for all (in-memory SQLite): nothing checked out apart
    deadline = time.monotonic() + CHECKIN_WAIT
    while pool.checkedout() and time.monotonic() < deadline:
        time.sleep(0.005)


def _is_busy(exc: Exception) -> bool:
    """Whether a SQLite error says another connection holds the lock."""
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class SqlStore(SqlPipelines, SqlSchedules, SqlStats, SqlRetention, SqlServiceAttributes):
    """The store on SQLite (a file, or in memory) or PostgreSQL (psycopg 3)."""

    def __init__(
        self,
        url: str,
        *,
        auto_migrate: bool = True,
        pool_size: int = 5,
        max_overflow: int = 10,
    ) -> None:
        self.url = resolve_database_url(url)
        self.auto_migrate = auto_migrate
        self._pool_size = pool_size
        self._max_overflow = max_overflow
        self._engine: Engine | None = None
        self._write_engine: Engine | None = None
        self._statements: Statements | None = None
        self._queue: QueueSql | None = None
        #: When this store last began a commit (`time.monotonic()`): a SQLite feed tells
        #: its own commits from other processes' by it.
        self.last_commit = 0.0
        self._reap_rounds = 0
        #: The last commit was cut off (and may have happened): until a batch commits,
        #: the rollup reads every run a batch ends (see `rollup.trusted_ends`).
        self._uncertain = False
        self._workers: WorkerLocks | None = None
        self._raw_writer: Any = None  # the pooled connection `write` keeps (see there)
        #: The busy timeout `_raw_writer` has now (SQLite): BUSY_TIMEOUT, as every
        #: connection is made, or 0 after a write that must not wait (see `_begin_write`).
        self._writer_waits = True
        self._checkpointer: Checkpointer | None = None  # a SQLite file's WAL checkpoints
        # Until when (monotonic) ends carry their records in notices (`want_records`).
        self._records_until = -math.inf
        self._sqlite = False
        # A SQLite file another engine uses: each commit journals the runs it changed.
        self._journal = False
        self._file = sqlite_file(self.url)
        self._memory = make_url(self.url).get_backend_name() == "sqlite" and self._file is None
        # An in-memory database is one connection shared by all threads: take turns.
        self._lock: AbstractContextManager[Any] = (
            threading.RLock() if self._memory else nullcontext()
        )

    def __repr__(self) -> str:
        return f"SqlStore({make_url(self.url).render_as_string(hide_password=True)!r})"

    def __enter__(self) -> SqlStore:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # lifecycle --------------------------------------------------------------------------

    def open(self) -> None:
        if self._engine is not None:
            return
        shown = make_url(self.url).render_as_string(hide_password=True)
        engine = create_store_engine(
            self.url,
            pool_size=self._pool_size,
            max_overflow=self._max_overflow,
            checkpoints_elsewhere=self._file is not None,
        )
        try:
            with engine.connect() as conn:
                revision = current_revision(conn)
            if revision != HEAD_REVISION:
                if not self.auto_migrate:
                    raise StoreError(
                        f"the database {shown} is at schema revision {revision or 'none'}, "
                        f"taskloom needs {HEAD_REVISION}: run `taskloom db upgrade`"
                    )
                upgrade(engine)
        except SQLAlchemyError as exc:
            engine.dispose()
            raise StoreError(f"could not open the database {shown}: {exc}") from exc
        except BaseException:
            engine.dispose()
            raise
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self._write_engine = engine.execution_options(taskloom_write=True)
        self._statements = Statements(engine.dialect)
        self._queue = QueueSql(engine.dialect)
        event.listen(engine, "commit", self._counted)  # heartbeats, claims of old runs...
        if engine.dialect.name == "postgresql":
            self._workers = AdvisoryLocks(engine)
        elif self._file is not None:
            self._workers = LockFiles(self._file.with_name(self._file.name + ".workers"))
            self._checkpointer = Checkpointer(self._file).start()
        else:
            self._workers = LocalWorkers()

    def _counted(self, _connection: Any) -> None:
        self.last_commit = time.monotonic()

    def close(self) -> None:
        with self._lock:
            if self._checkpointer is not None:
                self._checkpointer.stop()
                self._checkpointer = None
            if self._workers is not None:
                self._workers.release_all()
                self._workers = None
            if self._raw_writer is not None:
                if not self._writer_waits:  # back to the pool as every connection is
                    with contextlib.suppress(Exception):
                        self._set_busy_wait(self._raw_writer.driver_connection, wait=True)
                self._raw_writer.close()
                self._raw_writer = None
            if self._engine is not None:
                _await_checkins(self._engine)
                self._engine.dispose()
            self._engine = self._write_engine = self._statements = None

    def schema_revision(self) -> str | None:
        with self._use("read the schema revision") as engine, engine.connect() as conn:
            return current_revision(conn)

    @contextmanager
    def _use(self, what: str) -> Iterator[Engine]:
        """The engine, with the in-memory lock held and database errors as StoreError."""
        with self._lock:
            engine = self._engine
            if engine is None:
                raise StoreError(f"cannot {what}: the store is not open (call open() first)")
            dbapi = engine.dialect.loaded_dbapi
            try:
                yield engine
            except (
                OperationalError,
                InterfaceError,
                dbapi.OperationalError,
                dbapi.InterfaceError,
            ) as exc:
                # Not the data's fault: the database is down, unreachable, full or locked.
                raise StoreUnavailableError(f"could not {what}: {exc}") from exc
            except SQLAlchemyError as exc:
                raise StoreError(f"could not {what}: {exc}") from exc

    def _writer(self) -> Engine:
        assert self._write_engine is not None
        return self._write_engine

    def _locks(self) -> WorkerLocks:
        assert self._workers is not None
        return self._workers

    # writes -----------------------------------------------------------------------------

    def write(self, batch: WriteBatch, *, wait: bool = True) -> WriteResult:
        """Commit `batch` in one transaction.

        Raises `StoreUnavailableError` when the database cannot take it for a reason that
        is not the data (down, unreachable, locked, disk full): the same batch may be
        written again later (`UncertainCommitError` when the commit itself was cut off and
        may have happened: inserts are idempotent, so writing it again is safe). Any other
        `StoreError` means the database refused a value of the batch. With `wait` False a
        SQLite lock held by another connection fails at once (`StoreBusyError`) instead of
        waiting for it.
        """
        if not batch:
            return NOTHING_WRITTEN
        with self._use("write a batch") as engine:
            assert self._statements is not None and self._queue is not None
            queue = self._queue
            fences = batch.fences
            if fences and batch.new_runs:
                # A run inserted by this very batch is held as it says.
                inserted = {run.id for run in batch.new_runs}
                fences = {k: v for k, v in fences.items() if k not in inserted}
            try:
                plan = plan_batch(self._statements, batch, fences=fences)
            except (PydanticSerializationError, UnicodeError) as exc:
                raise StoreError(f"a value is not JSON or not valid Unicode: {exc}") from exc
            # A fenced run updated by the batch is checked by its UPDATE's row count; only
            # the others (log lines or attempts alone) need a look first.
            unchecked = {k: v for k, v in fences.items() if k not in batch.run_updates}
            # Records of ends ride on PostgreSQL's notices (a SQLite file's journal keeps
            # lines only) while a process asks for them (`want_records`); not after a
            # commit that was cut off, whose batch may be stale.
            records = (
                queue.postgres and not self._uncertain and time.monotonic() < self._records_until
            )
            sent = notices(batch, records=records) if queue.postgres or self._journal else ()
            ends = ends_of(batch)  # counted in the rollup, in this transaction
            # After a commit that was cut off, every end is looked at: it may be stored.
            trusted = trusted_ends(batch, ends) if ends and not self._uncertain else set()
            unread = [run_id for run_id in ends if run_id not in trusted]
            result = NOTHING_WRITTEN
            dbapi = engine.dialect.loaded_dbapi
            # The hot path keeps one driver connection for writing and drives the
            # transaction itself: a pool checkout and SQLAlchemy's transaction bookkeeping
            # per batch cost more than a small batch's SQL.
            try:
                connection = self._write_connection(engine)
            except (dbapi.Error, OperationalError, InterfaceError) as exc:
                # No connection to be had (the server is down or unreachable).
                raise StoreUnavailableError(f"could not write a batch: {exc}") from exc
            cursor = None
            committing = False
            try:
                cursor = connection.cursor()
                while True:
                    self._begin_write(cursor, wait=wait)
                    rejected = queue.fenced_out(cursor, unchecked) if unchecked else frozenset()
                    if rejected:
                        plan = plan_batch(self._statements, batch, skip=rejected, fences=fences)
                        if sent:  # nothing is told of the refused runs' changes
                            sent = notices(batch, records=records, skip=rejected)
                    prior = self._rollup().read_prior(cursor, unread) if unread else {}
                    rollup = rollup_of(batch, ends, prior, rejected, trusted) if ends else None
                    counted = unchecked is not fences
                    if self._sqlite:
                        applied = self._apply(cursor, plan, counted=counted)
                        if applied:
                            if rollup is not None:
                                self._rollup().write(cursor, rollup)
                            queue.notify(cursor, sent)
                    else:
                        applied = self._apply_pipelined(
                            connection, cursor, plan, rollup, queue, sent, counted=counted
                        )
                    if applied:
                        break
                    # A fenced UPDATE changed fewer rows than it had: some run is no longer
                    # held as the batch says. Start again, every fenced run looked at first.
                    self._rollback_write(connection, cursor)
                    unchecked = fences
                if rejected:
                    result = WriteResult(rejected=rejected)
                if batch.claim is not None:
                    claimed = queue.claim(cursor, batch.claim)
                    if queue.postgres and batch.claim.start:
                        queue.notify(cursor, claim_notices(claimed))
                    due = None
                    if len(claimed) < batch.claim.limit:
                        due = queue.next_due(cursor, batch.claim)
                    if claimed or due is not None:
                        result = WriteResult(result.rejected, claimed, due)
                committing = True
                # Before: a feed that reads the file meanwhile knows it may be ours.
                self.last_commit = time.monotonic()
                connection.commit() if not self._sqlite else cursor.execute("COMMIT")
            except (dbapi.OperationalError, dbapi.InterfaceError) as exc:
                self._rollback(connection)
                if not wait and self._sqlite and _is_busy(exc):
                    raise StoreBusyError(f"could not write a batch: {exc}") from exc
                if committing and not self._sqlite:
                    # A PostgreSQL connection lost during COMMIT: it may have committed.
                    self._uncertain = True
                    raise UncertainCommitError(f"could not write a batch: {exc}") from exc
                raise StoreUnavailableError(f"could not write a batch: {exc}") from exc
            except (dbapi.Error, UnicodeError, ValueError) as exc:
                # sqlite3 cannot encode a lone surrogate; PostgreSQL refuses NUL in text.
                self._rollback(connection)
                raise StoreError(f"a value cannot be stored: {exc}") from exc
            except BaseException:
                self._rollback(connection)
                raise
            finally:
                if cursor is not None:
                    with contextlib.suppress(Exception):  # a broken connection's cursor
                        cursor.close()
            self._uncertain = False
            return result

    def _begin_write(self, cursor: Any, *, wait: bool) -> None:
        """SQLite: take the write lock, waiting up to BUSY_TIMEOUT for another connection
        with `wait`, failing at once without. The connection keeps the timeout of its last
        write, so writes of one kind in a row set none. Once the lock is held, nothing in
        the transaction waits for another connection (in WAL mode readers never block the
        writer, and a checkpoint that blocks writers takes the write lock first:
        `checkpoint.py`)."""
        if not self._sqlite:
            return  # psycopg opens the transaction with the first statement
        if wait != self._writer_waits:
            self._set_busy_wait(cursor, wait=wait)
        cursor.execute("BEGIN IMMEDIATE")

    def _set_busy_wait(self, on: Any, *, wait: bool) -> None:
        on.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000) if wait else 0}")
        self._writer_waits = wait

    def _apply_pipelined(
        self,
        connection: Any,
        cursor: Any,
        plan: list[Any],
        rollup: Rollup | None,
        queue: QueueSql,
        sent: Collection[tuple[str, str]],
        *,
        counted: bool,
    ) -> bool:
        """PostgreSQL: the plan, the rollup and the notices sent in one pipeline (one round
        trip for them all, where each statement waited for the one before); then, with
        `counted`, False when a fenced UPDATE changed fewer rows than it had (the caller
        rolls back what the pipeline did)."""
        checks: list[tuple[Any, int]] = []
        try:
            with connection.pipeline():
                for sql, rows, fenced, once in plan:
                    on = cursor
                    if counted and fenced:
                        on = connection.cursor()  # its row count is read after the sync
                        checks.append((on, fenced))
                    if once:
                        on.execute(sql, rows[0], prepare=False)
                    else:
                        on.executemany(sql, rows)
                if rollup is not None:
                    self._rollup().write(cursor, rollup)
                queue.notify(cursor, sent)
            return all(own.rowcount == fenced for own, fenced in checks)
        finally:
            for own, _ in checks:
                with contextlib.suppress(Exception):
                    own.close()

    @staticmethod
    def _apply(cursor: Any, plan: list[Any], *, counted: bool) -> bool:
        """Execute the plan; with `counted`, False as soon as a fenced UPDATE changes fewer
        rows than it has (the caller rolls back)."""
        for sql, rows, fenced, _ in plan:  # (never set-based on SQLite)
            cursor.executemany(sql, rows)
            if counted and fenced and cursor.rowcount != fenced:
                return False
        return True

    def _rollback_write(self, connection: Any, cursor: Any) -> None:
        if self._sqlite:
            cursor.execute("ROLLBACK")
        else:
            connection.rollback()

    @property
    def inline_writes(self) -> bool:
        """Small batches may be committed on the caller's thread: SQLite commits locally in
        microseconds; a PostgreSQL commit is a network round trip."""
        return self._sqlite

    def _write_connection(self, engine: Engine) -> Any:
        if self._raw_writer is None:
            self._raw_writer = engine.raw_connection()
        return self._raw_writer.driver_connection

    def _rollback(self, connection: Any) -> None:
        try:
            if self._sqlite:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
            else:
                connection.rollback()
        except Exception:  # the connection is broken: drop it, a new one is made next time
            self._drop_write_connection()

    def _drop_write_connection(self) -> None:
        raw, self._raw_writer = self._raw_writer, None
        self._writer_waits = True  # the next connection is made with the timeout
        if raw is not None:
            try:
                raw.invalidate()
            except Exception:  # already broken: close the driver's connection at least
                with contextlib.suppress(Exception):
                    raw.driver_connection.close()

    def _upsert(self, what: str, table: Table, values: dict[str, Any]) -> None:
        """Insert a row, or update the row with its primary key (one statement)."""
        with self._use(what) as engine:
            dialect = pg_dialect if engine.dialect.name == "postgresql" else sqlite_dialect
            keys = [c.name for c in table.primary_key.columns]
            stmt = dialect.insert(table).values(values)
            stmt = stmt.on_conflict_do_update(
                index_elements=keys,
                set_={k: stmt.excluded[k] for k in values if k not in keys},
            )
            with self._writer().begin() as conn:
                conn.execute(stmt)

    def insert_run_idempotent(self, run: Run) -> Run:
        if run.idempotency_key is None:
            self.write(WriteBatch(new_runs=[run]))
            return run
        with self._use("insert a run") as engine:
            values = dict(zip((c.name for c in runs.c), run_row(run), strict=True))
            dialect = pg_dialect if engine.dialect.name == "postgresql" else sqlite_dialect
            stmt = dialect.insert(runs).values(values)
            stmt = stmt.on_conflict_do_nothing(
                index_elements=[runs.c.idempotency_key],
                index_where=runs.c.idempotency_key.is_not(None),
            )
            with self._writer().begin() as conn:
                conn.execute(stmt)
                row = conn.execute(
                    select(*RUN_READ).where(runs.c.idempotency_key == run.idempotency_key)
                ).one()
            return run_from_row(row)

    # reads ------------------------------------------------------------------------------

    def get_run(self, run_id: str) -> Run | None:
        with self._use("read a run") as engine, engine.connect() as conn:
            row = conn.execute(select(*RUN_READ).where(runs.c.id == run_id)).first()
        return None if row is None else run_from_row(row)

    def list_runs(
        self,
        *,
        task: str | None = None,
        status: str | Collection[str] | None = None,
        parent_id: str | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> list[Run]:
        limit = min(limit, MAX_LIMIT)
        if limit <= 0:
            return []
        query = select(*RUN_READ)
        if task is not None:
            query = query.where(runs.c.task == task)
        if isinstance(status, str):
            query = query.where(runs.c.status == str(status))
        elif status is not None:
            query = query.where(runs.c.status.in_([str(s) for s in status]))
        if parent_id is not None:
            query = query.where(runs.c.parent_id == parent_id)
        if before is not None:
            # An unknown cursor has no created_at: the comparison is NULL, the page empty.
            anchor = select(runs.c.created_at).where(runs.c.id == before).scalar_subquery()
            query = query.where(
                or_(
                    runs.c.created_at < anchor,
                    and_(runs.c.created_at == anchor, runs.c.id < before),
                )
            )
        query = query.order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit)
        with self._use("list runs") as engine, engine.connect() as conn:
            rows = conn.execute(query).all()
        return [run_from_row(r) for r in rows]

    def runs_keyed(self, prefix: str, *, limit: int = 100) -> list[Run]:
        limit = min(limit, MAX_LIMIT)
        if limit <= 0 or not prefix:
            return []
        # A range of the unique key's index: every key that starts with the prefix lies
        # between it and the prefix followed by the greatest character.
        key = runs.c.idempotency_key
        query = (
            select(*RUN_READ)
            .where(key >= prefix, key < prefix + "\U0010ffff")
            .order_by(key.desc())
            .limit(limit)
        )
        with self._use("list runs by key") as engine, engine.connect() as conn:
            rows = conn.execute(query).all()
        return [run_from_row(r) for r in rows]

    def get_attempts(self, run_id: str) -> list[Attempt]:
        query = select(*ATTEMPT_READ).where(attempts.c.run_id == run_id)
        with self._use("read attempts") as engine, engine.connect() as conn:
            rows = conn.execute(query.order_by(attempts.c.number)).all()
        return [attempt_from_row(r) for r in rows]

    def get_logs(self, run_id: str, *, after_id: int = 0, limit: int = 1000) -> list[LogLine]:
        limit = min(limit, MAX_LIMIT)
        if limit <= 0:
            return []
        query = (
            select(*LOG_READ)
            .where(log_lines.c.run_id == run_id, log_lines.c.id > after_id)
            .order_by(log_lines.c.id)
            .limit(limit)
        )
        with self._use("read logs") as engine, engine.connect() as conn:
            rows = conn.execute(query).all()
        return [log_from_row(r) for r in rows]

    # workers and ownership --------------------------------------------------------------

    def register_worker(
        self,
        worker_id: str,
        *,
        hostname: str,
        pid: int,
        name: str | None = None,
        queues: Collection[str] | None = None,
        concurrency: int | None = None,
        ttl: float = LEASE_TTL,
    ) -> None:
        with self._use("register a worker"):
            assert self._queue is not None
            locks = self._locks()
            locks.acquire(worker_id)
            now = time.time()
            try:
                with self._writer().begin() as conn:
                    conn.execute(delete(workers).where(workers.c.id == worker_id))
                    conn.execute(
                        insert(workers).values(
                            id=worker_id,
                            hostname=hostname,
                            pid=pid,
                            started_at=now,
                            heartbeat_at=now,
                            name=name,
                            queues=None if queues is None else json.dumps(sorted(set(queues))),
                            concurrency=concurrency,
                            expires_at=literal_column(self._queue.now_sql) + ttl,
                        )
                    )
                    self._look_for_others(conn, worker_id)
            except BaseException:
                locks.release(worker_id)
                raise

    def heartbeat(self, worker_id: str, *, ttl: float = LEASE_TTL) -> bool:
        with self._use("record a heartbeat"):
            assert self._queue is not None
            self._locks().check(worker_id)
            db_now: Any = literal_column(self._queue.now_sql, Double())
            with self._writer().begin() as conn:
                # A lease that ran out is renewed all the same while no reaper has found
                # the worker lost: nobody took its runs, so nothing was done twice.
                renewed = conn.execute(
                    update(workers)
                    .where(workers.c.id == worker_id, workers.c.lost_at.is_(None))
                    .values(heartbeat_at=time.time(), expires_at=db_now + ttl)
                )
                self._look_for_others(conn, worker_id)
            return renewed.rowcount == 1

    def _look_for_others(self, conn: Connection, worker_id: str) -> None:
        """On a SQLite file: journal changes while another live engine uses the file (it
        learns from `run_changes` which runs to read back), and forget old entries."""
        if not self._sqlite:
            return
        assert self._queue is not None
        db_now: Any = literal_column(self._queue.now_sql, Double())
        others = conn.execute(
            select(workers.c.id)
            .where(
                workers.c.id != worker_id,
                workers.c.lost_at.is_(None),
                workers.c.expires_at >= db_now,
            )
            .limit(1)
        ).first()
        self._journal = others is not None
        conn.execute(delete(run_changes).where(run_changes.c.created_at < db_now - JOURNAL_KEEP))

    def update_worker(self, worker_id: str, *, queues: Collection[str] | None) -> None:
        """Record the queues a worker serves now (they grow as it learns tasks)."""
        with self._use("update a worker"):
            shown = None if queues is None else json.dumps(sorted(set(queues)))
            with self._writer().begin() as conn:
                conn.execute(update(workers).where(workers.c.id == worker_id).values(queues=shown))

    def retire_worker(self, worker_id: str) -> None:
        """A worker that lost its lease lets its id go: the lock is released and the
        record marked expired, so a reaper gives its runs back (it registers anew)."""
        with self._use("retire a worker"):
            with self._writer().begin() as conn:
                conn.execute(
                    update(workers).where(workers.c.id == worker_id).values(expires_at=0.0)
                )
            self._locks().release(worker_id)

    def unregister_worker(self, worker_id: str) -> None:
        with self._use("unregister a worker"):
            with self._writer().begin() as conn:
                conn.execute(delete(workers).where(workers.c.id == worker_id))
            self._locks().release(worker_id)

    def _lease_state(self, conn: Any, worker_id: str) -> bool:
        """Whether a worker's record says it is alive: not lost, lease not run out."""
        assert self._queue is not None
        db_now: Any = literal_column(self._queue.now_sql, Double())
        row = conn.execute(
            select(workers.c.lost_at, workers.c.expires_at, db_now).where(workers.c.id == worker_id)
        ).first()
        if row is None:
            return True  # no record (made before leases): its lock alone says
        lost_at, expires_at, now = row
        return lost_at is None and (expires_at is None or expires_at >= now)

    def is_worker_alive(self, worker_id: str) -> bool:
        with self._use("check a worker") as engine:
            if not self._locks().is_alive(worker_id):
                return False
            with engine.connect() as conn:
                return self._lease_state(conn, worker_id)

    def reap(self, worker_id: str) -> int:
        with self._use("reap dead workers") as engine:
            assert self._queue is not None
            queue = self._queue
            locks = self._locks()
            db_now: Any = literal_column(queue.now_sql, Double())
            with engine.connect() as conn:
                rows = conn.execute(
                    select(workers.c.id, workers.c.expires_at, db_now).where(
                        workers.c.lost_at.is_(None), workers.c.id != worker_id
                    )
                ).all()
                known = {w for w, _, _ in rows} | {worker_id}
                # Owners with no live record are rare (runs made before workers were
                # recorded, or a round that had to skip some): looked for every few
                # rounds, since it reads every run held (and always below, once a worker
                # is found dead).
                orphaned: list[str] = []
                self._reap_rounds += 1
                if self._reap_rounds % ORPHANS_EVERY == 1:
                    cursor = conn.connection.cursor()
                    try:
                        orphaned = queue.orphan_owners(cursor, known)
                    finally:
                        cursor.close()
            # Looked at outside any write transaction (a lock check is a round trip of its
            # own), so a round with nobody dead takes no write lock at all.
            expired = [w for w, at, now in rows if at is not None and at < now]
            unlocked = [w for w, _, _ in rows if w not in expired and not locks.is_alive(w)]
            if not (expired or unlocked or any(not locks.is_alive(w) for w in orphaned)):
                return 0
            touched = 0
            with self._writer().begin() as conn:
                cursor = conn.connection.cursor()
                try:
                    if not queue.take_reaper_lock(cursor):
                        return 0
                    now = time.time()
                    dead = [
                        *(w for w in expired if queue.mark_lost(cursor, w, now, expired=True)),
                        *(w for w in unlocked if queue.mark_lost(cursor, w, now, expired=False)),
                        *(w for w in queue.orphan_owners(cursor, known) if not locks.is_alive(w)),
                    ]
                    for dead_id in dead:
                        touched += queue.reap_worker(cursor, dead_id, now)
                    if touched:
                        queue.notify(cursor, [(QUEUE_CHANNEL, "")])
                finally:
                    cursor.close()
            return touched

    def watch(self, callback: Notice) -> ChangeFeed | None:
        """Start a feed of other processes' commits (see `feed.py`); None for an
        in-memory database, which no other process can reach."""
        if self._engine is None:
            raise StoreError("cannot watch the store: it is not open (call open() first)")
        if self._engine.dialect.name == "postgresql":
            url = make_url(self.url).set(drivername="postgresql")
            conninfo = url.render_as_string(hide_password=False)
            import psycopg

            def heard(channel: str, payload: str) -> None:
                if channel == LISTENING_CHANNEL:  # for this store's writes, not the caller
                    self._records_until = time.monotonic() + RECORDS_FOR
                else:
                    callback(channel, payload)

            return PostgresFeed(lambda: psycopg.connect(conninfo), heard).start()
        if self._file is not None:
            return SqliteFeed(self._file, callback, lambda: self.last_commit).start()
        return None

    def want_records(self) -> None:
        """PostgreSQL: tell every process on the database, this one too, to put the records
        of the ends it writes in its notices for `RECORDS_FOR` seconds."""
        self._records_until = time.monotonic() + RECORDS_FOR
        if self._queue is None or not self._queue.postgres:
            return
        with self._use("ask for the records of ends") as engine, engine.connect() as conn:
            conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": LISTENING_CHANNEL})
            conn.commit()

    def finished_among(self, run_ids: Collection[str]) -> list[Run]:
        return self._runs_among(run_ids, finished=True)

    def get_runs(self, run_ids: Collection[str]) -> list[Run]:
        return self._runs_among(run_ids, finished=False)

    def _runs_among(self, run_ids: Collection[str], *, finished: bool) -> list[Run]:
        ids = sorted(set(run_ids))
        found: list[Run] = []
        with self._use("read runs") as engine, engine.connect() as conn:
            for start in range(0, len(ids), 500):
                query = select(*RUN_READ).where(runs.c.id.in_(ids[start : start + 500]))
                if finished:
                    query = query.where(runs.c.status.not_in(UNFINISHED))
                found.extend(run_from_row(r) for r in conn.execute(query))
        return found

    def logs_after(self, after_id: int, *, limit: int = 1000) -> list[LogLine]:
        query = (
            select(*LOG_READ)
            .where(log_lines.c.id > after_id)
            .order_by(log_lines.c.id)
            .limit(min(limit, MAX_LIMIT))
        )
        with self._use("read log lines") as engine, engine.connect() as conn:
            return [log_from_row(r) for r in conn.execute(query)]

    def last_log_id(self) -> int:
        with self._use("read log lines") as engine, engine.connect() as conn:
            return int(conn.execute(select(func.max(log_lines.c.id))).scalar() or 0)

    def _workers_holding(self, conn: Any) -> dict[str, int]:
        held = conn.execute(
            select(runs.c.worker_id, func.count())
            .where(runs.c.status.in_(UNFINISHED), runs.c.worker_id.is_not(None))
            .group_by(runs.c.worker_id)
        )
        return {str(worker): int(count) for worker, count in held}

    def peer_queues(self, worker_id: str) -> frozenset[str]:
        with self._use("read the queues other workers serve") as engine:
            assert self._queue is not None
            db_now: Any = literal_column(self._queue.now_sql, Double())
            with engine.connect() as conn:
                rows = conn.execute(
                    select(workers.c.queues).where(
                        workers.c.id != worker_id,
                        workers.c.lost_at.is_(None),
                        workers.c.concurrency.is_not(None),
                        workers.c.expires_at >= db_now,
                    )
                ).scalars()
                return frozenset(q for row in rows if row for q in json.loads(row))

    def list_workers(self) -> list[WorkerRecord]:
        with self._use("list the workers") as engine:
            assert self._queue is not None
            db_now: Any = literal_column(self._queue.now_sql, Double()).label("db_now")
            with engine.connect() as conn:
                rows = conn.execute(
                    select(workers, db_now).order_by(workers.c.started_at, workers.c.id)
                ).all()
                holding = self._workers_holding(conn)
            locks = self._locks()
            return [
                WorkerRecord(
                    id=row.id,
                    hostname=row.hostname,
                    pid=row.pid,
                    started_at=row.started_at,
                    heartbeat_at=row.heartbeat_at,
                    alive=(
                        row.lost_at is None
                        and (row.expires_at is None or row.expires_at >= row.db_now)
                        and locks.is_alive(row.id)
                    ),
                    holds=holding.get(row.id, 0),
                    name=row.name,
                    queues=None if row.queues is None else list(json.loads(row.queues)),
                    concurrency=row.concurrency,
                    expires_at=row.expires_at,
                )
                for row in rows
            ]

    def prune_workers(self, *, lost_before: float) -> int:
        with self._use("prune lost workers") as engine:
            with engine.connect() as conn:
                stale = (
                    conn.execute(select(workers.c.id).where(workers.c.heartbeat_at < lost_before))
                    .scalars()
                    .all()
                )
                holding = self._workers_holding(conn) if stale else {}
            locks = self._locks()
            gone = [w for w in stale if w not in holding and not locks.is_alive(w)]
            if gone:
                with self._writer().begin() as conn:
                    conn.execute(delete(workers).where(workers.c.id.in_(gone)))
            return len(gone)

    def claim_orphaned_runs(self, worker_id: str, tasks: Collection[str]) -> list[Run]:
        tasks = sorted(set(tasks))
        if not tasks:
            return []
        unfinished = and_(runs.c.status.in_(UNFINISHED), runs.c.task.in_(tasks))
        with self._use("claim orphaned runs") as engine:
            with engine.connect() as conn:
                query = select(runs.c.worker_id).distinct().where(unfinished)
                owners = set(conn.execute(query).scalars())
                lost = set(
                    conn.execute(
                        select(workers.c.id).where(
                            workers.c.id.in_([w for w in owners if w is not None]),
                            workers.c.lost_at.is_not(None),
                        )
                    ).scalars()
                )
            # Each distinct owner is checked once, outside any transaction.
            locks = self._locks()
            dead = sorted(
                w
                for w in owners
                if w is not None and w != worker_id and (w in lost or not locks.is_alive(w))
            )
            gone = [runs.c.worker_id.in_(dead)] if dead else []
            if None in owners:
                gone.append(runs.c.worker_id.is_(None))
            if not gone:
                return []
            query = select(*RUN_READ).where(unfinished, or_(*gone))
            with engine.connect() as conn:
                candidates = [run_from_row(r) for r in conn.execute(query)]
            assert self._statements is not None
            claimed: list[Run] = []
            with self._writer().begin() as conn:
                for run in candidates:
                    # Compare-and-set on the owner: of two claimers only one update takes.
                    params: tuple[str, ...]
                    if run.worker_id is None:
                        sql, params = self._statements.claim_unowned, (worker_id, run.id)
                    else:
                        sql = self._statements.claim_from
                        params = (worker_id, run.id, run.worker_id)
                    if conn.exec_driver_sql(sql, params).rowcount == 1:
                        run.worker_id = worker_id
                        claimed.append(run)
        claimed.sort(key=lambda r: (r.created_at, r.id))
        return claimed

    def request_cancel(self, run_id: str) -> Run | None:
        with self._use("request a cancellation"):
            assert self._queue is not None
            with self._writer().begin() as conn:
                held = conn.execute(
                    update(runs)
                    .where(runs.c.id == run_id, runs.c.status.in_(UNFINISHED))
                    .values(cancel_requested=True)
                    .returning(runs.c.worker_id)
                ).first()
                if held is not None and held.worker_id is not None:
                    cursor = conn.connection.cursor()
                    try:  # the holder, wherever it runs, hears of it at the commit
                        self._queue.notify(cursor, [(CANCEL_CHANNEL, held.worker_id)])
                    finally:
                        cursor.close()
            return self.get_run(run_id)

    def cancel_requests(self, worker_id: str) -> list[str]:
        # Read each time another process may have changed the database: built once.
        with self._use("read cancellation requests") as engine, engine.connect() as conn:
            return list(conn.execute(_CANCEL_REQUESTS, {"worker": worker_id}).scalars())

    def cancel_orphaned_run(self, run_id: str, *, finished_at: float) -> bool:
        with self._use("cancel a run"):
            run = self.get_run(run_id)
            if run is None or run.is_finished:
                return False
            owner = run.worker_id
            if owner is not None and self.is_worker_alive(owner):
                return False
            same_owner = runs.c.worker_id.is_(None) if owner is None else runs.c.worker_id == owner
            cancelled = RunStatus.CANCELLED.value
            with self._writer().begin() as conn:
                result = conn.execute(
                    update(runs)
                    .where(runs.c.id == run_id, runs.c.status.in_(UNFINISHED), same_owner)
                    # A new lease: a late end from the gone worker is refused by its fence.
                    .values(status=cancelled, finished_at=finished_at, lease=runs.c.lease + 1)
                )
                if result.rowcount != 1:
                    return False
                ended = Rollup()
                ended.add(run.task, cancelled, run.started_at, finished_at)
                cursor = conn.connection.cursor()
                try:
                    self._rollup().write(cursor, ended)
                finally:
                    cursor.close()
                # The attempt the dead worker left running ends with the run.
                conn.execute(
                    update(attempts)
                    .where(attempts.c.run_id == run_id, attempts.c.status == "running")
                    .values(status=cancelled, finished_at=finished_at)
                )
            return True

    # services ---------------------------------------------------------------------------

    def save_service(self, record: ServiceRecord) -> None:
        try:
            values = service_row(record)
        except PydanticSerializationError as exc:
            raise StoreError(f"could not save a service: a value is not JSON: {exc}") from exc
        self._upsert("save a service", services, values)

    def get_service(self, name: str) -> ServiceRecord | None:
        query = select(*SERVICE_READ).where(services.c.name == name)
        with self._use("read a service") as engine, engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else service_from_row(row)

    def list_services(self) -> list[ServiceRecord]:
        query = select(*SERVICE_READ).order_by(services.c.name)
        with self._use("list services") as engine, engine.connect() as conn:
            rows = conn.execute(query).all()
        return [service_from_row(r) for r in rows]

    def save_service_start(self, name: str, start: ServiceStartRecord) -> None:
        self._upsert("save a service start", service_starts, service_start_row(name, start))

    def get_service_starts(self, name: str, *, limit: int = 100) -> list[ServiceStartRecord]:
        limit = min(limit, MAX_LIMIT)
        if limit <= 0:
            return []
        query = (
            select(*SERVICE_START_READ)
            .where(service_starts.c.service == name)
            .order_by(service_starts.c.number.desc())
            .limit(limit)
        )
        with self._use("read service starts") as engine, engine.connect() as conn:
            rows = conn.execute(query).all()
        return [service_start_from_row(r) for r in rows]

    # service control ----------------------------------------------------------------------

    def add_service_request(
        self,
        service: str,
        action: str,
        config: Any = None,
        *,
        requested_at: float | None = None,
        requested_by: str | None = None,
    ) -> int:
        values = {
            "service": service,
            "action": action,
            "config": json_or_none(config),
            "requested_at": time.time() if requested_at is None else requested_at,
            "requested_by": requested_by,
        }
        with self._use("add a service request"), self._writer().begin() as conn:
            result = conn.execute(insert(service_requests).values(values))
            key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    def pending_service_requests(self) -> list[ServiceRequest]:
        query = (
            select(*SERVICE_REQUEST_READ)
            .where(service_requests.c.handled_at.is_(None))
            .order_by(service_requests.c.id)
        )
        with self._use("read service requests") as engine, engine.connect() as conn:
            rows = conn.execute(query).all()
        return [service_request_from_row(r) for r in rows]

    def finish_service_request(
        self, request_id: int, outcome: Any, *, handled_at: float | None = None
    ) -> bool:
        values = {
            "handled_at": time.time() if handled_at is None else handled_at,
            "outcome": json_or_none(outcome),
        }
        stmt = (
            update(service_requests)
            .where(service_requests.c.id == request_id, service_requests.c.handled_at.is_(None))
            .values(values)
        )
        with self._use("finish a service request"), self._writer().begin() as conn:
            return bool(conn.execute(stmt).rowcount)

    def get_service_request(self, request_id: int) -> ServiceRequest | None:
        query = select(*SERVICE_REQUEST_READ).where(service_requests.c.id == request_id)
        with self._use("read a service request") as engine, engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else service_request_from_row(row)

    def cancel_service_request(self, request_id: int) -> bool:
        stmt = delete(service_requests).where(
            service_requests.c.id == request_id, service_requests.c.handled_at.is_(None)
        )
        with self._use("withdraw a service request"), self._writer().begin() as conn:
            return bool(conn.execute(stmt).rowcount)

    def add_service_log_lines(self, lines: Collection[ServiceLogLine]) -> None:
        if not lines:
            return
        rows = [
            {
                "service": line.service,
                "start_number": line.start_number,
                "created_at": line.created_at,
                "level": line.level,
                "message": line.message,
            }
            for line in lines
        ]
        with self._use("save service log lines"), self._writer().begin() as conn:
            conn.execute(insert(service_log_lines), rows)

    def get_service_logs(
        self, service: str, *, after_id: int = 0, limit: int = 1000
    ) -> list[ServiceLogLine]:
        limit = min(limit, MAX_LIMIT)
        if limit <= 0:
            return []
        query = (
            select(*SERVICE_LOG_READ)
            .where(service_log_lines.c.service == service, service_log_lines.c.id > after_id)
            .order_by(service_log_lines.c.id)
            .limit(limit)
        )
        with self._use("read service logs") as engine, engine.connect() as conn:
            rows = conn.execute(query).all()
        return [service_log_from_row(r) for r in rows]

    # API tokens ---------------------------------------------------------------------------

    def add_api_token(self, record: ApiTokenRecord) -> None:
        values = {
            "id": record.id,
            "name": record.name,
            "role": record.role,
            "token_hash": record.token_hash,
            "created_at": record.created_at,
            "revoked_at": record.revoked_at,
        }
        try:
            with self._use("add an API token"), self._writer().begin() as conn:
                conn.execute(insert(api_tokens).values(values))
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise StoreError(
                    f"an API token with id {record.id!r} or the same secret exists already"
                ) from exc
            raise

    def find_api_token(self, token_hash: str) -> ApiTokenRecord | None:
        query = select(api_tokens).where(api_tokens.c.token_hash == token_hash)
        with self._use("read an API token") as engine, engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else ApiTokenRecord(**row._asdict())

    def list_api_tokens(self) -> list[ApiTokenRecord]:
        query = select(api_tokens).order_by(api_tokens.c.created_at, api_tokens.c.id)
        with self._use("list API tokens") as engine, engine.connect() as conn:
            rows = conn.execute(query).all()
        return [ApiTokenRecord(**row._asdict()) for row in rows]

    def revoke_api_token(self, token_id: str, *, revoked_at: float | None = None) -> bool:
        stmt = (
            update(api_tokens)
            .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=time.time() if revoked_at is None else revoked_at)
        )
        with self._use("revoke an API token"), self._writer().begin() as conn:
            return bool(conn.execute(stmt).rowcount)

    # packages ---------------------------------------------------------------------------

    def save_package(self, record: PackageRecord) -> None:
        try:
            values = package_row(record)
        except PydanticSerializationError as exc:
            raise StoreError(f"could not save a package: a value is not JSON: {exc}") from exc
        self._upsert("save a package", packages, values)

    def get_package(self, name: str) -> PackageRecord | None:
        query = select(*PACKAGE_READ).where(packages.c.name == name)
        with self._use("read a package") as engine, engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else package_from_row(row)

    def list_packages(self) -> list[PackageRecord]:
        query = select(*PACKAGE_READ).order_by(packages.c.name)
        with self._use("list packages") as engine, engine.connect() as conn:
            rows = conn.execute(query).all()
        return [package_from_row(r) for r in rows]

    def delete_package(self, name: str) -> bool:
        with self._use("delete a package"), self._writer().begin() as conn:
            result = conn.execute(delete(packages).where(packages.c.name == name))
        return bool(result.rowcount)
