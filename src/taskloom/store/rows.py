"""How runs, attempts and log lines become rows and back, and the SQL that writes them.

JSON values are encoded with `pydantic_core.to_json` (which also takes pydantic models,
dataclasses and datetimes) and decoded with `json.loads`. The write path is prepared once
per store (`Statements`) and a batch is encoded into `(sql, rows)` pairs (`plan_batch`)
before its transaction opens, so the database lock is held for the writes alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from operator import itemgetter
from typing import Any

from pydantic_core import to_json
from sqlalchemy import String, Table
from sqlalchemy.engine import Dialect

from ..exceptions import StoreError
from ..runs import Attempt, ErrorInfo, LogLine, Run, RunStatus
from .base import (
    RUN_UPDATE_COLUMNS,
    PackageRecord,
    ServiceLogLine,
    ServiceRecord,
    ServiceRequest,
    ServiceStartRecord,
    WriteBatch,
    service_action,
)
from .schema import (
    attempts,
    log_lines,
    packages,
    runs,
    service_log_lines,
    service_requests,
    service_starts,
    services,
)

__all__ = [
    "ATTEMPT_READ",
    "LOG_READ",
    "MAX_LIMIT",
    "PACKAGE_READ",
    "RUN_READ",
    "SERVICE_LOG_READ",
    "SERVICE_READ",
    "SERVICE_REQUEST_READ",
    "SERVICE_START_READ",
    "UNFINISHED",
    "Statements",
    "attempt_from_row",
    "json_or_none",
    "log_from_row",
    "package_from_row",
    "package_row",
    "plan_batch",
    "run_from_row",
    "run_row",
    "service_from_row",
    "service_log_from_row",
    "service_request_from_row",
    "service_row",
    "service_start_from_row",
    "service_start_row",
]

UNFINISHED = (RunStatus.PENDING.value, RunStatus.RUNNING.value)
MAX_LIMIT = 10_000

# Columns in the order `run_from_row`, `attempt_from_row` and `log_from_row` unpack.
RUN_READ = tuple(runs.c)
ATTEMPT_READ = tuple(attempts.c)
LOG_READ = (log_lines.c.id, *(c for c in log_lines.c if c.name != "id"))
SERVICE_READ = tuple(services.c)
PACKAGE_READ = tuple(packages.c)
SERVICE_START_READ = tuple(c for c in service_starts.c if c.name != "service")
SERVICE_REQUEST_READ = tuple(service_requests.c)
SERVICE_LOG_READ = tuple(service_log_lines.c)


def _dumps(value: Any) -> str:
    return to_json(value).decode()


def _dumps_or_none(value: Any) -> str | None:
    return None if value is None else to_json(value).decode()


def _loads_or_none(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _encode_error(error: ErrorInfo | dict[str, Any] | None) -> str | None:
    if error is None:
        return None
    return _dumps(error.as_dict() if isinstance(error, ErrorInfo) else error)


def _decode_error(text: str | None) -> ErrorInfo | None:
    return None if text is None else ErrorInfo.from_dict(json.loads(text))


def _identity(value: Any) -> Any:
    return value


# A RunStatus hashes like its string, so one lookup accepts both and yields the plain str.
_STATUSES: dict[str, str] = {s.value: s.value for s in RunStatus}


def _encode_status(value: str) -> str:
    """The status as stored; an unknown one is refused here, not found later on reading."""
    try:
        return _STATUSES[value]
    except (KeyError, TypeError):
        raise ValueError(f"{value!r} is not a run status") from None


_RUN_ENCODERS: dict[str, Callable[[Any], Any]] = dict.fromkeys(RUN_UPDATE_COLUMNS, _identity)
_RUN_ENCODERS.update(
    status=_encode_status, result=_dumps_or_none, error=_encode_error, cancel_requested=bool
)
_ATTEMPT_ENCODERS: dict[str, Callable[[Any], Any]] = {
    "finished_at": _identity,
    "status": str,
    "error": _encode_error,
}


def run_row(run: Run) -> tuple[Any, ...]:
    """A new run as a row, in the column order of `runs`."""
    return (
        run.id,
        run.task,
        _encode_status(run.status),
        run.priority,
        _dumps(run.inputs),
        _dumps_or_none(run.result),
        _encode_error(run.error),
        run.attempts,
        run.max_attempts,
        run.parent_id,
        run.idempotency_key,
        run.worker_id,
        run.created_at,
        run.scheduled_at,
        run.started_at,
        run.finished_at,
        run.progress,
        run.progress_message,
        bool(run.cancel_requested),
        _dumps_or_none(run.config),
        run.queue,
        run.lease,
        _dumps_or_none(run.trace_context),
    )


def attempt_row(attempt: Attempt) -> tuple[Any, ...]:
    return (
        attempt.run_id,
        attempt.number,
        attempt.started_at,
        attempt.finished_at,
        str(attempt.status),
        _encode_error(attempt.error),
        attempt.worker_id,
        attempt.executor,
        attempt.dashboard,
    )


def run_from_row(row: Sequence[Any]) -> Run:
    (run_id, task, status, priority, inputs, result, error, n_attempts, max_attempts) = row[:9]
    (parent_id, key, worker_id, created_at, scheduled_at, started_at, finished_at) = row[9:16]
    (progress, progress_message, cancel_requested, config, queue, lease, trace) = row[16:]
    return Run(
        id=run_id,
        task=task,
        inputs=json.loads(inputs),
        status=RunStatus(status),
        priority=priority,
        result=_loads_or_none(result),
        error=_decode_error(error),
        attempts=n_attempts,
        max_attempts=max_attempts,
        parent_id=parent_id,
        idempotency_key=key,
        worker_id=worker_id,
        created_at=created_at,
        scheduled_at=scheduled_at,
        started_at=started_at,
        finished_at=finished_at,
        progress=progress,
        progress_message=progress_message,
        cancel_requested=bool(cancel_requested),
        config=_loads_or_none(config),
        queue=queue,
        lease=lease,
        trace_context=_loads_or_none(trace),
    )


def attempt_from_row(row: Sequence[Any]) -> Attempt:
    run_id, number, started_at, finished_at, status, error, worker_id, executor, dashboard = row
    return Attempt(
        run_id,
        number,
        started_at,
        finished_at,
        status,
        _decode_error(error),
        worker_id,
        executor,
        dashboard,
    )


def _check_columns(kind: str, names: Collection[str], allowed: Collection[str]) -> None:
    unknown = set(names) - set(allowed)
    if unknown:
        raise ValueError(f"{kind} cannot change {', '.join(sorted(unknown))}")


#: Column sets of updates already checked, per kind: a batch of one run's end checks its
#: groups as new, and the engine sends the same few sets again and again.
_CHECKED: dict[str, set[tuple[str, ...]]] = {}
_CHECKED_MAX = 256


# --- prepared SQL --------------------------------------------------------------------------


#: A statement of a batch's plan: its SQL, its parameter rows, how many rows it must
#: change when it is fenced (else 0), and whether it is one set-based statement
#: (`Statements.update_set`) taking the first row once. Such a statement is planned
#: for each batch, not prepared: its best plan depends on how many rows it updates and on
#: how big the table has grown, and a plan kept from when the table was small would scan
#: the whole table for every batch once it is not.
PlanItem = tuple[str, list[Any], int, bool]

#: The fewest rows a PostgreSQL update takes as one set-based statement.
SET_UPDATE_MIN = 4


class Statements:
    """Driver-level SQL for the hot path, built once per store from the tables.

    Each string is handed straight to the driver's `executemany` with tuples, so the cost
    per row is the driver's alone. UPDATEs are cached per set of changed columns.
    """

    def __init__(self, dialect: Dialect) -> None:
        if dialect.paramstyle == "qmark":
            self._mark = "?"
        elif dialect.paramstyle in ("format", "pyformat"):
            self._mark = "%s"
        else:  # pragma: no cover - only sqlite3 and psycopg are supported
            raise StoreError(f"unsupported database driver paramstyle {dialect.paramstyle!r}")
        self._quote = dialect.identifier_preparer.quote
        self._dialect = dialect
        self._updates: dict[tuple[str, tuple[str, ...], tuple[str, ...]], str] = {}
        #: PostgreSQL: updates of many rows are one statement over JSON (`update_set`).
        self.postgres = dialect.name == "postgresql"
        self.set_updates = self.postgres
        # A run or attempt already there is left alone, so a batch whose commit was cut off
        # (it may have committed) can be written again.
        self.insert_run = self._insert(runs, [c.name for c in runs.c], conflict=("id",))
        self.insert_attempt = self._insert(
            attempts, [c.name for c in attempts.c], conflict=("run_id", "number")
        )
        log_columns = [c.name for c in log_lines.c if c.name != "id"]
        self.insert_log = self._insert(log_lines, log_columns)
        unfinished = ", ".join(f"'{s}'" for s in UNFINISHED)
        claim = (
            f"UPDATE {self._quote('runs')} SET {self._quote('worker_id')} = {self._mark} "
            f"WHERE {self._quote('id')} = {self._mark} "
            f"AND {self._quote('status')} IN ({unfinished}) AND {self._quote('worker_id')}"
        )
        self.claim_from = f"{claim} = {self._mark}"
        self.claim_unowned = f"{claim} IS NULL"

    def _insert(self, table: Table, columns: Sequence[str], conflict: Sequence[str] = ()) -> str:
        names = ", ".join(self._quote(c) for c in columns)
        marks = ", ".join([self._mark] * len(columns))
        sql = f"INSERT INTO {self._quote(table.name)} ({names}) VALUES ({marks})"
        if conflict:
            keys = ", ".join(self._quote(c) for c in conflict)
            sql += f" ON CONFLICT ({keys}) DO NOTHING"
        return sql

    def update(self, table: Table, columns: tuple[str, ...], keys: tuple[str, ...]) -> str:
        """`UPDATE table SET columns... WHERE keys...`, parameters in that order."""
        sql = self._updates.get((table.name, columns, keys))  # one per column set and order
        if sql is None:
            sets = ", ".join(f"{self._quote(c)} = {self._mark}" for c in columns)
            where = " AND ".join(f"{self._quote(k)} = {self._mark}" for k in keys)
            sql = f"UPDATE {self._quote(table.name)} SET {sets} WHERE {where}"
            self._updates[(table.name, columns, keys)] = sql
        return sql

    def update_set(self, table: Table, columns: tuple[str, ...], keys: tuple[str, ...]) -> str:
        """PostgreSQL: `update(...)` for many rows in one statement, its one parameter the
        rows as a JSON array of arrays (`UPDATE ... FROM jsonb_array_elements(...)`): the
        rows are one statement's work, where `executemany` makes each its own, and a JSON
        text is cheaper to send than an array per column (which the driver encodes value
        by value). Text values are assigned as text, so a value too long for its column
        is refused as in a plain UPDATE (a cast to it would cut it short)."""
        cache = (f"{table.name} set", columns, keys)
        sql = self._updates.get(cache)
        if sql is None:
            q = self._quote
            names = [*columns, *keys]
            fields = []
            for i, name in enumerate(names):
                column_type = table.c[name].type
                value = f"e->>{i}"
                if not isinstance(column_type, String):
                    value = f"({value})::{column_type.compile(self._dialect)}"
                fields.append(f"{value} AS c{i}")
            sets = ", ".join(f"{q(c)} = u.c{i}" for i, c in enumerate(columns))
            where = " AND ".join(f"t.{q(k)} = u.c{len(columns) + i}" for i, k in enumerate(keys))
            sql = (
                f"UPDATE {q(table.name)} AS t SET {sets} FROM (SELECT {', '.join(fields)} "
                f"FROM jsonb_array_elements({self._mark}::jsonb) AS e) AS u WHERE {where}"
            )
            self._updates[cache] = sql
        return sql

    def updates(
        self,
        table: Table,
        columns: tuple[str, ...],
        keys: tuple[str, ...],
        rows: list[Any],
        fenced: int = 0,
    ) -> PlanItem:
        """The plan item of `rows` updates: on PostgreSQL, when there are several, one
        set-based statement with the rows as one JSON document, executed once."""
        if self.set_updates and len(rows) >= SET_UPDATE_MIN:
            return self.update_set(table, columns, keys), [(to_json(rows).decode(),)], fenced, True
        return self.update(table, columns, keys), rows, fenced, False


def _group_updates(
    kind: str,
    updates: dict[Any, dict[str, Any]],
    encoders: dict[str, Callable[[Any], Any]],
) -> dict[tuple[str, ...], list[tuple[Any, ...]]]:
    """Rows of updates grouped by the columns they set, each row ending with its key.

    Columns keep the order of each dict (the engine builds its dicts alike), so no sorting
    per row; a group's columns are checked once, when the group is first seen.
    """
    groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    checked = _CHECKED.setdefault(kind, set())
    for key, values in updates.items():
        columns = tuple(values)
        rows = groups.get(columns)
        if rows is None:
            if not columns:
                continue
            if columns not in checked:
                _check_columns(kind, columns, encoders)
                if len(checked) < _CHECKED_MAX:
                    checked.add(columns)
            rows = groups[columns] = []
        keys = key if isinstance(key, tuple) else (key,)
        rows.append((*[encoders[c](v) for c, v in values.items()], *keys))
    return groups


#: The keys of a fenced run update: the run, its holder and its lease.
_FENCED_KEYS = ("id", "worker_id", "lease")
_FENCED_ID = itemgetter(-3)


def _split_fenced(
    rows: list[tuple[Any, ...]], fences: dict[str, tuple[str, int]], in_order: bool
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Rows of run updates (each ending with its run's id) split in one pass: those of
    fenced runs, extended with the run's holder and lease, and the others. With
    `in_order` (PostgreSQL, where two transactions may lock the same runs) the fenced rows
    are in id order, so that they lock shared runs alike; SQLite's one writer needs none."""
    fenced: list[tuple[Any, ...]] = []
    plain: list[tuple[Any, ...]] = []
    fence_of = fences.get
    for row in rows:
        fence = fence_of(row[-1])
        if fence is None:
            plain.append(row)
        else:
            fenced.append((*row, *fence))
    if in_order:
        fenced.sort(key=_FENCED_ID)
    return fenced, plain


