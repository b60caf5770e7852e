"""The store protocols: the contract every database backend fulfils, in parts.

A store is synchronous. The engine calls it from its own writer and reader threads, so a
blocking driver never stalls the event loop, and one code path serves SQLite and
PostgreSQL. The contract comes in narrow parts, each what one kind of caller needs:
`RunStore` (runs, attempts, log lines), `QueueStore` (a `RunStore` with the workers that
claim and hold runs), `ServiceStore`, `TokenStore`, `PackageStore` and `DeploymentStore`.
`Store` is all of them on one database, with `open` and `close`. Each part has a
conformance suite under `tests/integration/conformance/` that every implementation passes.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from ..exceptions import StoreError, StoreUnavailableError
from ..runs import Attempt, ErrorInfo, LogLine, Run

if TYPE_CHECKING:
    from .feed import ChangeFeed

__all__ = [
    "LEASE_TTL",
    "NOTHING_WRITTEN",
    "RUN_UPDATE_COLUMNS",
    "ActiveCounts",
    "ApiTokenRecord",
    "ClaimRequest",
    "DatabaseStats",
    "DeploymentPartRecord",
    "DeploymentRecord",
    "DeploymentStore",
    "HookRecord",
    "LeaseLostError",
    "PackageRecord",
    "PackageStore",
    "PruneBatch",
    "PruneCursor",
    "QueueStore",
    "RetentionStore",
    "RunStats",
    "RunStore",
    "ScheduleRecord",
    "ScheduleStore",
    "ServiceAction",
    "ServiceAttributeChange",
    "ServiceAttributeRecord",
    "ServiceAttributeStore",
    "ServiceLogLine",
    "ServiceRecord",
    "ServiceRequest",
    "ServiceStartRecord",
    "ServiceStore",
    "StageCounters",
    "StageRecord",
    "StatsBucket",
    "StatsStore",
    "Store",
    "StoreBusyError",
    "TableStats",
    "TaskStats",
    "TokenStore",
    "UncertainCommitError",
    "WorkerRecord",
    "WriteBatch",
    "WriteResult",
    "service_action",
]

#: Seconds a worker's lease lasts on the database's clock unless its heartbeat renews it.
LEASE_TTL = 10.0

#: Columns of a run that `WriteBatch.run_updates` may change. Values are Python values:
#: `status` a `RunStatus` or its string, `error` an `ErrorInfo` or None, `result` any
#: JSON-compatible value; the store encodes them.
RUN_UPDATE_COLUMNS = frozenset(
    {
        "status",
        "attempts",
        "max_attempts",
        "result",
        "error",
        "worker_id",
        "scheduled_at",
        "started_at",
        "finished_at",
        "progress",
        "progress_message",
        "cancel_requested",
    }
)


class LeaseLostError(StoreError):
    """A change of a run was refused by its fence: the worker that made it no longer holds
    the run under that lease (a reaper gave it to another worker). The worker drops it."""


class StoreBusyError(StoreUnavailableError):
    """Another connection holds the database's write lock (a write that may not wait)."""


class UncertainCommitError(StoreUnavailableError):
    """The connection was lost while committing: the batch may or may not be stored.

    Writing the same batch again is safe: new runs and attempts are inserted only if they
    are not there yet, and updates set the same values again.
    """


