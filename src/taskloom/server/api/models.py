"""The shapes of the API's bodies, as pydantic models: they validate what clients send
and describe every response in the OpenAPI document."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AttemptOut",
    "ErrorInfoOut",
    "ErrorOut",
    "FieldErrorOut",
    "HealthOut",
    "LogLineOut",
    "LogsOut",
    "PackageAddIn",
    "PackageDetailOut",
    "PackageOut",
    "ReadyOut",
    "RunOut",
    "RunPage",
    "ServiceConfigIn",
    "ServiceLogLineOut",
    "ServiceLogsOut",
    "ServiceOut",
    "ServiceStartOut",
    "StatsBucketOut",
    "StatsOut",
    "StatsTotalsOut",
    "SubmitIn",
    "TaskOut",
    "TaskStatsOut",
    "TokenCreateIn",
    "TokenCreatedOut",
    "TokenOut",
    "WorkerOut",
    "WorkflowOut",
    "WorkflowStepOut",
    "WorkflowSubmitIn",
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubmitIn(_In):
    """A run to submit: the task's name and its inputs (validated against its schema)."""

    task: str = Field(min_length=1, max_length=200)
    inputs: dict[str, Any] = Field(default_factory=dict)
    priority: int | None = Field(default=None, ge=-(2**31), le=2**31 - 1)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=255)
    config: Any = None
    parent_id: str | None = Field(default=None, min_length=1, max_length=36)
    run_at: str | float | None = Field(
        default=None,
        description="When it is due: ISO 8601 (no offset: UTC) or seconds since the epoch.",
    )
    delay: float | None = Field(default=None, description="Due this many seconds from now.")


class ServiceConfigIn(_In):
    """The config to start a service with; null keeps the config it had."""

    config: Any = None


class TokenCreateIn(_In):
    role: str = Field(pattern="^(viewer|operator|admin)$")
    name: str | None = Field(default=None, min_length=1, max_length=200)


class FieldErrorOut(BaseModel):
    field: str
    message: str


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    message: str
    errors: list[FieldErrorOut] | None = None


class ErrorOut(BaseModel):
    error: ErrorDetail


class ErrorInfoOut(BaseModel):
    type: str
    message: str
    traceback: str | None = None
    retryable: bool = False


class RunOut(BaseModel):
    id: str
    task: str
    inputs: dict[str, Any]
    status: str
    priority: int
    result: Any = None
    error: ErrorInfoOut | None = None
    attempts: int
    max_attempts: int
    parent_id: str | None = None
    idempotency_key: str | None = None
    worker_id: str | None = None
    created_at: float
    scheduled_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    progress: float | None = None
    progress_message: str | None = None
    cancel_requested: bool = False
    config: Any = None


class RunPage(BaseModel):
    """One page of runs, newest first; pass `next_cursor` as `cursor` for the next page
    (null on the last page)."""

    runs: list[RunOut]
    next_cursor: str | None


class AttemptOut(BaseModel):
    run_id: str
    number: int
    started_at: float
    finished_at: float | None = None
    status: str
    error: ErrorInfoOut | None = None
    worker_id: str | None = None
    executor: str | None = Field(
        default=None,
        description=(
            "What made the attempt's call: loop, inline, thread, serial, or dask and its "
            "scheduler's address"
        ),
    )
    dashboard: str | None = Field(
        default=None, description="The Dask dashboard's address, when the scheduler serves one"
    )


class LogLineOut(BaseModel):
    id: int | None
    run_id: str
    attempt: int
    created_at: float
    level: str
    message: str


class LogsOut(BaseModel):
    """Log lines oldest first; pass `next_after_id` as `after_id` for newer ones."""

    lines: list[LogLineOut]
    next_after_id: int


class TaskOut(BaseModel):
    name: str
    label: str
    description: str
    kind: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    tags: list[str]
    meta: dict[str, Any]


class ServiceStartOut(BaseModel):
    number: int
    started_at: float
    restart: bool
    ended_at: float | None = None
    exit_reason: str | None = None
    error: ErrorInfoOut | None = None


class ServiceOut(BaseModel):
    name: str
    state: str
    since: float
    starts: int
    restarts: int
    restart_times: list[float]
    next_restart_at: float | None
    last_error: ErrorInfoOut | None
    stop_timed_out: bool
    history: list[ServiceStartOut] = Field(default_factory=list)
    description: str = ""
    config_schema: dict[str, Any] | None = None
    #: The config it runs (or will start) with, as JSON; null when it takes none.
    config: Any = None
    #: The service class whose loop it is (its attributes: `/services/{instance}/attributes`).
    instance: str | None = None


class AttributeUpdateOut(BaseModel):
    at: float
    by: str


class ServiceAttributesOut(BaseModel):
    """The live attributes of a service class: their values now, their JSON Schema, who
    last set each one (those still at their default are left out), and the class's loops."""

    service: str
    values: dict[str, Any]
    schema_: dict[str, Any] = Field(alias="schema")
    updated: dict[str, AttributeUpdateOut]
    loops: list[str]