def plan_batch(
    statements: Statements,
    batch: WriteBatch,
    skip: Collection[str] = (),
    fences: dict[str, tuple[str, int]] | None = None,
) -> list[PlanItem]:
    """Encode a batch into (sql, rows, fenced) items, before any transaction is opened.

    The changes of the runs in `skip` (refused by their fence) are left out. An update of
    a run in `fences` is conditional on its holder and lease (`WHERE id = ? AND worker_id =
    ? AND lease = ?`); `fenced` is how many rows such a statement must change, 0 for any
    other. Fenced rows are in id order, so two batches lock shared runs alike.
    """
    plan: list[PlanItem] = []
    if batch.new_runs:
        plan.append((statements.insert_run, [run_row(r) for r in batch.new_runs], 0, False))
    run_updates = batch.run_updates
    new_attempts = batch.new_attempts
    attempt_updates = batch.attempt_updates
    logs = batch.logs
    if skip:
        run_updates = {k: v for k, v in run_updates.items() if k not in skip}
        new_attempts = [a for a in new_attempts if a.run_id not in skip]
        attempt_updates = {k: v for k, v in attempt_updates.items() if k[0] not in skip}
        logs = [g for g in logs if g.run_id not in skip]
    run_groups = _group_updates("a run update", run_updates, _RUN_ENCODERS)
    for columns, rows in run_groups.items():
        if fences:
            fenced, rows = _split_fenced(rows, fences, statements.postgres)
            if fenced:
                plan.append(statements.updates(runs, columns, _FENCED_KEYS, fenced, len(fenced)))
        if rows:
            plan.append(statements.updates(runs, columns, ("id",), rows))
    if new_attempts:
        plan.append((statements.insert_attempt, [attempt_row(a) for a in new_attempts], 0, False))
    attempt_groups = _group_updates("an attempt update", attempt_updates, _ATTEMPT_ENCODERS)
    for columns, rows in attempt_groups.items():
        plan.append(statements.updates(attempts, columns, ("run_id", "number"), rows))
    if logs:
        rows = [(g.run_id, g.attempt, g.created_at, g.level, g.message) for g in logs]
        plan.append((statements.insert_log, rows, 0, False))
    return plan