@dataclass(slots=True, kw_only=True)
class ClaimRequest:
    """What a worker asks of the queue: up to `limit` claimable runs of `tasks` in `queues`.

    A run is claimable when it is `pending`, held by no worker, and due (`scheduled_at`
    unset or not after `now`). Higher priority first, then older first. A task named in
    `limits` has at most that many runs held by all workers together (a run held counts
    from its claim to its end).

    A run of a task in `start` is started by its claim, in the same transaction: it is
    `running` with its next attempt open from `now`, recorded as made by the executor
    `start` names for the task (the worker begins the call once the claim is committed, as
    it would after a start of its own: one write fewer). Runs of other tasks are claimed
    `pending`.
    """

    worker_id: str
    tasks: Collection[str]
    queues: Collection[str]
    limit: int
    now: float
    limits: dict[str, int] = field(default_factory=dict)
    start: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class WriteBatch:
    """Changes the engine commits together, in one transaction.

    The store applies them in this order: new runs, run updates, new attempts, attempt
    updates, log lines, then the claim. `attempt_updates` is keyed by
    `(run_id, attempt_number)` and may change `finished_at`, `status` and `error`.

    `fences` makes the changes of a run conditional: `{run_id: (worker_id, lease)}`. When
    the run is no longer held by that worker under that lease (a reaper gave it away or
    failed it, it was claimed again), none of its changes in the batch is applied and its
    id is in `WriteResult.rejected`; the rest of the batch commits.

    `ended` is `{run_id: (task, started_at)}` for the runs the batch ends that the writer
    knows (the engine's own): a fenced one is counted in the store's rollup from that
    alone, since its fence holding means nobody ended it first; any other end is counted
    from how the store held the run before the batch.

    `records` is `{run_id: run}` for runs the batch ends whose whole record the writer
    holds (the engine's own): that record with the batch's `run_updates` laid over it is
    the run as stored, so a notice of the end can carry it (see `queue.notices`). (A
    cancel another process asked for just before the end may be missing from it.)
    """

    new_runs: list[Run] = field(default_factory=list)
    run_updates: dict[str, dict[str, Any]] = field(default_factory=dict)
    new_attempts: list[Attempt] = field(default_factory=list)
    attempt_updates: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    logs: list[LogLine] = field(default_factory=list)
    fences: dict[str, tuple[str, int]] = field(default_factory=dict)
    claim: ClaimRequest | None = None
    ended: dict[str, tuple[str, float | None]] = field(default_factory=dict)
    records: dict[str, Run] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(
            self.new_runs
            or self.run_updates
            or self.new_attempts
            or self.attempt_updates
            or self.logs
            or self.claim
        )


@dataclass(slots=True)
class WriteResult:
    """What a committed batch did beyond its changes: the runs whose changes were refused
    by their fence, and the runs the claim took (as they are now: held by the claimer,
    with their new lease)."""

    rejected: frozenset[str] = frozenset()
    claimed: list[Run] = field(default_factory=list)
    #: When a claim took fewer runs than it asked for: when the next claimable run of its
    #: tasks and queues is due (a retry's backoff), or None when none is waiting.
    next_due: float | None = None


NOTHING_WRITTEN = WriteResult()


@dataclass(slots=True, kw_only=True)
class ServiceRecord:
    """What is kept of one service between processes (a row of `services`).

    `state` is a service state's string; `config` any JSON-compatible value (the store
    encodes it, so a model comes back as a dict); `updated_at` is when it was last saved.
    """

    name: str
    state: str
    since: float
    starts: int = 0
    restarts: int = 0
    restart_times: list[float] = field(default_factory=list)
    last_error: ErrorInfo | None = None
    stop_timed_out: bool = False
    config: Any = None
    updated_at: float = 0.0


@dataclass(slots=True, kw_only=True)
class ServiceStartRecord:
    """One start of a service (a row of `service_starts`), numbered from 1 per service.

    `restart` is true for a start made by the restart policy; `exit_reason` is an exit
    reason's string, or None while the start has not ended.
    """

    number: int
    started_at: float
    restart: bool = False
    finished_at: float | None = None
    exit_reason: str | None = None
    error: ErrorInfo | None = None


class ServiceAction(StrEnum):
    """What a service request asks (`ServiceRequest.action`)."""

    START = "start"
    STOP = "stop"
    RESTART = "restart"
    SET = "set"  # attributes of a service class


def service_action(text: str) -> ServiceAction | str:
    """The action a stored request names; the text itself when this version knows no such
    action (the supervisor answers it with an error)."""
    try:
        return ServiceAction(text)
    except ValueError:
        return text


@dataclass(slots=True, kw_only=True)
class ServiceRequest:
    """A request to the serving process to act on a service (a row of `service_requests`).

    `action` is `start`, `stop`, `restart` or `set` (attributes of a service class:
    `config` is `{"values": {...}}`, JSON values, and/or `{"texts": {...}}`, values as typed
    on a command line); `config` any JSON-compatible value or None.
    `requested_by` says who asked (`cli:<user>`), None when nobody said. `handled_at` and
    `outcome` (a JSON-compatible dict) are set by the process that performed it; both are
    None while the request waits.
    """

    id: int
    service: str
    action: ServiceAction | str
    requested_at: float
    config: Any = None
    handled_at: float | None = None
    outcome: Any = None
    requested_by: str | None = None


@dataclass(slots=True, kw_only=True)
class ServiceLogLine:
    """A line a service logged during start number `start_number` (a row of
    `service_log_lines`); `id` is set by the store, increasing."""

    service: str
    start_number: int
    created_at: float
    level: str
    message: str
    id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True, kw_only=True)