class AttributeChangeOut(BaseModel):
    id: int | None
    service: str
    name: str
    value: Any
    changed_at: float
    changed_by: str


class AttributeChangesOut(BaseModel):
    changes: list[AttributeChangeOut]


class ServiceLogLineOut(BaseModel):
    id: int | None
    service: str
    start_number: int
    created_at: float
    level: str
    message: str


class ServiceLogsOut(BaseModel):
    lines: list[ServiceLogLineOut]
    next_after_id: int


class HealthOut(BaseModel):
    status: str
    version: str
    database: str
    auth: bool
    tasks: int
    services: int


class ReadyOut(BaseModel):
    """Ready to serve: the database answers, its schema is the newest, the engine runs."""

    status: Literal["ready"]
    schema_revision: str


class CallerOut(BaseModel):
    role: str
    token_id: str | None = None
    name: str | None = None


class TokenOut(BaseModel):
    id: str
    name: str
    role: str
    created_at: float
    revoked_at: float | None = None


class TokenCreatedOut(TokenOut):
    """The new token; `token` is the secret, shown this once and never again."""

    token: str


class WorkflowSubmitIn(_In):
    """A workflow in its data form (the object `taskloom workflow run FILE` reads, or the
    YAML or JSON text of such a file) and the workflow's inputs."""

    workflow: dict[str, Any] | Annotated[str, Field(max_length=1_000_000)] = Field(
        description="name, description, inputs, steps, outputs; or that as YAML/JSON text"
    )
    inputs: dict[str, Any] = Field(default_factory=dict)
    priority: int | None = Field(default=None, ge=-(2**31), le=2**31 - 1)


class WorkflowStepOut(BaseModel):
    """One step: its place in the graph and how far it got."""

    name: str
    task: str
    map: str | None
    dependencies: list[str]
    after: list[str]
    optional: list[str]
    status: str
    counts: dict[str, int]
    result: Any = None
    run_ids: list[str]
    runs: list[RunOut]


class WorkflowOut(BaseModel):
    """A workflow run, the workflow it runs (data form) and its steps, each after the
    steps it depends on."""

    run: RunOut
    workflow: dict[str, Any]
    steps: list[WorkflowStepOut]


class PackageAddIn(_In):
    """What to install: NAME[==VERSION] (extras and pins allowed), a wheel file or a
    package folder on the server's machine; `pip_args` go to `pip install`."""

    source: str = Field(min_length=1, max_length=2000)
    pip_args: list[str] = Field(default_factory=list, max_length=50)


class PackageOut(BaseModel):
    name: str
    version: str | None
    state: str
    source: str
    venv: str | None
    manifest: str | None
    tasks: list[str]
    frozen: list[str]
    pip_args: list[str]
    error: str | None
    created_at: float
    updated_at: float


class PackageDetailOut(PackageOut):
    """A package with its install log (kept when the install failed)."""

    log: str


class WorkerOut(BaseModel):
    """A worker (an engine's process) recorded on the database: `alive` while its process
    holds its lock, `lost` once it is gone. `queues` null: every queue of the tasks it
    serves; `concurrency` null: it executes no runs; `holds`: the unfinished runs it owns.
    Times are seconds since the epoch; `expires_at` is when its lease runs out, if it has
    one."""

    id: str
    name: str | None
    hostname: str
    pid: int
    queues: list[str] | None
    concurrency: int | None
    started_at: float
    heartbeat_at: float
    expires_at: float | None
    holds: int
    alive: bool
    state: Literal["alive", "lost"]


class StatsBucketOut(BaseModel):
    """The runs that finished in one bucket, which starts at `start` (epoch seconds)."""

    start: float
    completed: int
    failed: int
    cancelled: int


class StatsTotalsOut(BaseModel):
    """The runs that finished in the window, by status; `finished` is their sum."""

    completed: int
    failed: int
    cancelled: int
    finished: int


class TaskStatsOut(BaseModel):
    """One task's runs finished in the window. Durations (`finished_at - started_at`, of
    the runs that started; null when none did) are nearest-rank percentiles read from
    histograms, within 4.4 % of the exact value; `max_seconds` is exact."""

    task: str
    finished: int
    completed: int
    failed: int
    cancelled: int
    failure_rate: float
    p50_seconds: float | None
    p95_seconds: float | None
    max_seconds: float | None


class StatsOut(BaseModel):
    """The runs that finished in the last `window`, in buckets of `bucket_seconds` from
    `since` to `until` (now; epoch seconds), oldest first and empty ones included; the
    tasks with a run finished in it, most runs first; and the runs `pending` and `running`
    now, every queue and task."""

    window: Literal["15m", "1h", "6h", "1d", "7d"]
    since: float
    until: float
    bucket_seconds: int
    buckets: list[StatsBucketOut]
    totals: StatsTotalsOut
    failure_rate: float
    tasks: list[TaskStatsOut]
    pending: int
    running: int
