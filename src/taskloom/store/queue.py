"""The run queue in SQL: claims, fences, the reaper and wake-up notices.

Everything here runs on a driver cursor inside a transaction the caller opened (`BEGIN
IMMEDIATE` on SQLite, so a claim or a reap holds the one write lock; a transaction on
PostgreSQL, where a claim skips the rows other claimers locked):

* a claim takes up to N claimable runs in priority order in one statement, raising each
  run's lease; a task with a concurrency limit is counted and claimed under a lock of its
  own (an advisory transaction lock on PostgreSQL), so the limit holds across workers;
* a fence check locks runs (in id order, so two batches never deadlock) and names those no
  longer held by the worker under the lease it wrote with (a fenced UPDATE carries its
  fence in its WHERE clause instead; see `SqlStore.write`);
* the reaper gives back the runs of dead workers, one reaper at a time;
* on PostgreSQL, a commit that makes runs claimable, ends runs or asks for a cancel sends
  one NOTIFY per channel (never one per row): workers and waiters in other processes wake.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from pydantic_core import PydanticSerializationError, to_json
from sqlalchemy.engine import Dialect

from ..exceptions import WorkerLostError
from ..runs import ErrorInfo, Run, RunStatus
from .base import ClaimRequest, WriteBatch
from .rollup import Rollup, RollupSql
from .rows import RUN_READ, UNFINISHED, run_from_row

__all__ = [
    "CANCEL_CHANNEL",
    "LISTENING_CHANNEL",
    "QUEUE_CHANNEL",
    "RECORDS_FOR",
    "RUNS_CHANNEL",
    "QueueSql",
    "claim_notices",
    "lost_error",
    "notices",
]

#: NOTIFY channels: runs became claimable (payload: their queues), runs were recorded or
#: changed (payload: `id status` lines, some with the run's record), a cancel was asked
#: of a worker (payload: the worker's id), a process tells the events of others' runs
#: to listeners (no payload: see `RECORDS_FOR`).
QUEUE_CHANNEL = "taskloom_queue"
RUNS_CHANNEL = "taskloom_runs"
CANCEL_CHANNEL = "taskloom_cancel"
LISTENING_CHANNEL = "taskloom_listening"
#: Seconds a store puts the records of ends in its notices after it last heard that a
#: process tells others' runs to listeners (`RemoteEvents` asks every second while its
#: engine has any). Nobody listening, the notices name runs only: each record costs the
#: writer an encoding and every process on the channel a longer payload, for nobody.
RECORDS_FOR = 5.0
#: PostgreSQL refuses a NOTIFY payload of 8,000 bytes or more: longer ones are split.
PAYLOAD_MAX = 7_800
#: The longest run record (JSON, in bytes) a notice carries; a longer one is read back.
RECORD_MAX = 2_000
#: Ids per statement on SQLite (well under its limit of bound parameters).
CHUNK = 500

_RUN_COLUMNS = ", ".join(c.name for c in RUN_READ)


def _key(text: str) -> int:
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


REAPER_KEY = _key("taskloom-reaper")
#: Workflow runs (`workflow:<name>`): workflow recovery resumes them (their steps are reaped
#: like any run).
WORKFLOWS = "workflow:%"


def lost_error(run_id: str, task: str, attempt: int, retryable: bool) -> ErrorInfo:
    lost = WorkerLostError(
        f"the engine executing attempt {attempt} of run {run_id} (task {task!r}) "
        "stopped without finishing it"
    )
    error = ErrorInfo.from_exception(lost, retryable=retryable)
    error.traceback = None
    return error


def notices(
    batch: WriteBatch, *, records: bool = False, skip: Collection[str] = ()
) -> list[tuple[str, str]]:
    """The NOTIFYs a batch's commit sends: the queues where runs became claimable, and one
    `id status` line per run recorded or changing status (`id log` for a run that got
    log lines), so other processes can follow runs they do not execute. With `records`,
    the line of a run the batch ends whose record the writer holds (`WriteBatch.records`)
    carries the run as stored, `id status {json}`, when that is at most `RECORD_MAX`
    bytes: a server told of the end needs no read. The runs in `skip` (whose changes were
    refused) are left out.
    """
    queues = {run.queue for run in batch.new_runs if run.worker_id is None}
    lines = [f"{run.id} {run.status}" for run in batch.new_runs if run.id not in skip]
    whole = batch.records if records else {}
    for run_id, fields in batch.run_updates.items():
        if run_id in skip:
            continue
        status = fields.get("status")
        if status is not None:
            record = whole.get(run_id)
            line = _with_record(_laid_over(record, fields)) if record is not None else None
            lines.append(line or f"{run_id} {status}")
        if "worker_id" in fields and fields["worker_id"] is None:
            queues.add("")  # given back: a queue the writer did not say, wake everyone
    if batch.logs:
        logged = dict.fromkeys(g.run_id for g in batch.logs if g.run_id not in skip)
        lines.extend(f"{run_id} log" for run_id in logged)
    sent: list[tuple[str, str]] = []
    if queues:
        sent.append((QUEUE_CHANNEL, ",".join(sorted(queues))))
    sent.extend((RUNS_CHANNEL, payload) for payload in _chunks(lines))
    return sent


def claim_notices(claimed: Sequence[Run]) -> list[tuple[str, str]]:
    """The NOTIFYs of a claim's commit: an `id running` line for each run it started (see
    `ClaimRequest.start`), as `notices` tells any other start."""
    lines = [f"{run.id} running" for run in claimed if run.status is RunStatus.RUNNING]
    return [(RUNS_CHANNEL, payload) for payload in _chunks(lines)]


def _with_record(run: Run) -> str | None:
    """`id status {json}` for a run whose record is at most `RECORD_MAX` bytes."""
    try:
        encoded = to_json(run.as_dict())
    except (PydanticSerializationError, ValueError):
        return None  # not for a notice: told by id, and read where it is stored
    if len(encoded) > RECORD_MAX:
        return None
    return f"{run.id} {run.status.value} {encoded.decode()}"


def _laid_over(record: Run, fields: dict[str, Any]) -> Run:
    """The engine's record of a run with a batch's changes to it: the run as stored."""
    run = record.copy()
    for name, value in fields.items():
        setattr(run, name, value)
    run.status = RunStatus(run.status)
    if isinstance(run.error, dict):
        run.error = ErrorInfo.from_dict(run.error)
    run.cancel_requested = bool(run.cancel_requested)
    return run


def _chunks(lines: Sequence[str]) -> Iterable[str]:
    chunk: list[str] = []
    size = 0
    for line in lines:
        length = len(line) if line.isascii() else len(line.encode())
        if chunk and size + length + 1 > PAYLOAD_MAX:
            yield "\n".join(chunk)
            chunk, size = [], 0
        chunk.append(line)
        size += length + 1
    if chunk:
        yield "\n".join(chunk)


class QueueSql:
    """The queue's statements for one dialect, run on a driver cursor."""

    def __init__(self, dialect: Dialect) -> None:
        self.postgres = dialect.name == "postgresql"
        self._mark = "?" if dialect.paramstyle == "qmark" else "%s"
        self.rollup = RollupSql(dialect.name)
        # The database's clock, in seconds since the epoch.
        self.now_sql = (
            "extract(epoch from clock_timestamp())::double precision"
            if self.postgres
            else "((julianday('now') - 2440587.5) * 86400.0)"
        )

    # helpers ----------------------------------------------------------------------------
    def _in(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """`column = ?` for one value (an index's order holds), else `column IN (...)` on
        SQLite and `column = ANY(%s)` on PostgreSQL."""
        if len(values) == 1:
            return f"{column} = {self._mark}", [values[0]]
        if self.postgres:
            return f"{column} = ANY({self._mark})", [list(values)]
        marks = ", ".join([self._mark] * len(values))
        return f"{column} IN ({marks})", list(values)

    def db_now(self, cursor: Any) -> float:
        cursor.execute(f"SELECT {self.now_sql}")
        return float(cursor.fetchone()[0])

    def notify(self, cursor: Any, sent: Collection[tuple[str, str]]) -> None:
        """Tell other processes what this transaction changes, as it commits: NOTIFY on
        PostgreSQL; on a SQLite file (no NOTIFY; its feed sees every commit) the runs'
        lines go into `run_changes`, one row for the transaction."""
        if not sent:
            return
        if self.postgres:
            calls = ", ".join(f"pg_notify({self._mark}, {self._mark})" for _ in sent)
            cursor.execute(f"SELECT {calls}", [v for pair in sent for v in pair])
            return
        lines = "\n".join(payload for channel, payload in sent if channel == RUNS_CHANNEL)
        if lines:
            cursor.execute(
                f"INSERT INTO run_changes (created_at, lines) VALUES ({self.now_sql}, ?)",
                (lines,),
            )

    def prune_changes(self, cursor: Any, keep: float) -> None:
        """Forget the `run_changes` rows older than `keep` seconds."""
        cursor.execute(f"DELETE FROM run_changes WHERE created_at < {self.now_sql} - ?", (keep,))

    # fences -----------------------------------------------------------------------------
    def fenced_out(self, cursor: Any, fences: dict[str, tuple[str, int]]) -> frozenset[str]:
        """Lock the fenced runs and return those whose holder or lease is not the one
        their changes were made under."""
        ids = sorted(fences)
        held: dict[str, tuple[str | None, int]] = {}
        step = len(ids) if self.postgres else CHUNK
        for start in range(0, len(ids), max(step, 1)):
            where, params = self._in("id", ids[start : start + step])
            lock = " ORDER BY id FOR UPDATE" if self.postgres else ""
            cursor.execute(f"SELECT id, worker_id, lease FROM runs WHERE {where}{lock}", params)
            for run_id, worker_id, lease in cursor.fetchall():
                held[run_id] = (worker_id, lease)
        return frozenset(run_id for run_id in ids if held.get(run_id) != fences[run_id])

    # claims -----------------------------------------------------------------------------
    def claim(self, cursor: Any, request: ClaimRequest) -> list[Run]:
        """Claim up to `request.limit` runs; returns them held, in priority order."""
        limits = request.limits
        free = [t for t in sorted(set(request.tasks)) if t not in limits]
        queues = sorted(set(request.queues))
        room = request.limit
        claimed: list[Run] = []
        if room <= 0 or not queues:
            return claimed
        if free:
            claimed.extend(self._claim(cursor, request, free, queues, room))
            room -= len(claimed)
        for task in sorted(t for t in limits if t in set(request.tasks)):
            if room <= 0:
                break
            if self.postgres:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_key(f"taskloom-task:{task}")])
            cursor.execute(
                "SELECT count(*) FROM runs WHERE worker_id IS NOT NULL "
                f"AND status IN ('pending', 'running') AND task = {self._mark}",
                [task],
            )
            (held,) = cursor.fetchone()
            allowed = min(room, limits[task] - int(held))
            if allowed > 0:
                taken = self._claim(cursor, request, [task], queues, allowed)
                claimed.extend(taken)
                room -= len(taken)
        claimed.sort(key=lambda r: (-r.priority, r.created_at, r.id))
        return claimed

    def next_due(self, cursor: Any, request: ClaimRequest) -> float | None:
        """When the next claimable run of the request's tasks and queues is due."""
        queues = sorted(set(request.queues))
        tasks = sorted(set(request.tasks))
        if not queues or not tasks:
            return None
        in_queue, queue_params = self._in("queue", queues)
        in_task, task_params = self._in("task", tasks)
        cursor.execute(
            "SELECT min(scheduled_at) FROM runs WHERE status = 'pending' AND worker_id IS NULL "
            f"AND {in_queue} AND {in_task} AND scheduled_at > {self._mark}",
            [*queue_params, *task_params, request.now],
        )
        row = cursor.fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def _claim(
        self,
        cursor: Any,
        request: ClaimRequest,
        tasks: Sequence[str],
        queues: Sequence[str],
        limit: int,
    ) -> list[Run]:
        in_queue, queue_params = self._in("queue", queues)
        in_task, task_params = self._in("task", tasks)
        m = self._mark
        pick = (
            "SELECT id FROM runs WHERE status = 'pending' AND worker_id IS NULL "
            f"AND {in_queue} AND {in_task} AND (scheduled_at IS NULL OR scheduled_at <= {m}) "
            f"ORDER BY queue, priority DESC, created_at, id LIMIT {m}"
        )
        if self.postgres:
            pick += " FOR UPDATE SKIP LOCKED"
        # With one queue the order above is the index's; with several, priority comes first.
        if len(queues) > 1:
            pick = pick.replace("ORDER BY queue, ", "ORDER BY ")
        sets, set_params = self._starts(request, tasks)
        if self.postgres:
            # The rows picked are named by their place (`ctid`): locked by the pick, they
            # cannot move before the UPDATE, which then reads each where it is instead of
            # looking it up by id again (a claim costs the server about a tenth less). A
            # row another commit changed between this statement's snapshot and its lock
            # is left out of this claim (the next takes it).
            picked = pick.replace("SELECT id FROM", "SELECT ctid FROM", 1)
            target = f"FROM ({picked}) AS picked WHERE runs.ctid = picked.ctid"
        else:
            target = f"WHERE id IN ({pick})"
        sql = (
            f"UPDATE runs SET worker_id = {m}, lease = lease + 1{sets} {target} "
            f"RETURNING {_RUN_COLUMNS}"
        )
        params = [request.worker_id, *set_params, *queue_params, *task_params, request.now, limit]
        if sets and self.postgres:
            # The attempts of the runs it started are opened by the same statement.
            opened, opened_params = self._opened_attempts(request, "claimed", "")
            sql = f"WITH claimed AS ({sql}), opened AS ({opened}) SELECT * FROM claimed"
            params.extend(opened_params)
        cursor.execute(sql, params)
        claimed = [run_from_row(row) for row in cursor.fetchall()]
        if sets and not self.postgres:
            ids = [run.id for run in claimed if run.status == "running"]
            for start in range(0, len(ids), CHUNK):
                where, where_params = self._in("id", ids[start : start + CHUNK])
                opened, opened_params = self._opened_attempts(
                    request, "runs", f" AND worker_id = {m} AND {where}"
                )
                cursor.execute(opened, [*opened_params, request.worker_id, *where_params])
        return claimed

    def _starts(self, request: ClaimRequest, tasks: Sequence[str]) -> tuple[str, list[Any]]:
        """The claim's SET clauses that start the runs of `request.start`'s tasks among
        `tasks`: for all of them plain, for some under a CASE on the task."""
        starting = [t for t in tasks if t in request.start]
        if not starting:
            return "", []
        m = self._mark
        columns = (
            ("status", "'running'"),
            ("attempts", "attempts + 1"),
            ("started_at", f"coalesce(started_at, {m})"),
            ("scheduled_at", "NULL"),
        )
        if len(starting) == len(tasks):
            sets = "".join(f", {column} = {value}" for column, value in columns)
            return sets, [request.now]
        where, where_params = self._in("task", starting)
        sets = "".join(
            f", {column} = CASE WHEN {where} THEN {value} ELSE {column} END"
            for column, value in columns
        )
        params: list[Any] = []
        for _, value in columns:
            params.extend(where_params)
            if m in value:
                params.append(request.now)
        return sets, params

    def _opened_attempts(
        self, request: ClaimRequest, source: str, narrow: str
    ) -> tuple[str, list[Any]]:
        """The INSERT of the attempts a claim opened, read from `source` (the claim's
        RETURNING, or on SQLite the runs table, with `narrow` added to the WHERE clause;
        its parameters come after those returned): the runs there that are `running`
        were `pending` before the claim."""
        m = self._mark
        executors = sorted(set(request.start.values()))
        if len(executors) == 1:
            executor, executor_params = m, executors
        else:
            cases = " ".join(f"WHEN {m} THEN {m}" for _ in request.start)
            executor = f"CASE task {cases} END"
            executor_params = [v for pair in sorted(request.start.items()) for v in pair]
        sql = (
            "INSERT INTO attempts (run_id, number, started_at, status, worker_id, executor) "
            f"SELECT id, attempts, {m}, 'running', {m}, {executor} FROM {source} "
            f"WHERE status = 'running'{narrow} ON CONFLICT (run_id, number) DO NOTHING"
        )
        return sql, [request.now, request.worker_id, *executor_params]

    # the reaper -------------------------------------------------------------------------
    def take_reaper_lock(self, cursor: Any) -> bool:
        """PostgreSQL: one reaper at a time (SQLite's write lock does that already)."""
        if not self.postgres:
            return True
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [REAPER_KEY])
        if not cursor.fetchone()[0]:
            return False
        # Never wait long for a lock a paused process holds: try again next round.
        cursor.execute("SET LOCAL lock_timeout = '1s'")
        return True

    def mark_lost(self, cursor: Any, worker_id: str, now: float, *, expired: bool) -> bool:
        """Record a dead worker as lost, if it still is dead (a heartbeat may have renewed
        its lease since it was looked at); True when it was marked. From then on its
        heartbeats fail and it must register again."""
        sql = (
            f"UPDATE workers SET lost_at = {self._mark} WHERE id = {self._mark} AND lost_at IS NULL"
        )
        if expired:
            sql += f" AND expires_at < {self.now_sql}"
        cursor.execute(sql, [now, worker_id])
        return bool(cursor.rowcount == 1)

    def reap_worker(self, cursor: Any, worker_id: str, now: float) -> int:
        """Give back what a dead worker holds; returns how many runs it touched."""
        m = self._mark
        # Workflow runs are left to workflow recovery, which resumes them; their steps
        # are runs like any other.
        mine = (
            f"worker_id = {m} AND status IN ({', '.join(repr(s) for s in UNFINISHED)}) "
            f"AND task NOT LIKE {m}"
        )
        params = [worker_id, WORKFLOWS]
        # Rows a batch of the dead worker still has locked (it is paused in the middle of
        # a commit) are skipped: that batch ends one way or the other, and a later round
        # reaps what it leaves.
        skip = " FOR UPDATE SKIP LOCKED" if self.postgres else ""
        cursor.execute(
            f"SELECT id, task, attempts, max_attempts, started_at FROM runs WHERE {mine} "
            f"AND status = 'running'{skip}",
            params,
        )
        running = cursor.fetchall()
        attempt_rows: list[tuple[Any, ...]] = []
        retried: list[tuple[Any, ...]] = []
        failed: list[tuple[Any, ...]] = []
        ended = Rollup()
        for run_id, task, attempt, max_attempts, started_at in running:
            retry = attempt < max_attempts
            error = json.dumps(lost_error(run_id, task, attempt, retry).as_dict())
            attempt_rows.append((now, error, run_id, attempt))
            (retried if retry else failed).append((error, now, run_id))
            if not retry:
                ended.add(task, "failed", started_at, now)
        if attempt_rows:
            cursor.executemany(
                f"UPDATE attempts SET status = 'failed', finished_at = {m}, error = {m} "
                f"WHERE run_id = {m} AND number = {m} AND status = 'running'",
                attempt_rows,
            )
        if retried:
            cursor.executemany(
                f"UPDATE runs SET status = 'pending', worker_id = NULL, error = {m}, "
                f"scheduled_at = NULL WHERE id = {m} AND status = 'running' AND worker_id = {m}",
                [(error, run_id, worker_id) for error, _, run_id in retried],
            )
        if failed:
            cursor.executemany(
                # A new lease: should the worker come back, its late end is refused by
                # its fence (and this failure, counted in the rollup, stands).
                f"UPDATE runs SET status = 'failed', error = {m}, finished_at = {m}, "
                f"lease = lease + 1 WHERE id = {m} AND status = 'running' AND worker_id = {m}",
                [(*row, worker_id) for row in failed],
            )
            self.rollup.write(cursor, ended)  # these rows are locked: each update takes
        cursor.execute(
            "UPDATE runs SET worker_id = NULL WHERE id IN "
            f"(SELECT id FROM runs WHERE {mine} AND status = 'pending'{skip})",
            params,
        )
        pending: int = max(cursor.rowcount, 0)
        return len(running) + pending

    def orphan_owners(self, cursor: Any, known: Collection[str]) -> list[str]:
        """Owners of unfinished runs that have no worker record (made before workers
        were recorded, or whose record was removed), or that were found lost and still
        hold runs (a round that had to skip some)."""
        cursor.execute(
            "SELECT DISTINCT worker_id FROM runs WHERE worker_id IS NOT NULL "
            "AND status IN ('pending', 'running') "
            "AND (worker_id NOT IN (SELECT id FROM workers) "
            "OR worker_id IN (SELECT id FROM workers WHERE lost_at IS NOT NULL))"
        )
        return sorted(str(w) for (w,) in cursor.fetchall() if w not in known)