class ServiceAttributeRecord:
    """The current value of one attribute of a service class (a row of
    `service_attributes`): `value` any JSON-compatible value; `updated_by` who set it
    (`cli:<user>`, `token:<name>`, `http`, `service` for the class's own code), None while
    it holds the class's default."""

    service: str
    name: str
    value: Any
    updated_at: float
    updated_by: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True, kw_only=True)
class ServiceAttributeChange:
    """One change of an attribute made from outside its service (a row of
    `service_attribute_changes`); `id` is set by the store, increasing."""

    service: str
    name: str
    value: Any
    changed_at: float
    changed_by: str
    id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True, kw_only=True)
class WorkerRecord:
    """A worker (an engine's process) as the store knows it: `alive` while its process
    holds its lock and its lease has not run out, `lost` otherwise (killed, paused, cut
    off, or its machine gone); `holds` is how many unfinished runs it owns.

    `queues` is None for a worker that takes every queue of the tasks it serves;
    `concurrency` is None for an engine that executes no runs (`worker=False`).
    """

    id: str
    hostname: str
    pid: int
    started_at: float
    heartbeat_at: float
    alive: bool
    holds: int = 0
    name: str | None = None
    queues: list[str] | None = None
    concurrency: int | None = None
    expires_at: float | None = None

    @property
    def state(self) -> str:
        return "alive" if self.alive else "lost"


@dataclass(slots=True, kw_only=True)
class ApiTokenRecord:
    """A token of the HTTP API (a row of `api_tokens`): never the secret, only its SHA-256
    hex digest. `role` is `viewer`, `operator` or `admin`; `revoked_at` is None while the
    token is valid."""

    id: str
    name: str
    role: str
    token_hash: str
    created_at: float
    revoked_at: float | None = None


@dataclass(slots=True, kw_only=True)
class PackageRecord:
    """An installed (or installing, or failed) task package: a row of `packages`.

    `state` is `pending`, `installing`, `ready` or `failed`; `manifest` the package's
    manifest as JSON (taskloom's or Fractal's, see `manifest_kind`); `frozen` the venv's
    `pip freeze`; `log` the install log.
    """

    name: str
    state: str
    source: str
    version: str | None = None
    venv: str | None = None
    python: str | None = None
    root: str | None = None
    manifest_kind: str | None = None
    manifest: Any = None
    frozen: str | None = None
    pip_args: list[str] = field(default_factory=list)
    log: str = ""
    error: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(slots=True, kw_only=True)
class DeploymentRecord:
    """A deployment of a stream pipeline (a row of `pipeline_deployments`).

    `topics` is a JSON-compatible description of its topics and `stages` of its stages
    (wiring, config, options); `stop_requested` is set by `request_deployment_stop` and
    cleared when the record is saved again (or a first part joins it anew).
    """

    name: str
    pipeline: str
    state: str
    bus: str
    started_at: float
    topics: Any = None
    stopped_at: float | None = None
    stop_requested: bool = False
    updated_at: float = 0.0
    stages: Any = None


@dataclass(slots=True, kw_only=True)
class DeploymentPartRecord:
    """One process running some stages of a deployment (a row of `pipeline_parts`).

    `state` is `running` or `stopped`; a running part that has not saved its status for
    a while (`lost_after`) is counted as lost: its process died without saying so.
    """

    deployment: str
    part: str
    host: str
    pid: int
    stages: list[str]
    state: str
    started_at: float
    stopped_at: float | None = None
    updated_at: float = 0.0
    status_interval: float = 1.0

    @property
    def lost_after(self) -> float:
        """Seconds without a status save after which a running part counts as lost."""
        return max(5.0, 5 * self.status_interval)

    def alive(self, now: float) -> bool:
        """Running, and heard from within `lost_after` seconds of `now`."""
        return self.state == "running" and now - self.updated_at <= self.lost_after


@dataclass(slots=True, kw_only=True)
class StageCounters:
    """What a stage of a deployment reports: its task, and its counters since the
    deployment started. The saved record (`StageRecord`) and the status read
    (`taskloom.streams.StageStatus`) are both these, with their own `state`."""

    stage: str
    task: str
    messages_in: int = 0
    messages_out: int = 0
    dropped: int = 0
    errors: int = 0
    restarts: int = 0
    last_timestamp: int | None = None
    last_error: ErrorInfo | None = None
    updated_at: float = 0.0

    def counters(self) -> dict[str, Any]:
        """The fields of `StageCounters`, for the other form of the same stage."""
        return {name: getattr(self, name) for name in _STAGE_COUNTERS}