def log_from_row(row: Sequence[Any]) -> LogLine:
    line_id, run_id, attempt, created_at, level, message = row
    return LogLine(run_id, attempt, created_at, level, message, id=line_id)


def service_row(record: ServiceRecord) -> dict[str, Any]:
    """A service record as the values of its `services` row."""
    return {
        "name": record.name,
        "state": str(record.state),
        "since": record.since,
        "starts": record.starts,
        "restarts": record.restarts,
        "restart_times": _dumps([float(t) for t in record.restart_times]),
        "last_error": _encode_error(record.last_error),
        "stop_timed_out": bool(record.stop_timed_out),
        "config": _dumps_or_none(record.config),
        "updated_at": record.updated_at,
    }


def service_from_row(row: Sequence[Any]) -> ServiceRecord:
    name, state, since, starts, restarts, restart_times, last_error = row[:7]
    stop_timed_out, config, updated_at = row[7:]
    return ServiceRecord(
        name=name,
        state=state,
        since=since,
        starts=starts,
        restarts=restarts,
        restart_times=[float(t) for t in json.loads(restart_times)],
        last_error=_decode_error(last_error),
        stop_timed_out=bool(stop_timed_out),
        config=_loads_or_none(config),
        updated_at=updated_at,
    )


def service_start_row(name: str, start: ServiceStartRecord) -> dict[str, Any]:
    """A start as the values of its `service_starts` row."""
    return {
        "service": name,
        "number": start.number,
        "started_at": start.started_at,
        "restart": bool(start.restart),
        "finished_at": start.finished_at,
        "exit_reason": None if start.exit_reason is None else str(start.exit_reason),
        "error": _encode_error(start.error),
    }


