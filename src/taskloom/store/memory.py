"""`MemoryStore`: every part of the `Store` protocol in process memory, for fast tests.

It keeps what a database would: values go through JSON on the way in (so a tuple comes
back a list, as from SQL), records are copied in and out, a batch is checked whole before
any of it is applied, and unique keys are enforced. Thread-safe with one lock. Workers
registered on it are alive until unregistered or until the store is closed.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from typing import Any

from pydantic_core import PydanticSerializationError, to_json

from ..exceptions import StoreError
from ..runs import Attempt, ErrorInfo, LogLine, Run, RunStatus
from .base import (
    LEASE_TTL,
    NOTHING_WRITTEN,
    RUN_UPDATE_COLUMNS,
    ApiTokenRecord,
    ClaimRequest,
    DeploymentPartRecord,
    DeploymentRecord,
    HookRecord,
    PackageRecord,
    ScheduleRecord,
    ServiceAttributeChange,
    ServiceAttributeRecord,
    ServiceLogLine,
    ServiceRecord,
    ServiceRequest,
    ServiceStartRecord,
    StageRecord,
    WorkerRecord,
    WriteBatch,
    WriteResult,
    service_action,
)
from .migrate import HEAD_REVISION
from .pipelines import MemoryPipelines
from .queue import lost_error
from .retention import MemoryRetention
from .rollup import Pruning, Rollup, ends_of, rollup_of
from .schedules import MemorySchedules
from .service_attributes import MemoryServiceAttributes
from .stats import MemoryStats

__all__ = ["MemoryStore"]

_MAX_LIMIT = 10_000
_ATTEMPT_UPDATE_COLUMNS = frozenset({"finished_at", "status", "error"})


def _json(value: Any) -> Any:
    return None if value is None else json.loads(to_json(value))


def _error(value: ErrorInfo | dict[str, Any] | None) -> ErrorInfo | None:
    if value is None:
        return None
    return ErrorInfo.from_dict(_json(value.as_dict() if isinstance(value, ErrorInfo) else value))


def _same(value: Any) -> Any:
    return value


_RUN_CODECS: dict[str, Callable[[Any], Any]] = dict.fromkeys(RUN_UPDATE_COLUMNS, _same)
_RUN_CODECS.update(
    status=lambda v: RunStatus(str(v)), result=_json, error=_error, cancel_requested=bool
)
_ATTEMPT_CODECS: dict[str, Callable[[Any], Any]] = {
    "finished_at": _same,
    "status": str,
    "error": _error,
}


def _stored_run(run: Run) -> Run:
    return replace(
        run,
        status=RunStatus(str(run.status)),
        inputs=_json(run.inputs),
        result=_json(run.result),
        error=_error(run.error),
        config=_json(run.config),
        cancel_requested=bool(run.cancel_requested),
        trace_context=_json(run.trace_context),
    )


def _encode(kind: str, values: dict[str, Any], codecs: dict[str, Callable[[Any], Any]]) -> Any:
    unknown = set(values) - set(codecs)
    if unknown:
        raise ValueError(f"{kind} cannot change {', '.join(sorted(unknown))}")
    return {name: codecs[name](value) for name, value in values.items()}


@dataclass(slots=True)
class _Worker:
    hostname: str
    pid: int
    started_at: float
    heartbeat_at: float
    name: str | None = None
    queues: list[str] | None = None
    concurrency: int | None = None
    expires_at: float = 0.0
    lost_at: float | None = None


class MemoryStore(
    MemoryPipelines, MemorySchedules, MemoryStats, MemoryRetention, MemoryServiceAttributes
):
    """Runs, attempts, logs and workers in dictionaries."""

    def __init__(self) -> None:
        self.url = "memory://"
        self._lock = threading.RLock()
        self._runs: dict[str, Run] = {}
        self._keys: dict[str, str] = {}
        self._attempts: dict[tuple[str, int], Attempt] = {}
        self._logs: dict[str, list[LogLine]] = {}
        self._last_log_id = 0
        self._workers: dict[str, _Worker] = {}
        self._services: dict[str, ServiceRecord] = {}
        self._packages: dict[str, PackageRecord] = {}
        self._service_starts: dict[str, dict[int, ServiceStartRecord]] = {}
        self._service_requests: dict[int, ServiceRequest] = {}
        self._last_request_id = 0
        self._service_logs: dict[str, list[ServiceLogLine]] = {}
        self._last_service_log_id = 0
        self._service_attributes: dict[str, dict[str, ServiceAttributeRecord]] = {}
        self._service_attribute_changes: list[ServiceAttributeChange] = []
        self._api_tokens: dict[str, ApiTokenRecord] = {}
        self._deployments: dict[str, DeploymentRecord] = {}
        self._stages: dict[str, dict[str, StageRecord]] = {}
        self._parts: dict[str, dict[str, DeploymentPartRecord]] = {}
        self._schedules: dict[str, ScheduleRecord] = {}
        self._hooks: dict[str, HookRecord] = {}
        self._run_counts: dict[tuple[int, float, str, str], int] = {}
        self._run_durations: dict[tuple[int, float, str, int], list[float]] = {}
        self._pruning = Pruning()

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._runs)} runs)"

    @property
    def inline_writes(self) -> bool:
        """No: every batch goes through the engine's writer thread, as on PostgreSQL."""
        return False

    def open(self) -> None:
        pass

    def close(self) -> None:
        with self._lock:
            self._workers.clear()

    def schema_revision(self) -> str | None:
        return HEAD_REVISION

    # writes -----------------------------------------------------------------------------

    def write(self, batch: WriteBatch, *, wait: bool = True) -> WriteResult:
        if not batch:
            return NOTHING_WRITTEN
        try:
            new_runs = [_stored_run(r) for r in batch.new_runs]
            run_updates = [
                (run_id, _encode("a run update", values, _RUN_CODECS))
                for run_id, values in batch.run_updates.items()
            ]
            new_attempts = [
                replace(a, status=str(a.status), error=_error(a.error)) for a in batch.new_attempts
            ]
            attempt_updates = [
                (key, _encode("an attempt update", values, _ATTEMPT_CODECS))
                for key, values in batch.attempt_updates.items()
            ]
        except (PydanticSerializationError, UnicodeError) as exc:
            raise StoreError(f"a value is not JSON or not valid Unicode: {exc}") from exc
        with self._lock:
            # Check every constraint first, so a failing batch changes nothing.
            staged: dict[str, Run] = {}
            keys: dict[str, str] = {}
            for run in new_runs:
                if run.id in self._runs or run.id in staged:
                    continue  # written before: a batch may be written again (as in SQL)
                key = run.idempotency_key
                if key is not None and (key in self._keys or key in keys):
                    raise StoreError(f"could not write a batch: idempotency key {key!r} is used")
                staged[run.id] = run
                if key is not None:
                    keys[key] = run.id
            staged_attempts: dict[tuple[str, int], Attempt] = {}
            for attempt in new_attempts:
                akey = (attempt.run_id, attempt.number)
                if akey in self._attempts or akey in staged_attempts:
                    continue
                staged_attempts[akey] = attempt
            rejected = frozenset(
                run_id
                for run_id, fence in batch.fences.items()
                if run_id not in staged
                and (
                    (held := self._runs.get(run_id)) is None
                    or (held.worker_id, held.lease) != fence
                )
            )
            if rejected:
                run_updates = [u for u in run_updates if u[0] not in rejected]
                staged_attempts = {k: a for k, a in staged_attempts.items() if k[0] not in rejected}
                attempt_updates = [u for u in attempt_updates if u[0][0] not in rejected]
            ends = ends_of(batch)
            if ends:  # counted as the SQL store counts them, from how the runs stood
                prior = {
                    i: (r.task, r.status.value, r.started_at)
                    for i in ends
                    if (r := self._runs.get(i)) is not None
                }
                self._add_rollup(rollup_of(batch, ends, prior, rejected))
            for run_id, changes in run_updates:
                current = staged.get(run_id) or self._runs.get(run_id)
                if current is not None:
                    staged[run_id] = replace(current, **changes)
            for akey, changes in attempt_updates:
                existing = staged_attempts.get(akey) or self._attempts.get(akey)
                if existing is not None:
                    staged_attempts[akey] = replace(existing, **changes)
            self._runs.update(staged)
            self._keys.update(keys)
            self._attempts.update(staged_attempts)
            for line in batch.logs:
                if line.run_id in rejected:
                    continue
                self._last_log_id += 1
                stored = replace(line, id=self._last_log_id)
                self._logs.setdefault(line.run_id, []).append(stored)
            claimed = [] if batch.claim is None else self._claim(batch.claim)
            due = None
            if batch.claim is not None and len(claimed) < batch.claim.limit:
                request = batch.claim
                waiting = [
                    r.scheduled_at
                    for r in self._runs.values()
                    if r.status is RunStatus.PENDING
                    and r.worker_id is None
                    and r.task in request.tasks
                    and r.queue in request.queues
                    and r.scheduled_at is not None
                    and r.scheduled_at > request.now
                ]
                due = min(waiting, default=None)
            if rejected or claimed or due is not None:
                return WriteResult(rejected, claimed, due)
            return NOTHING_WRITTEN

    def _claim(self, request: ClaimRequest) -> list[Run]:
        tasks, queues = set(request.tasks), set(request.queues)
        claimable = sorted(
            (
                r
                for r in self._runs.values()
                if r.status is RunStatus.PENDING
                and r.worker_id is None
                and r.task in tasks
                and r.queue in queues
                and (r.scheduled_at is None or r.scheduled_at <= request.now)
            ),
            key=lambda r: (-r.priority, r.created_at, r.id),
        )
        held: dict[str, int] = {}
        for run in self._runs.values():
            if run.worker_id is not None and not run.is_finished:
                held[run.task] = held.get(run.task, 0) + 1
        claimed: list[Run] = []
        for run in claimable:
            if len(claimed) >= request.limit:
                break
            limit = request.limits.get(run.task)
            if limit is not None:
                if held.get(run.task, 0) >= limit:
                    continue
                held[run.task] = held.get(run.task, 0) + 1
            run.worker_id = request.worker_id
            run.lease += 1
            executor = request.start.get(run.task)
            if executor is not None:  # started by its claim, its next attempt open
                run.status = RunStatus.RUNNING
                run.attempts += 1
                run.scheduled_at = None
                if run.started_at is None:
                    run.started_at = request.now
                self._attempts[run.id, run.attempts] = Attempt(
                    run.id,
                    run.attempts,
                    request.now,
                    worker_id=request.worker_id,
                    executor=executor,
                )
            claimed.append(copy.deepcopy(run))
        return claimed

    def insert_run_idempotent(self, run: Run) -> Run:
        with self._lock:
            key = run.idempotency_key
            if key is not None and key in self._keys:
                return copy.deepcopy(self._runs[self._keys[key]])
            self.write(WriteBatch(new_runs=[run]))
            return copy.deepcopy(self._runs[run.id])

    # reads ------------------------------------------------------------------------------

    def get_run(self, run_id: str) -> Run | None:
        with self._lock:
            run = self._runs.get(run_id)
            return None if run is None else copy.deepcopy(run)

    def runs_keyed(self, prefix: str, *, limit: int = 100) -> list[Run]:
        limit = min(limit, _MAX_LIMIT)
        if limit <= 0 or not prefix:
            return []
        with self._lock:
            keyed = [
                r
                for r in self._runs.values()
                if r.idempotency_key is not None and r.idempotency_key.startswith(prefix)
            ]
            keyed.sort(key=lambda r: r.idempotency_key or "", reverse=True)
            return [r.copy() for r in keyed[:limit]]

    def list_runs(
        self,
        *,
        task: str | None = None,
        status: str | Collection[str] | None = None,
        parent_id: str | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> list[Run]:
        limit = min(limit, _MAX_LIMIT)
        if limit <= 0:
            return []
        statuses: set[str] | None = None
        if isinstance(status, str):
            statuses = {str(status)}
        elif status is not None:
            statuses = {str(s) for s in status}
        with self._lock:
            selected = [
                r
                for r in self._runs.values()
                if (task is None or r.task == task)
                and (statuses is None or r.status.value in statuses)
                and (parent_id is None or r.parent_id == parent_id)
            ]
            if before is not None:
                anchor = self._runs.get(before)
                if anchor is None:
                    return []
                cursor = (anchor.created_at, anchor.id)
                selected = [r for r in selected if (r.created_at, r.id) < cursor]
            selected.sort(key=lambda r: (r.created_at, r.id), reverse=True)
            return copy.deepcopy(selected[:limit])

    def get_attempts(self, run_id: str) -> list[Attempt]:
        with self._lock:
            found = [a for (rid, _), a in self._attempts.items() if rid == run_id]
            return copy.deepcopy(sorted(found, key=lambda a: a.number))

    def get_logs(self, run_id: str, *, after_id: int = 0, limit: int = 1000) -> list[LogLine]:
        limit = min(limit, _MAX_LIMIT)
        if limit <= 0:
            return []
        with self._lock:
            lines = [g for g in self._logs.get(run_id, []) if (g.id or 0) > after_id]
            return copy.deepcopy(lines[:limit])

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
        now = time.time()
        with self._lock:
            self._workers[worker_id] = _Worker(
                hostname,
                pid,
                now,
                now,
                name=name,
                queues=None if queues is None else sorted(set(queues)),
                concurrency=concurrency,
                expires_at=now + ttl,
            )

    def heartbeat(self, worker_id: str, *, ttl: float = LEASE_TTL) -> bool:
        now = time.time()
        with self._lock:
            worker = self._workers.get(worker_id)
            if worker is None or worker.lost_at is not None:
                return False
            worker.heartbeat_at = now
            worker.expires_at = now + ttl
            return True

    def update_worker(self, worker_id: str, *, queues: Collection[str] | None) -> None:
        with self._lock:
            worker = self._workers.get(worker_id)
            if worker is not None:
                worker.queues = None if queues is None else sorted(set(queues))

    def retire_worker(self, worker_id: str) -> None:
        with self._lock:
            worker = self._workers.get(worker_id)
            if worker is not None:
                worker.expires_at = 0.0

    def unregister_worker(self, worker_id: str) -> None:
        with self._lock:
            self._workers.pop(worker_id, None)

    def is_worker_alive(self, worker_id: str) -> bool:
        with self._lock:
            worker = self._workers.get(worker_id)
            return (
                worker is not None and worker.lost_at is None and worker.expires_at >= time.time()
            )

    def reap(self, worker_id: str) -> int:
        now = time.time()
        touched = 0
        ended = Rollup()
        with self._lock:
            for worker in self._workers.values():
                if worker.expires_at < now and worker.lost_at is None:
                    worker.lost_at = now
            for run in self._runs.values():
                owner = run.worker_id
                if owner is None or owner == worker_id or run.is_finished:
                    continue
                if self.is_worker_alive(owner):
                    continue
                if run.task.startswith("workflow:"):
                    continue  # left to workflow recovery, which resumes it
                touched += 1
                if run.status is RunStatus.RUNNING:
                    retry = run.attempts < run.max_attempts
                    error = lost_error(run.id, run.task, run.attempts, retry)
                    attempt = self._attempts.get((run.id, run.attempts))
                    if attempt is not None and attempt.status == "running":
                        attempt.status, attempt.finished_at, attempt.error = "failed", now, error
                    run.error = error
                    if retry:
                        run.status, run.worker_id, run.scheduled_at = RunStatus.PENDING, None, None
                    else:
                        run.status, run.finished_at = RunStatus.FAILED, now
                        run.lease += 1  # its late end is refused, as in SQL
                        ended.add(run.task, "failed", run.started_at, now)
                else:
                    run.worker_id = None
            self._add_rollup(ended)
        return touched

    def finished_among(self, run_ids: Collection[str]) -> list[Run]:
        with self._lock:
            found = [self._runs.get(run_id) for run_id in set(run_ids)]
            return [copy.deepcopy(r) for r in found if r is not None and r.is_finished]

    def get_runs(self, run_ids: Collection[str]) -> list[Run]:
        with self._lock:
            found = [self._runs.get(run_id) for run_id in set(run_ids)]
            return [copy.deepcopy(r) for r in found if r is not None]

    def logs_after(self, after_id: int, *, limit: int = 1000) -> list[LogLine]:
        with self._lock:
            lines = [g for run in self._logs.values() for g in run if (g.id or 0) > after_id]
            lines.sort(key=lambda g: g.id or 0)
            return copy.deepcopy(lines[: min(limit, _MAX_LIMIT)])

    def last_log_id(self) -> int:
        return self._last_log_id

    def watch(self, callback: Callable[[str, str], None]) -> None:
        return None  # only this process reaches it: nothing to hear from others

    def want_records(self) -> None:
        return None  # no other process to tell

    def peer_queues(self, worker_id: str) -> frozenset[str]:
        now = time.time()
        with self._lock:
            return frozenset(
                q
                for other, worker in self._workers.items()
                if other != worker_id
                and worker.concurrency is not None
                and worker.lost_at is None
                and worker.expires_at >= now
                for q in worker.queues or ()
            )

    def list_workers(self) -> list[WorkerRecord]:
        # Only this process reaches an in-memory store: a registered worker is alive
        # while its lease lasts.
        with self._lock:
            holding: dict[str, int] = {}
            for run in self._runs.values():
                if run.worker_id is not None and not run.is_finished:
                    holding[run.worker_id] = holding.get(run.worker_id, 0) + 1
            records = [
                WorkerRecord(
                    id=worker_id,
                    hostname=worker.hostname,
                    pid=worker.pid,
                    started_at=worker.started_at,
                    heartbeat_at=worker.heartbeat_at,
                    alive=worker.lost_at is None and worker.expires_at >= time.time(),
                    holds=holding.get(worker_id, 0),
                    name=worker.name,
                    queues=worker.queues,
                    concurrency=worker.concurrency,
                    expires_at=worker.expires_at,
                )
                for worker_id, worker in self._workers.items()
            ]
        records.sort(key=lambda w: (w.started_at, w.id))
        return records

    def prune_workers(self, *, lost_before: float) -> int:
        return 0  # none is ever lost: a worker leaves by unregistering

    def claim_orphaned_runs(self, worker_id: str, tasks: Collection[str]) -> list[Run]:
        wanted = set(tasks)
        claimed: list[Run] = []
        with self._lock:
            for run in self._runs.values():
                if run.is_finished or run.task not in wanted:
                    continue
                owner = run.worker_id
                if owner is None or (owner != worker_id and owner not in self._workers):
                    run.worker_id = worker_id
                    claimed.append(copy.deepcopy(run))
        claimed.sort(key=lambda r: (r.created_at, r.id))
        return claimed

    def request_cancel(self, run_id: str) -> Run | None:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return None
            if not run.is_finished:
                run.cancel_requested = True
            return copy.deepcopy(run)

    def cancel_requests(self, worker_id: str) -> list[str]:
        with self._lock:
            return sorted(
                r.id
                for r in self._runs.values()
                if r.worker_id == worker_id and r.cancel_requested and not r.is_finished
            )

    def cancel_orphaned_run(self, run_id: str, *, finished_at: float) -> bool:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or run.is_finished:
                return False
            if run.worker_id is not None and run.worker_id in self._workers:
                return False
            run.status = RunStatus.CANCELLED
            run.finished_at = finished_at
            run.lease += 1
            ended = Rollup()
            ended.add(run.task, "cancelled", run.started_at, finished_at)
            self._add_rollup(ended)
            for (rid, _), attempt in self._attempts.items():
                if rid == run_id and attempt.status == "running":
                    attempt.status = RunStatus.CANCELLED.value
                    attempt.finished_at = finished_at
            return True

    # services ---------------------------------------------------------------------------

    def save_service(self, record: ServiceRecord) -> None:
        try:
            stored = replace(
                record,
                state=str(record.state),
                restart_times=[float(t) for t in record.restart_times],
                last_error=_error(record.last_error),
                stop_timed_out=bool(record.stop_timed_out),
                config=_json(record.config),
            )
        except PydanticSerializationError as exc:
            raise StoreError(f"could not save a service: a value is not JSON: {exc}") from exc
        with self._lock:
            self._services[record.name] = stored

    def get_service(self, name: str) -> ServiceRecord | None:
        with self._lock:
            record = self._services.get(name)
            return None if record is None else copy.deepcopy(record)

    def list_services(self) -> list[ServiceRecord]:
        with self._lock:
            return copy.deepcopy([self._services[n] for n in sorted(self._services)])

    def save_service_start(self, name: str, start: ServiceStartRecord) -> None:
        stored = replace(
            start,
            restart=bool(start.restart),
            exit_reason=None if start.exit_reason is None else str(start.exit_reason),
            error=_error(start.error),
        )
        with self._lock:
            self._service_starts.setdefault(name, {})[start.number] = stored

    def get_service_starts(self, name: str, *, limit: int = 100) -> list[ServiceStartRecord]:
        limit = min(limit, _MAX_LIMIT)
        if limit <= 0:
            return []
        with self._lock:
            starts = self._service_starts.get(name, {})
            newest = sorted(starts.values(), key=lambda s: s.number, reverse=True)
            return copy.deepcopy(newest[:limit])

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
        try:
            stored_config = _json(config)
        except PydanticSerializationError as exc:
            raise StoreError(f"could not add a service request: {exc}") from exc
        with self._lock:
            self._last_request_id += 1
            request_id = self._last_request_id
            self._service_requests[request_id] = ServiceRequest(
                id=request_id,
                service=service,
                action=service_action(action),
                config=stored_config,
                requested_at=time.time() if requested_at is None else requested_at,
                requested_by=requested_by,
            )
            return request_id

    def pending_service_requests(self) -> list[ServiceRequest]:
        with self._lock:
            pending = [r for r in self._service_requests.values() if r.handled_at is None]
            return copy.deepcopy(sorted(pending, key=lambda r: r.id))

    def finish_service_request(
        self, request_id: int, outcome: Any, *, handled_at: float | None = None
    ) -> bool:
        try:
            stored = _json(outcome)
        except PydanticSerializationError as exc:
            raise StoreError(f"could not finish a service request: {exc}") from exc
        with self._lock:
            request = self._service_requests.get(request_id)
            if request is None or request.handled_at is not None:
                return False
            request.handled_at = time.time() if handled_at is None else handled_at
            request.outcome = stored
            return True

    def get_service_request(self, request_id: int) -> ServiceRequest | None:
        with self._lock:
            request = self._service_requests.get(request_id)
            return None if request is None else copy.deepcopy(request)

    def cancel_service_request(self, request_id: int) -> bool:
        with self._lock:
            request = self._service_requests.get(request_id)
            if request is None or request.handled_at is not None:
                return False
            del self._service_requests[request_id]
            return True

    def add_service_log_lines(self, lines: Collection[ServiceLogLine]) -> None:
        with self._lock:
            for line in lines:
                self._last_service_log_id += 1
                stored = replace(line, id=self._last_service_log_id)
                self._service_logs.setdefault(line.service, []).append(stored)

    def get_service_logs(
        self, service: str, *, after_id: int = 0, limit: int = 1000
    ) -> list[ServiceLogLine]:
        limit = min(limit, _MAX_LIMIT)
        if limit <= 0:
            return []
        with self._lock:
            lines = [g for g in self._service_logs.get(service, []) if (g.id or 0) > after_id]
            return copy.deepcopy(lines[:limit])

    # API tokens ---------------------------------------------------------------------------

    def add_api_token(self, record: ApiTokenRecord) -> None:
        with self._lock:
            if record.id in self._api_tokens or any(
                t.token_hash == record.token_hash for t in self._api_tokens.values()
            ):
                raise StoreError(
                    f"an API token with id {record.id!r} or the same secret exists already"
                )
            self._api_tokens[record.id] = replace(record)

    def find_api_token(self, token_hash: str) -> ApiTokenRecord | None:
        with self._lock:
            for record in self._api_tokens.values():
                if record.token_hash == token_hash:
                    return replace(record)
            return None

    def list_api_tokens(self) -> list[ApiTokenRecord]:
        with self._lock:
            records = sorted(self._api_tokens.values(), key=lambda t: (t.created_at, t.id))
            return [replace(t) for t in records]

    def revoke_api_token(self, token_id: str, *, revoked_at: float | None = None) -> bool:
        with self._lock:
            record = self._api_tokens.get(token_id)
            if record is None or record.revoked_at is not None:
                return False
            record.revoked_at = time.time() if revoked_at is None else revoked_at
            return True

    # packages ---------------------------------------------------------------------------

    def save_package(self, record: PackageRecord) -> None:
        try:
            stored = replace(
                record, manifest=_json(record.manifest), pip_args=list(record.pip_args)
            )
        except PydanticSerializationError as exc:
            raise StoreError(f"could not save a package: a value is not JSON: {exc}") from exc
        with self._lock:
            self._packages[record.name] = stored

    def get_package(self, name: str) -> PackageRecord | None:
        with self._lock:
            record = self._packages.get(name)
            return None if record is None else copy.deepcopy(record)

    def list_packages(self) -> list[PackageRecord]:
        with self._lock:
            return copy.deepcopy([self._packages[n] for n in sorted(self._packages)])

    def delete_package(self, name: str) -> bool:
        with self._lock:
            return self._packages.pop(name, None) is not None