@dataclass(slots=True, kw_only=True)
class StageRecord(StageCounters):
    """The saved status of one stage of a deployment (a row of `pipeline_stages`)."""

    deployment: str
    state: str


_STAGE_COUNTERS = tuple(f.name for f in fields(StageCounters))


@dataclass(slots=True, kw_only=True)
class ScheduleRecord:
    """A schedule (a row of `schedules`). `kind` is `cron` or `interval`, `rule` its cron
    expression or its seconds; `source` is `task` (a task's option) or `stored` (the CLI
    or API); `next_fire_at` the first tick not fired yet (None: the rule has ended)."""

    name: str
    task: str
    kind: str
    rule: str
    timezone: str = "UTC"
    inputs: dict[str, Any] = field(default_factory=dict)
    start_at: float | None = None
    end_at: float | None = None
    jitter: float = 0.0
    catch_up: str = "skip"
    max_catch_up: int = 10
    source: str = "stored"
    paused: bool = False
    next_fire_at: float | None = None
    last_fire_at: float | None = None
    trigger_requested_at: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(slots=True, kw_only=True)
class ActiveCounts:
    """The runs waiting and executing right now: `pending` runs by queue (claimed by a
    worker or not), `running` runs by task. Queues and tasks with none are left out."""

    pending: dict[str, int] = field(default_factory=dict)
    running: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class StatsBucket:
    """The runs that finished within one time bucket (`start`, epoch seconds), by status."""

    start: float
    completed: int = 0
    failed: int = 0
    cancelled: int = 0


@dataclass(slots=True, kw_only=True)
class TaskStats:
    """One task's runs finished within a window: counts by status, and percentiles of the
    durations of those that started (`finished_at - started_at`; None when none did),
    within 4.4 % of the exact nearest-rank values; `max_seconds` is exact."""

    task: str
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    p50_seconds: float | None = None
    p95_seconds: float | None = None
    max_seconds: float | None = None

    @property
    def finished(self) -> int:
        return self.completed + self.failed + self.cancelled

    @property
    def failure_rate(self) -> float:
        """Failed runs over finished ones; 0.0 when none finished."""
        return self.failed / self.finished if self.finished else 0.0


@dataclass(slots=True, kw_only=True)
class RunStats:
    """What finished within `[since, until)`: `buckets` of `bucket_seconds` each, oldest
    first, empty ones included; `tasks`, most runs first; and the runs `pending` and
    `running` now (every queue and task)."""

    since: float
    until: float
    bucket_seconds: int
    buckets: list[StatsBucket] = field(default_factory=list)
    tasks: list[TaskStats] = field(default_factory=list)
    pending: int = 0
    running: int = 0

    @property
    def totals(self) -> dict[str, int]:
        """Runs finished in the window by status, and `finished`, their sum."""
        totals = {
            "completed": sum(b.completed for b in self.buckets),
            "failed": sum(b.failed for b in self.buckets),
            "cancelled": sum(b.cancelled for b in self.buckets),
        }
        totals["finished"] = sum(totals.values())
        return totals

    @property
    def failure_rate(self) -> float:
        """Failed runs over finished ones in the window; 0.0 when none finished."""
        totals = self.totals
        return totals["failed"] / totals["finished"] if totals["finished"] else 0.0


@dataclass(slots=True, kw_only=True)
class HookRecord:
    """A webhook (a row of `hooks`): calls signed with `secret` start runs of `task`."""

    name: str
    task: str
    secret: str
    created_at: float = 0.0


#: Where a prune of one status goes on: the `created_at` and id of the last run looked at.
PruneCursor = tuple[float, str]


@dataclass(slots=True, kw_only=True)
class PruneBatch:
    """What one batch of a prune removed (in a dry run, what it would remove): runs, and
    the attempts and log lines of those runs."""

    runs: int = 0
    attempts: int = 0
    log_lines: int = 0
    #: Families looked at and kept: one of their runs is unfinished, or finished since
    #: the cutoff.
    kept: int = 0
    #: Where the next batch of the status starts; None once every run was looked at.
    after: PruneCursor | None = None


@dataclass(slots=True)
class TableStats:
    """A table: its rows, and its bytes on disk with its indexes (None where the
    database does not say)."""

    name: str
    rows: int
    bytes: int | None = None