def service_start_from_row(row: Sequence[Any]) -> ServiceStartRecord:
    number, started_at, restart, finished_at, exit_reason, error = row
    return ServiceStartRecord(
        number=number,
        started_at=started_at,
        restart=bool(restart),
        finished_at=finished_at,
        exit_reason=exit_reason,
        error=_decode_error(error),
    )


def service_request_from_row(row: Sequence[Any]) -> ServiceRequest:
    request_id, service, action, config, requested_at, handled_at, outcome, by = row
    return ServiceRequest(
        id=request_id,
        service=service,
        action=service_action(action),
        config=_loads_or_none(config),
        requested_at=requested_at,
        handled_at=handled_at,
        outcome=_loads_or_none(outcome),
        requested_by=by,
    )


def service_log_from_row(row: Sequence[Any]) -> ServiceLogLine:
    line_id, service, start_number, created_at, level, message = row
    return ServiceLogLine(
        service=service,
        start_number=start_number,
        created_at=created_at,
        level=level,
        message=message,
        id=line_id,
    )


def json_or_none(value: Any) -> str | None:
    """A JSON-compatible value as JSON text, None as None (a `StoreError` if not JSON)."""
    try:
        return _dumps_or_none(value)
    except ValueError as exc:  # pydantic's serialization error is a ValueError
        raise StoreError(f"a value is not JSON: {exc}") from exc


def package_row(record: PackageRecord) -> dict[str, Any]:
    """A package record as the values of its `packages` row."""
    return {
        "name": record.name,
        "state": record.state,
        "source": record.source,
        "version": record.version,
        "venv": record.venv,
        "python": record.python,
        "root": record.root,
        "manifest_kind": record.manifest_kind,
        "manifest": _dumps_or_none(record.manifest),
        "frozen": record.frozen,
        "pip_args": _dumps(list(record.pip_args)),
        "log": record.log,
        "error": record.error,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


def package_from_row(row: Sequence[Any]) -> PackageRecord:
    values = dict(zip((c.name for c in PACKAGE_READ), row, strict=True))
    values["manifest"] = _loads_or_none(values["manifest"])
    values["pip_args"] = _loads_or_none(values["pip_args"]) or []
    return PackageRecord(**values)
