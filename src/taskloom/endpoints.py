"""The operations of the HTTP API as the Python clients call them, each written once.

Each operation of `Operations` is the plan of the requests it makes (see `client_plans`):
one `Call` for most, naming its route (method, path, query, JSON body) and how the
answer reads; `wait` and `run` make several; `iter_runs` gives the first page of a
listing, `tail` an event stream to read. Each names the errors it raises, added to its
docstring. `Client` and `AsyncClient` are subclasses: each gets a method of its own for
every operation, with its signature and docstring, so that the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import time
from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import Any, Generic, TypeVar

from .client_plans import (
    Call,
    Iteration,
    Operation,
    Page,
    Plan,
    SseParser,
    Steps,
    Stream,
    iteration,
    operation,
)
from .exceptions import (
    InputValidationError,
    NotAWorkflowRunError,
    RunNotFoundError,
    UnknownTaskError,
    WaitTimeoutError,
    WorkflowError,
    WorkflowValidationError,
)
from .packages.errors import PackageError, UnknownPackageError
from .runs import Attempt, ErrorInfo, LogLine, Run
from .schedules.errors import ScheduleError, ScheduleNotFoundError
from .services.errors import AttributeValidationError, ServiceRunningError, UnknownServiceError
from .store.base import WorkerRecord
from .streams.errors import (
    DeploymentNotFoundError,
    PipelineError,
    PortValidationError,
    StageConfigError,
    UnknownTopicError,
    WiringError,
)
from .workflows import Workflow

__all__ = ["DEFAULT_URL", "WAIT_SLICE", "Operations"]

TransportT = TypeVar("TransportT")
HttpT = TypeVar("HttpT")

DEFAULT_URL = "http://127.0.0.1:8321"

#: Longest wait one request asks the server for; longer waits are made of several.
WAIT_SLICE = 30.0


# what the answers read as -----------------------------------------------------------------
def _object(data: Any) -> dict[str, Any]:
    result: dict[str, Any] = data
    return result


def _objects(data: Any) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = data
    return result


def _fires(data: Any) -> list[str]:
    return [str(t) for t in data["fires"]]


def _idempotency_key(data: Any) -> str:
    return str(data["idempotency_key"])


def _nothing(data: Any) -> None:
    return None


def _changes(data: Any) -> list[dict[str, Any]]:
    changes: list[dict[str, Any]] = data["changes"]
    return changes


def _lines(data: Any) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = data["lines"]
    return lines


def _with_error(data: dict[str, Any]) -> dict[str, Any]:
    """The fields of a run or an attempt, its `error` an `ErrorInfo`."""
    error = data.get("error")
    return {**data, "error": ErrorInfo.from_dict(error) if error else None}


def _run(data: dict[str, Any]) -> Run:
    return Run.from_dict(data)


def _runs(data: Any) -> list[Run]:
    return [_run(r) for r in data["runs"]]


#: The fields of an attempt; a newer server's other fields are left out.
_ATTEMPT_FIELDS = frozenset(f.name for f in dataclasses.fields(Attempt))


def _attempts(data: Any) -> list[Attempt]:
    return [
        Attempt(**{k: v for k, v in _with_error(a).items() if k in _ATTEMPT_FIELDS}) for a in data
    ]


def _log_lines(data: Any) -> list[LogLine]:
    return [LogLine(**line) for line in data["lines"]]


#: The fields of a worker record; a newer server's other fields are left out.
_WORKER_FIELDS = frozenset(f.name for f in dataclasses.fields(WorkerRecord))


def _workers(data: Any) -> list[WorkerRecord]:
    # `state` is a property of the record (from `alive`), not a field.
    return [WorkerRecord(**{k: v for k, v in w.items() if k in _WORKER_FIELDS}) for w in data]


# what the requests send -------------------------------------------------------------------
def _submit_body(
    task: str,
    inputs: dict[str, Any] | None,
    priority: int | None,
    idempotency_key: str | None,
    config: Any,
    parent_id: str | None,
    run_at: Any = None,
    delay: float | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"task": task, "inputs": inputs or {}}
    if isinstance(run_at, datetime):
        run_at = run_at.isoformat()
    for key, value in (
        ("priority", priority),
        ("idempotency_key", idempotency_key),
        ("config", config),
        ("parent_id", parent_id),
        ("run_at", run_at),
        ("delay", delay),
    ):
        if value is not None:
            body[key] = value
    return body


def _runs_query(
    task: str | None,
    status: str | Collection[str] | None,
    parent_id: str | None,
    limit: int,
    before: str | None,
) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": limit}
    if task is not None:
        params["task"] = task
    if status is not None:
        params["status"] = [status] if isinstance(status, str) else list(status)
    if parent_id is not None:
        params["parent_id"] = parent_id
    if before is not None:
        params["cursor"] = before
    return params


def _runs_page(params: dict[str, Any]) -> Call[Page[Run]]:
    def read(data: Any) -> Page[Run]:
        cursor = data["next_cursor"]
        following = None if cursor is None else _runs_page({**params, "cursor": cursor})
        return Page(_runs(data), following)

    return Call("GET", "/runs", read, params)


def _workflow_body(
    workflow: Workflow | dict[str, Any] | str, inputs: dict[str, Any] | None, priority: int | None
) -> dict[str, Any]:
    data = workflow.to_dict() if isinstance(workflow, Workflow) else workflow
    body: dict[str, Any] = {"workflow": data, "inputs": inputs or {}}
    if priority is not None:
        body["priority"] = priority
    return body


class _TopicTail:
    """A topic's event stream read as its messages, each with `dropped` (how many this
    reader has lost so far by falling behind); done after `count` messages."""

    def __init__(self, deployment: str, topic: str, count: int | None) -> None:
        self.path = f"/pipelines/{deployment}/topics/{topic}/tail"
        self._events = SseParser()
        self._dropped = 0
        self._left = count

    @property
    def done(self) -> bool:
        return self._left is not None and self._left <= 0

    def feed(self, line: str) -> list[dict[str, Any]]:
        event = self._events.feed(line)
        if event is None:
            return []
        kind, data = event
        if kind == "lagged":
            self._dropped = int(json.loads(data)["dropped"])
        if kind != "message":
            return []
        message: dict[str, Any] = json.loads(data)
        message["dropped"] = self._dropped
        if self._left is not None:
            self._left -= 1
        return [message]


# the operations ---------------------------------------------------------------------------
class Operations(Generic[TransportT, HttpT]):
    """Every operation of the API, once, for `Client` and `AsyncClient` (see the module's
    docstring): a subclass gets a method for each, made from its plan by `_method`."""

    #: Whether the methods are coroutines (and the iterators async).
    asynchronous = False

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout: float = 60.0,
        transport: TransportT | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._http: HttpT = self._open(
            base_url=self.url + "/api",
            headers={"Authorization": f"Bearer {token}"} if token else {},
            timeout=timeout,
            transport=transport,
        )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in vars(Operations):
            # Only where the operation is still the declaration: a subclass of a client
            # inherits its methods, and keeps those it defines itself.
            declared = inspect.getattr_static(cls, name)
            if isinstance(declared, Operation | Iteration):
                setattr(cls, name, declared.method_of(cls))

    # What each client has its own way (sync or async).
    @staticmethod
    def _open(**options: Any) -> HttpT:
        raise NotImplementedError

    @staticmethod
    def _method(plan: Callable[..., Plan[Any]]) -> Callable[..., Any]:
        """A method that makes the plan and carries it out."""
        raise NotImplementedError

    def _pages(self, first: Call[Page[Any]]) -> Any:
        raise NotImplementedError

    def _listen(self, stream: Stream[Any]) -> Any:
        raise NotImplementedError

    # server -----------------------------------------------------------------------------
    @operation()
    def health(self) -> Call[dict[str, Any]]:
        """The server's state: `status`, `version`, `database`, `auth` (whether it needs a
        token), and how many `tasks` and `services` it serves."""
        return Call("GET", "/health", _object)

    @operation()
    def workers(self) -> Call[list[WorkerRecord]]:
        """Every worker recorded on the server's database, alive or lost, oldest first."""
        return Call("GET", "/workers", _workers)

    @operation()
    def stats(self, window: str = "1h", *, task: str | None = None) -> Call[dict[str, Any]]:
        """The runs that finished in the last `window` (`15m`, `1h`, `6h`, `1d` or `7d`;
        another is refused, a `ClientError` with status 422), of `task` only if given:
        `buckets` (oldest first, by status), `totals`, `failure_rate`, `tasks` (most runs
        first, with `p50_seconds`, `p95_seconds` and `max_seconds`), and the runs
        `pending` and `running` now; as `GET /api/stats` answers it."""
        params = {"window": window} if task is None else {"window": window, "task": task}
        return Call("GET", "/stats", _object, params)

    # tasks ------------------------------------------------------------------------------
    @operation()
    def tasks(self) -> Call[list[dict[str, Any]]]:
        """Every task the server has: name, description, input and output schemas."""
        return Call("GET", "/tasks", _objects)

    @operation(UnknownTaskError)
    def task(self, name: str) -> Call[dict[str, Any]]:
        """One task the server has: name, description, input and output schemas."""
        return Call("GET", f"/tasks/{name}", _object)

    # runs -------------------------------------------------------------------------------
    @operation(InputValidationError, UnknownTaskError)
    def submit(
        self,
        task: str,
        inputs: dict[str, Any] | None = None,
        *,
        priority: int | None = None,
        idempotency_key: str | None = None,
        config: Any = None,
        parent_id: str | None = None,
        run_at: datetime | str | float | None = None,
        delay: float | None = None,
    ) -> Call[Run]:
        """Record a run of a task the server has; returns it once it is committed. With
        `run_at` (a datetime, ISO 8601 text or epoch seconds; naive: UTC) or `delay`
        (seconds) it waits, `pending`, for a worker to start it when due."""
        body = _submit_body(
            task, inputs, priority, idempotency_key, config, parent_id, run_at, delay
        )
        return Call("POST", "/runs", _run, body=body)

    @operation(RunNotFoundError)
    def get_run(self, run_id: str) -> Call[Run]:
        """The run as it is now."""
        return Call("GET", f"/runs/{run_id}", _run)

    @operation(RunNotFoundError, WaitTimeoutError)
    def wait(self, run_id: str, timeout: float | None = None) -> Steps[Run]:
        """Wait until the run is finished and return it; `WaitTimeoutError` after `timeout`
        seconds (None: no limit). Each request waits at most 30 s on the server."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = WAIT_SLICE if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeoutError(f"run {run_id} did not finish within {timeout:g} s")
            params = {"timeout": min(left, WAIT_SLICE)}
            try:
                return (yield from Call("GET", f"/runs/{run_id}/wait", _run, params))
            except WaitTimeoutError:
                continue

    @operation(InputValidationError, UnknownTaskError)
    def run(self, /, task: str, inputs: dict[str, Any] | None = None, **options: Any) -> Steps[Run]:
        """Submit a run (`options` as `submit` takes them) and wait for it to finish."""
        submitted = yield from Operations.submit.plan(self, task, inputs, **options)
        return (yield from Operations.wait.plan(self, submitted.id))

    @operation()
    def list_runs(
        self,
        task: str | None = None,
        status: str | Collection[str] | None = None,
        parent_id: str | None = None,
        limit: int = 100,
        *,
        before: str | None = None,
    ) -> Call[list[Run]]:
        """Runs, newest first; `before` is the id of the last run of the previous page."""
        return Call("GET", "/runs", _runs, _runs_query(task, status, parent_id, limit, before))

    @iteration()
    def iter_runs(
        self,
        task: str | None = None,
        status: str | Collection[str] | None = None,
        parent_id: str | None = None,
        *,
        page_size: int = 500,
    ) -> Call[Page[Run]]:
        """Every matching run, newest first, fetched a page at a time."""
        return _runs_page(_runs_query(task, status, parent_id, page_size, None))

    @operation(RunNotFoundError)
    def cancel(self, run_id: str) -> Call[Run]:
        """Cancel a run (a workflow run: its running and pending steps too); returns it
        `cancelled`, or as it was when it had finished already."""
        return Call("POST", f"/runs/{run_id}/cancel", _run)

    @operation(RunNotFoundError)
    def get_attempts(self, run_id: str) -> Call[list[Attempt]]:
        """The run's attempts, oldest first."""
        return Call("GET", f"/runs/{run_id}/attempts", _attempts)

    @operation(RunNotFoundError)
    def get_logs(self, run_id: str, *, after_id: int = 0, limit: int = 1000) -> Call[list[LogLine]]:
        """The run's log lines after the line `after_id`, at most `limit` of them."""
        params = {"after_id": after_id, "limit": limit}
        return Call("GET", f"/runs/{run_id}/logs", _log_lines, params)

    # services ---------------------------------------------------------------------------
    @operation()
    def services(self) -> Call[list[dict[str, Any]]]:
        """Every service's status."""
        return Call("GET", "/services", _objects)

    @operation(UnknownServiceError)
    def service_status(self, name: str) -> Call[dict[str, Any]]:
        """The service's status: its state, restarts, last error, history."""
        return Call("GET", f"/services/{name}", _object)

    @operation(UnknownServiceError, ServiceRunningError, InputValidationError)
    def start_service(self, name: str, config: Any = None) -> Call[dict[str, Any]]:
        """Start the service with this config; returns its status."""
        return Call("POST", f"/services/{name}/start", _object, body={"config": config})

    @operation(UnknownServiceError)
    def stop_service(self, name: str) -> Call[dict[str, Any]]:
        """Stop the service (waiting at most its `stop_timeout`); returns its status."""
        return Call("POST", f"/services/{name}/stop", _object)

    @operation(UnknownServiceError, InputValidationError)
    def restart_service(self, name: str, config: Any = None) -> Call[dict[str, Any]]:
        """Stop the service if it runs, then start it with this config; returns its status."""
        return Call("POST", f"/services/{name}/restart", _object, body={"config": config})

    @operation(UnknownServiceError)
    def service_logs(
        self, name: str, *, after_id: int = 0, limit: int = 1000
    ) -> Call[list[dict[str, Any]]]:
        """The service's log lines after the line `after_id`, at most `limit` of them."""
        params = {"after_id": after_id, "limit": limit}
        return Call("GET", f"/services/{name}/logs", _lines, params)

    @operation(UnknownServiceError)
    def service_attributes(self, name: str) -> Call[dict[str, Any]]:
        """The live attributes of a service class (`name` is the class's, say
        `SensorService`): `values` now, their JSON `schema`, `updated` (when and by whom
        each was last set) and its `loops`."""
        return Call("GET", f"/services/{name}/attributes", _object)

    @operation(UnknownServiceError, AttributeValidationError)
    def set_service_attributes(
        self, name: str, values: Mapping[str, Any] | None = None, /, **more: Any
    ) -> Call[dict[str, Any]]:
        """Set attributes of a service class while its loops run, given as a mapping
        and/or keywords (`set_service_attributes("SensorService", readout_frequency=2.0)`);
        all are set or none. Returns the attributes as `service_attributes` does."""
        body = {**(values or {}), **more}
        return Call("PATCH", f"/services/{name}/attributes", _object, body=body)

    @operation(UnknownServiceError)
    def service_attribute_changes(
        self, name: str, *, limit: int = 100
    ) -> Call[list[dict[str, Any]]]:
        """The last `limit` changes of a service class's attributes made from outside it,
        newest first: `name`, `value`, `changed_at`, `changed_by`."""
        return Call("GET", f"/services/{name}/attributes/changes", _changes, {"limit": limit})

    # workflows --------------------------------------------------------------------------
    @operation(WorkflowValidationError, InputValidationError)
    def submit_workflow(
        self,
        workflow: Workflow | dict[str, Any] | str,
        inputs: dict[str, Any] | None = None,
        *,
        priority: int | None = None,
    ) -> Call[Run]:
        """Start a workflow (a `Workflow`, its data form, or YAML text) on the server; its
        steps must name tasks the server serves. An invalid one runs nothing (the
        `WorkflowValidationError` lists every problem found, one a line)."""
        return Call("POST", "/workflows", _run, body=_workflow_body(workflow, inputs, priority))

    @operation(RunNotFoundError, NotAWorkflowRunError)
    def get_workflow(self, run_id: str) -> Call[dict[str, Any]]:
        """The workflow run (`run`), its workflow (`workflow`) and its `steps`."""
        return Call("GET", f"/workflows/{run_id}", _object)

    @operation(RunNotFoundError, NotAWorkflowRunError, WorkflowError)
    def rerun_workflow(self, run_id: str) -> Call[Run]:
        """A new run of a finished workflow run, reusing the steps that completed
        (`WorkflowError` while it is unfinished)."""
        return Call("POST", f"/workflows/{run_id}/rerun", _run)

    # schedules --------------------------------------------------------------------------
    @operation()
    def schedules(self) -> Call[list[dict[str, Any]]]:
        """Every schedule: recorded ones and those the server's tasks' options give."""
        return Call("GET", "/schedules", _objects)

    @operation(ScheduleNotFoundError)
    def schedule(self, name: str) -> Call[dict[str, Any]]:
        """One schedule, its next five fire times and its last runs (`runs`)."""
        return Call("GET", f"/schedules/{name}", _object)

    @operation(ScheduleError, InputValidationError, UnknownTaskError)
    def add_schedule(
        self,
        name: str,
        task: str,
        *,
        cron: str | None = None,
        interval: float | None = None,
        timezone: str = "UTC",
        inputs: dict[str, Any] | None = None,
        start: str | None = None,
        end: str | None = None,
        jitter: float = 0.0,
        catch_up: str = "skip",
        max_catch_up: int = 10,
        paused: bool = False,
        replace: bool = False,
    ) -> Call[dict[str, Any]]:
        """Record a schedule of a task the server serves, on a cron rule or an interval
        (seconds); returns it as `schedule` does (without its runs)."""
        body: dict[str, Any] = {
            "name": name,
            "task": task,
            "timezone": timezone,
            "inputs": inputs or {},
            "jitter": jitter,
            "catch_up": catch_up,
            "max_catch_up": max_catch_up,
            "paused": paused,
            "replace": replace,
        }
        for key, value in (("cron", cron), ("interval", interval), ("start", start), ("end", end)):
            if value is not None:
                body[key] = value
        return Call("POST", "/schedules", _object, body=body)

    @operation(ScheduleNotFoundError)
    def schedule_next(self, name: str, count: int = 5) -> Call[list[str]]:
        """The next `count` fire times of a schedule, ISO 8601 UTC (none while paused)."""
        return Call("GET", f"/schedules/{name}/next", _fires, {"count": count})

    @operation(ScheduleNotFoundError)
    def pause_schedule(self, name: str) -> Call[dict[str, Any]]:
        """Stop a schedule from firing; returns it."""
        return Call("POST", f"/schedules/{name}/pause", _object)

    @operation(ScheduleNotFoundError)
    def resume_schedule(self, name: str) -> Call[dict[str, Any]]:
        """Fire a schedule again from its first tick after now; returns it."""
        return Call("POST", f"/schedules/{name}/resume", _object)

    @operation(ScheduleNotFoundError)
    def trigger_schedule(self, name: str) -> Call[str]:
        """One run of a schedule now, recorded as manual; returns its idempotency key."""
        return Call("POST", f"/schedules/{name}/trigger", _idempotency_key)

    @operation(ScheduleNotFoundError)
    def remove_schedule(self, name: str) -> Call[None]:
        """Forget a schedule."""
        return Call("DELETE", f"/schedules/{name}", _nothing)

    # packages ---------------------------------------------------------------------------
    @operation()
    def packages(self) -> Call[list[dict[str, Any]]]:
        """Every package installed or installing on the server."""
        return Call("GET", "/packages", _objects)

    @operation(UnknownPackageError)
    def package(self, name: str) -> Call[dict[str, Any]]:
        """One package with its install log."""
        return Call("GET", f"/packages/{name}", _object)

    @operation(PackageError)
    def add_package(self, source: str, *, pip_args: Collection[str] = ()) -> Call[dict[str, Any]]:
        """Start installing a package (admins); returns it `installing`: poll `package`."""
        body = {"source": source, "pip_args": list(pip_args)}
        return Call("POST", "/packages", _object, body=body)

    @operation(UnknownPackageError, PackageError)
    def reinstall_package(self, name: str) -> Call[dict[str, Any]]:
        """Install a package again in a new environment (admins); returns it `installing`."""
        return Call("POST", f"/packages/{name}/reinstall", _object)

    @operation(UnknownPackageError, PackageError)
    def remove_package(self, name: str) -> Call[dict[str, Any]]:
        """Forget a package and delete its environment (admins); returns it as it was."""
        return Call("DELETE", f"/packages/{name}", _object)

    # pipelines --------------------------------------------------------------------------
    @operation(WiringError, StageConfigError, PipelineError)
    def deploy_pipeline(
        self,
        pipeline: dict[str, Any] | str,
        *,
        name: str | None = None,
        bus: str | None = None,
        status_interval: float = 1.0,
    ) -> Call[dict[str, Any]]:
        """Deploy a pipeline in the server: the name of one its files define, or its data
        form (a dict, or YAML text) whose stages name served tasks. Returns its status;
        `PipelineError` when the name runs already."""
        body = {"pipeline": pipeline, "name": name, "bus": bus, "status_interval": status_interval}
        return Call("POST", "/pipelines", _object, body=body)

    @operation()
    def pipelines(self) -> Call[list[dict[str, Any]]]:
        """Every deployment's status, running or stopped."""
        return Call("GET", "/pipelines", _objects)

    @operation(DeploymentNotFoundError)
    def pipeline_status(self, name: str) -> Call[dict[str, Any]]:
        """A deployment's status: each stage's state, messages in and out, drops, errors."""
        return Call("GET", f"/pipelines/{name}", _object)

    @operation(DeploymentNotFoundError)
    def stop_pipeline(self, name: str) -> Call[dict[str, Any]]:
        """Stop a deployment; returns its status after the stop."""
        return Call("POST", f"/pipelines/{name}/stop", _object)

    @operation(PortValidationError, PipelineError, UnknownTopicError)
    def publish(
        self,
        deployment: str,
        topic: str,
        value: Any,
        *,
        timestamp: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Call[dict[str, Any]]:
        """Publish one message on a topic of a deployment the server runs; a value the
        topic's inputs do not accept raises `PortValidationError`."""
        body = {"value": value, "timestamp": timestamp, "metadata": metadata}
        return Call("POST", f"/pipelines/{deployment}/topics/{topic}", _object, body=body)

    @iteration(PipelineError, UnknownTopicError)
    def tail(
        self, deployment: str, topic: str, *, count: int | None = None
    ) -> Stream[dict[str, Any]]:
        """A topic's messages as they come (`timestamp`, `value`, `metadata`, and
        `dropped`: how many this reader lost by falling behind); ends after `count`
        messages, or when the deployment stops."""
        return _TopicTail(deployment, topic, count)