@dataclass(slots=True, kw_only=True)
class DatabaseStats:
    """What a database holds: its tables, its size (`files`: a SQLite file and its
    write-ahead log, by name), its runs by status, and its oldest runs."""

    backend: str
    tables: tuple[TableStats, ...] = ()
    size_bytes: int | None = None
    files: dict[str, int] = field(default_factory=dict)
    runs_by_status: dict[str, int] = field(default_factory=dict)
    oldest_run_at: float | None = None
    oldest_finished_at: float | None = None


class RunStore(Protocol):
    """Runs, their attempts and their log lines: written in batches, read by id and by page.

    Listing is newest first (`created_at` then `id`, both descending); `before` is the id
    of the last run of the previous page. What only reads or writes runs (listings, the
    step runs of a workflow, `taskloom runs`) asks for this and nothing of the workers.
    """

    @property
    def inline_writes(self) -> bool:
        """Whether the engine may commit a small batch on its own thread (`write(batch,
        wait=False)`) instead of handing it to its writer thread. `SqlStore` says yes on a
        SQLite file, whose commits take microseconds, and no on PostgreSQL, where a commit
        is a network round trip; `MemoryStore` says no, so an engine on memory takes the
        writer thread's path as it does on PostgreSQL."""
        ...

    def write(self, batch: WriteBatch, *, wait: bool = True) -> WriteResult:
        """Apply a batch atomically: all of it is committed, or none of it (but for the
        changes its fences refuse, see `WriteBatch`).

        `StoreUnavailableError` (and its branches): the database could not take it now,
        through no fault of the data; the same batch can be written again. Any other
        `StoreError`: the database refused a value in the batch. With `wait` False a write
        that would wait for another process's lock raises `StoreBusyError` at once. A
        batch's `fences` and `claim` are the queue's part of it (see `QueueStore`).
        """

    def insert_run_idempotent(self, run: Run) -> Run:
        """Insert `run` unless a run with its `idempotency_key` exists; return the one kept."""

    def get_run(self, run_id: str) -> Run | None: ...

    def get_runs(self, run_ids: Collection[str]) -> list[Run]:
        """The runs among `run_ids` that exist, in no particular order."""

    def finished_among(self, run_ids: Collection[str]) -> list[Run]:
        """The runs among `run_ids` that have finished."""

    def list_runs(
        self,
        *,
        task: str | None = None,
        status: str | Collection[str] | None = None,
        parent_id: str | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> list[Run]: ...

    def runs_keyed(self, prefix: str, *, limit: int = 100) -> list[Run]:
        """Runs whose idempotency key starts with `prefix`, by key, the greatest first
        (a schedule's runs: its latest ticks first); read through the key's index."""

    def get_attempts(self, run_id: str) -> list[Attempt]: ...

    def get_logs(self, run_id: str, *, after_id: int = 0, limit: int = 1000) -> list[LogLine]: ...

    def logs_after(self, after_id: int, *, limit: int = 1000) -> list[LogLine]:
        """Log lines of every run with an id above `after_id`, oldest first."""

    def last_log_id(self) -> int:
        """The id of the newest log line (0 when there is none)."""


class QueueStore(RunStore, Protocol):
    """The runs as a queue shared by workers: who is alive, who holds which run, and what
    other processes change.

    It is a `RunStore` and more, because the queue is the runs table: a claim and a fence
    ride on a `WriteBatch`, and a reap, a takeover or a cancel changes runs in the same
    transaction that looks at the workers. A claim takes up to `ClaimRequest.limit`
    claimable runs and gives each a new lease; a fence refuses the changes of a run its
    worker no longer holds under that lease.
    """

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
        """Record a live worker, take the lock that proves it is alive, and start its lease
        (`ttl` seconds on the database's clock)."""

    def heartbeat(self, worker_id: str, *, ttl: float = LEASE_TTL) -> bool:
        """Renew the worker's lease; False when it had run out or a reaper found the worker
        lost (its runs are gone: it must register again under a new id)."""

    def update_worker(self, worker_id: str, *, queues: Collection[str] | None) -> None:
        """Record the queues a worker serves now."""

    def retire_worker(self, worker_id: str) -> None:
        """A worker that lost its lease lets its id go (lock released, record expired)."""

    def unregister_worker(self, worker_id: str) -> None:
        """Remove the worker's record and release its lock."""

    def is_worker_alive(self, worker_id: str) -> bool:
        """True while the worker's process holds its lock (exact, no lease to wait out)."""

    def peer_queues(self, worker_id: str) -> frozenset[str]:
        """The queues that live workers other than `worker_id` take runs from (workers
        that execute runs: not engines with `worker=False`)."""

    def list_workers(self) -> list[WorkerRecord]:
        """Every worker recorded, alive or lost, oldest first, with the runs each holds."""

    def prune_workers(self, *, lost_before: float) -> int:
        """Remove the records of lost workers whose last heartbeat is older than
        `lost_before` (seconds since the epoch) and that hold no unfinished run; returns
        how many were removed."""

    def reap(self, worker_id: str) -> int:
        """Give back the runs of dead workers (lock gone or lease run out), if no other
        reaper is at it: pending ones as they are; a running one's attempt fails with
        `WorkerLostError`, and the run is pending again when it has attempts left, failed
        otherwise (with a new lease, so a late end of its old holder is refused). Workflow
        runs are left to workflow recovery (which resumes them); their steps are given back
        like any run. Each dead worker is marked lost. Returns how many runs were given
        back or ended."""

    def claim_orphaned_runs(self, worker_id: str, tasks: Collection[str]) -> list[Run]:
        """Take over the unfinished runs of `tasks` whose worker is gone (its lock is
        released, or a reaper found its lease run out), or unset.

        Returns the claimed runs as they were before the claim (a run that was `running`
        is returned as `running`), now owned by `worker_id`.
        """

    def request_cancel(self, run_id: str) -> Run | None:
        """Record a cancellation request on an unfinished run; return the run (or None)."""

    def cancel_requests(self, worker_id: str) -> list[str]:
        """Ids of unfinished runs owned by `worker_id` whose cancellation was requested."""

    def cancel_orphaned_run(self, run_id: str, *, finished_at: float) -> bool:
        """Mark an unfinished run whose worker is gone as cancelled (with a new lease, so a
        late end of that worker is refused); True if it was."""

    def watch(self, callback: Callable[[str, str], None]) -> ChangeFeed | None:
        """Start a feed of the commits other processes make (`store/feed.py`), calling
        `callback(channel, payload)` from its thread; None when no other process can reach
        the database. The caller stops it."""

    def want_records(self) -> None:
        """Ask every process on the database to tell the ends it writes whole, with their
        records, for a few seconds (a process that tells others' runs to listeners asks
        while it has any); nothing where no other process can reach the database."""


class ServiceAttributeStore(Protocol):
    """The live attributes of service classes (`Service` subclasses with loops): their
    current values, kept so that a new process starts with them, and their history."""

    def declare_service_attributes(
        self, service: str, defaults: Mapping[str, Any], *, declared_at: float
    ) -> list[ServiceAttributeRecord]:
        """Make the stored attributes of `service` those of `defaults`, in one transaction:
        an attribute not stored yet is added with its default (`updated_by` None), one
        still holding a default takes the new default, one set by someone keeps its
        value, one no longer declared is removed. Return them all, by name."""

    def set_service_attributes(
        self,
        service: str,
        values: Mapping[str, Any],
        *,
        changed_at: float,
        changed_by: str,
        record: bool = True,
    ) -> None:
        """Store new current values (each JSON-compatible) set by `changed_by`, and with
        `record` add each to the history, in one transaction."""

    def get_service_attributes(self, service: str) -> list[ServiceAttributeRecord]:
        """The stored attributes of a service class, by name; [] when it has none."""

    def get_service_attribute_changes(
        self, service: str, *, limit: int = 100
    ) -> list[ServiceAttributeChange]:
        """The last `limit` changes of a service class's attributes, newest first."""


class ServiceStore(ServiceAttributeStore, Protocol):
    """What a `Supervisor` keeps of its services between processes, and the requests
    other processes leave for it (`taskloom service start ...`), the attributes of
    service classes among them."""

    def save_service(self, record: ServiceRecord) -> None:
        """Insert or replace the record of the service `record.name`."""

    def get_service(self, name: str) -> ServiceRecord | None:
        """The saved record of a service, or None."""

    def list_services(self) -> list[ServiceRecord]:
        """Every saved service record, by name."""

    def save_service_start(self, name: str, start: ServiceStartRecord) -> None:
        """Insert or replace start number `start.number` of the service `name`."""

    def get_service_starts(self, name: str, *, limit: int = 100) -> list[ServiceStartRecord]:
        """The last `limit` starts of a service, newest (highest number) first."""

    def add_service_request(
        self,
        service: str,
        action: str,
        config: Any = None,
        *,
        requested_at: float | None = None,
        requested_by: str | None = None,
    ) -> int:
        """Record a request (`requested_at` defaults to now) and who made it; return its
        id."""

    def pending_service_requests(self) -> list[ServiceRequest]:
        """The requests not handled yet, oldest (lowest id) first."""

    def finish_service_request(
        self, request_id: int, outcome: Any, *, handled_at: float | None = None
    ) -> bool:
        """Mark a request handled (`handled_at` defaults to now) with its JSON `outcome`,
        unless it is handled already (another process answered it first); True when this
        outcome is the one recorded."""

    def get_service_request(self, request_id: int) -> ServiceRequest | None:
        """One request, handled or not, or None."""

    def cancel_service_request(self, request_id: int) -> bool:
        """Delete the request if it is still unhandled; True if it was deleted."""

    def add_service_log_lines(self, lines: Collection[ServiceLogLine]) -> None:
        """Append log lines of services (their `id` is ignored: the store numbers them)."""

    def get_service_logs(
        self, service: str, *, after_id: int = 0, limit: int = 1000
    ) -> list[ServiceLogLine]:
        """Lines of a service with an id above `after_id`, oldest first, at most `limit`."""


class TokenStore(Protocol):
    """The HTTP API's tokens, kept as hashes: made and revoked by `taskloom token` and the
    tokens API, looked up by the server on each request."""

    def add_api_token(self, record: ApiTokenRecord) -> None:
        """Record a new token (its id and hash must be new)."""

    def find_api_token(self, token_hash: str) -> ApiTokenRecord | None:
        """The token with this hash, revoked or not, or None."""

    def list_api_tokens(self) -> list[ApiTokenRecord]:
        """Every token, revoked ones included, oldest first."""

    def revoke_api_token(self, token_id: str, *, revoked_at: float | None = None) -> bool:
        """Revoke a valid token (`revoked_at` defaults to now); True if it was revoked."""


class PackageStore(Protocol):
    """Task packages: their install state, venv, manifest and install log."""

    def save_package(self, record: PackageRecord) -> None:
        """Insert or replace the record of the package `record.name`."""

    def get_package(self, name: str) -> PackageRecord | None:
        """The record of a package, or None."""

    def list_packages(self) -> list[PackageRecord]:
        """Every package record, by name."""

    def delete_package(self, name: str) -> bool:
        """Forget a package; True if it was recorded."""


class DeploymentStore(Protocol):
    """Deployments of stream pipelines and the saved status of their stages, with the stop
    requests other processes leave (`store/pipelines.py` holds both implementations)."""

    def save_deployment(self, record: DeploymentRecord) -> None:
        """Insert or replace the record of the deployment `record.name`."""

    def get_deployment(self, name: str) -> DeploymentRecord | None:
        """The saved record of a deployment, or None."""

    def list_deployments(self) -> list[DeploymentRecord]:
        """Every deployment record, by name."""

    def request_deployment_stop(self, name: str) -> bool:
        """Set `stop_requested` on a deployment; False when there is no such deployment."""

    def save_stage_records(self, deployment: str, records: Collection[StageRecord]) -> None:
        """Insert or replace the status of each stage (one transaction)."""

    def get_stage_records(self, deployment: str) -> list[StageRecord]:
        """The saved stages of a deployment, by stage name."""

    def join_deployment(
        self, record: DeploymentRecord, part: DeploymentPartRecord
    ) -> DeploymentRecord:
        """Record `part` as running `record.name`, in one transaction, and return the
        deployment as stored: kept as it is (with its stop request) while another part is
        alive, else replaced by `record` (a fresh deployment, no stop requested)."""

    def save_deployment_part(self, part: DeploymentPartRecord) -> None:
        """Insert or replace one part's row (its periodic status save, its end)."""

    def leave_deployment(self, name: str, part: str, *, stopped_at: float) -> str:
        """Record `part` stopped and, when no other part is alive, the deployment too, in
        one transaction; returns the deployment's state afterwards (`running` or
        `stopped`; `stopped` when there is no such deployment)."""

    def get_deployment_parts(self, deployment: str) -> list[DeploymentPartRecord]:
        """The parts of a deployment, oldest first."""


class ScheduleStore(Protocol):
    """Schedules, and the webhooks that start runs (`store/schedules.py` holds both
    implementations). Workers fire what is due and move each schedule on with a
    compare-and-set, so a tick is fired by one of them."""

    def save_schedule(self, record: ScheduleRecord) -> None:
        """Insert or replace the schedule `record.name`."""

    def get_schedule(self, name: str) -> ScheduleRecord | None:
        """The schedule of this name, or None."""

    def list_schedules(self) -> list[ScheduleRecord]:
        """Every schedule, by name."""

    def delete_schedule(self, name: str) -> bool:
        """Forget a schedule; True if it was recorded."""

    def due_schedules(
        self, now: float, *, tasks: Collection[str] | None = None, limit: int = 100
    ) -> list[ScheduleRecord]:
        """Schedules not paused whose next tick is at or before `now`, soonest first, then
        those with a trigger requested (paused or not); only those of `tasks` if given."""

    def next_schedule_due(self, *, tasks: Collection[str] | None = None) -> float | None:
        """The soonest next tick of the schedules not paused (of `tasks`), or None."""

    def advance_schedule(
        self, name: str, *, expected: float | None, next_fire_at: float | None, fired: float | None
    ) -> bool:
        """Move a schedule's next tick from `expected` to `next_fire_at` (and its last
        fire to `fired` when given); False, changing nothing, when its next tick is no
        longer `expected` (another worker moved it first)."""

    def set_schedule_paused(
        self, name: str, paused: bool, *, next_fire_at: float | None, now: float
    ) -> bool:
        """Pause or resume a schedule (a resumed one fires from `next_fire_at`); False
        when there is no such schedule."""

    def request_schedule_trigger(self, name: str, *, at: float) -> float | None:
        """Ask for one run of the schedule now, kept until a worker starts it; a request
        made while another waits joins it. Returns the time of the waiting request (`at`,
        or the earlier one), None when there is no such schedule."""

    def clear_schedule_trigger(self, name: str, *, expected: float) -> bool:
        """Clear the trigger requested at `expected`; False when it is no longer that one."""

    def save_hook(self, record: HookRecord) -> None:
        """Insert or replace the webhook `record.name`."""

    def get_hook(self, name: str) -> HookRecord | None:
        """The webhook of this name, or None."""

    def list_hooks(self) -> list[HookRecord]:
        """Every webhook, by name."""

    def delete_hook(self, name: str) -> bool:
        """Forget a webhook; True if it was recorded."""


class StatsStore(Protocol):
    """Counts of runs for gauges and charts (`store/stats.py` holds both implementations).

    Every batch that ends runs (and the reaper, and a cancel in the store) adds them, in
    the same transaction, to counts per time bucket, task and status and to histograms
    of their durations (`store/rollup.py`): a window is read from those, never from the
    runs, so its cost does not grow with the runs it counts.
    """

    def active_counts(self) -> ActiveCounts:
        """The pending runs by queue and the running runs by task, now: cheap enough to
        read on every scrape (through the queue's partial indexes)."""

    def run_stats(
        self, *, since: float, until: float, bucket_seconds: int, task: str | None = None
    ) -> RunStats:
        """The runs that finished in `[since, until)` (of `task` only, if given), counted
        in buckets of `bucket_seconds`. `since` and `bucket_seconds` must be multiples of
        one of the rollup's grains (`rollup.GRAINS`: 60, 900, 3600 or 21600 seconds)."""


class RetentionStore(Protocol):
    """Removing old finished runs, and what the database holds (`store/retention.py`
    holds both implementations)."""

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
        """One batch, in one transaction: delete the next families (a run with every
        descendant through `parent_id`) headed by a run of `status` that finished before
        `finished_before`, after `after`, up to `limit` runs (a larger family goes alone),
        with their attempts and log lines. A family is kept whole when any of its runs is
        unfinished or finished since then. With `dry_run` nothing is deleted: the counts
        say what would be. With `wait` False, None at once when another process's batch
        holds the prune's lock (PostgreSQL)."""

    def database_stats(self) -> DatabaseStats:
        """Rows per table, size on disk, runs by status, the oldest run and the oldest
        finished run."""


class Store(
    QueueStore,
    ServiceStore,
    TokenStore,
    PackageStore,
    DeploymentStore,
    ScheduleStore,
    StatsStore,
    RetentionStore,
    Protocol,
):
    """Every part together, on one database: what `open_store()` returns and an `Engine`
    holds. The engine's supervisor, and the server's tokens, packages and pipelines, use
    the engine's store, each through its own part.

    Code that uses one part is typed against that part's protocol, so a backend, or a
    test double, needs only that part to serve it.
    """

    url: str

    def open(self) -> None:
        """Connect, and create or upgrade the schema when the store allows it."""

    def close(self) -> None:
        """Release connections and the worker locks this store holds."""

    def schema_revision(self) -> str | None:
        """The schema revision the database is at, read from it now (so a readiness probe
        also learns that it answers); None when it was never migrated. A store with no
        schema of its own (memory) is always at the newest."""
