"""The HTTP client: the engine's operations on a `taskloom serve` server, from Python.

`Client` is synchronous, `AsyncClient` asynchronous; both mirror the engine (`submit`,
`wait`, `get_run`, `list_runs`, `cancel`, `get_logs`, `get_attempts`, `tasks`, the
service operations, `submit_workflow`, `get_workflow`, `rerun_workflow`, and the package
operations) and raise the engine's exceptions, rebuilt from the answer by the table of
`http_errors`: `InputValidationError` with its `FieldError`s and `WorkflowValidationError`
on a 422, `UnknownTaskError` and `RunNotFoundError` on a 404, and so on. Runs come back
as `Run` objects, service statuses, workflow runs with their steps and packages as
dictionaries. `workers` gives the workers recorded on the server's database as
`WorkerRecord`s, the records the store gives `taskloom workers`.

Pipelines: `deploy_pipeline`, `pipelines`, `pipeline_status`, `stop_pipeline`, `publish`
and `tail` (an iterator over a topic's messages) raise the streams' exceptions:
`WiringError`, `StageConfigError`, `PortValidationError` (422), `DeploymentNotFoundError`
(404), `PipelineError` (409).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator, Collection, Iterator
from types import TracebackType
from typing import Any

import httpx

from .exceptions import TaskloomError, WaitTimeoutError
from .http_errors import ERRORS
from .runs import Attempt, ErrorInfo, LogLine, Run, RunStatus
from .store.base import WorkerRecord
from .workflows import Workflow

__all__ = ["AsyncClient", "Client", "ClientError"]

#: Longest wait one request asks the server for; longer waits are made of several.
_WAIT_SLICE = 30.0


class ClientError(TaskloomError):
    """The server refused the request or could not be reached (see `status_code`)."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


def _error_from(response: httpx.Response) -> TaskloomError:
    """The exception an error answer tells: the engine's own, else a `ClientError`."""
    try:
        error = dict(response.json()["error"])
        kind, message = str(error["type"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return ClientError(
            f"{response.request.method} {response.request.url.path}: HTTP "
            f"{response.status_code}: {response.text[:200]}",
            status_code=response.status_code,
        )
    if error.get("retry_after") is None and "retry-after" in response.headers:
        error["retry_after"] = response.headers["retry-after"]
    rebuilt = ERRORS.rebuild(error)
    if rebuilt is not None:
        return rebuilt
    return ClientError(f"{kind}: {message}", status_code=response.status_code)


def _deploy_body(
    pipeline: dict[str, Any] | str, name: str | None, bus: str | None, status_interval: float
) -> dict[str, Any]:
    return {"pipeline": pipeline, "name": name, "bus": bus, "status_interval": status_interval}


def _publish_body(value: Any, timestamp: int | None, metadata: dict[str, Any] | None) -> Any:
    return {"value": value, "timestamp": timestamp, "metadata": metadata}


class _SseParser:
    """Server-Sent Events from lines: (event, data) once a blank line ends an event."""

    def __init__(self) -> None:
        self.event = "message"
        self.data: list[str] = []

    def feed(self, line: str) -> tuple[str, str] | None:
        if not line:
            if not self.data:
                self.event = "message"
                return None
            done = (self.event, "\n".join(self.data))
            self.event, self.data = "message", []
            return done
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            self.event = value
        elif field == "data":
            self.data.append(value)
        return None


def _tail_message(event: str, data: str, dropped: list[int]) -> dict[str, Any] | None:
    """A topic message as a dict (with `dropped`: messages lost so far), or None."""
    if event == "lagged":
        dropped[0] = int(json.loads(data)["dropped"])
        return None
    if event != "message":
        return None
    message: dict[str, Any] = json.loads(data)
    message["dropped"] = dropped[0]
    return message


def _checked(response: httpx.Response) -> Any:
    if response.is_error:
        raise _error_from(response)
    if response.status_code == 204:
        return None
    return response.json()


def _run(data: dict[str, Any]) -> Run:
    fields = dict(data)
    fields["status"] = RunStatus(fields["status"])
    error = fields.get("error")
    fields["error"] = ErrorInfo.from_dict(error) if error else None
    return Run(**fields)


def _attempt(data: dict[str, Any]) -> Attempt:
    fields = dict(data)
    error = fields.get("error")
    fields["error"] = ErrorInfo.from_dict(error) if error else None
    return Attempt(**fields)


#: The fields of a worker record; a newer server's other fields are left out.
_WORKER_FIELDS = frozenset(f.name for f in dataclasses.fields(WorkerRecord))


def _worker(data: dict[str, Any]) -> WorkerRecord:
    # `state` is a property of the record (from `alive`), not a field.
    return WorkerRecord(**{k: v for k, v in data.items() if k in _WORKER_FIELDS})


def _submit_body(
    task: str,
    inputs: dict[str, Any] | None,
    priority: int | None,
    idempotency_key: str | None,
    config: Any,
    parent_id: str | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"task": task, "inputs": inputs or {}}
    for key, value in (
        ("priority", priority),
        ("idempotency_key", idempotency_key),
        ("config", config),
        ("parent_id", parent_id),
    ):
        if value is not None:
            body[key] = value
    return body


def _list_params(
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


def _workflow_body(
    workflow: Workflow | dict[str, Any] | str, inputs: dict[str, Any] | None, priority: int | None
) -> dict[str, Any]:
    data = workflow.to_dict() if isinstance(workflow, Workflow) else workflow
    body: dict[str, Any] = {"workflow": data, "inputs": inputs or {}}
    if priority is not None:
        body["priority"] = priority
    return body


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _unreachable(url: str, exc: httpx.TransportError) -> ClientError:
    return ClientError(f"cannot reach the taskloom server at {url}: {exc}")


class Client:
    """A synchronous client: `Client("http://127.0.0.1:8321", token=...)`.

    Use it as a context manager, or call `close()`. `timeout` bounds each request (a
    `wait` is made of requests of at most 30 s each).
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:8321",
        *,
        token: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url + "/api",
            headers=_headers(token),
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise _unreachable(self.url, exc) from exc
        return _checked(response)

    # server ---------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/health")
        return result

    def workers(self) -> list[WorkerRecord]:
        """Every worker recorded on the server's database, alive or lost, oldest first."""
        return [_worker(w) for w in self._call("GET", "/workers")]

    # tasks ----------------------------------------------------------------------------
    def tasks(self) -> list[dict[str, Any]]:
        """Every task the server has: name, description, input and output schemas."""
        result: list[dict[str, Any]] = self._call("GET", "/tasks")
        return result

    def task(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/tasks/{name}")
        return result

    # runs -----------------------------------------------------------------------------
    def submit(
        self,
        task: str,
        inputs: dict[str, Any] | None = None,
        *,
        priority: int | None = None,
        idempotency_key: str | None = None,
        config: Any = None,
        parent_id: str | None = None,
    ) -> Run:
        """Record a run (raises `InputValidationError`, `UnknownTaskError`)."""
        body = _submit_body(task, inputs, priority, idempotency_key, config, parent_id)
        return _run(self._call("POST", "/runs", json=body))

    def get_run(self, run_id: str) -> Run:
        return _run(self._call("GET", f"/runs/{run_id}"))

    def wait(self, run_id: str, timeout: float | None = None) -> Run:
        """Wait until the run is finished (raises `WaitTimeoutError` after `timeout`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = _WAIT_SLICE if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeoutError(f"run {run_id} did not finish within {timeout:g} s")
            try:
                slice_ = min(left, _WAIT_SLICE)
                return _run(self._call("GET", f"/runs/{run_id}/wait", params={"timeout": slice_}))
            except WaitTimeoutError:
                continue

    def run(self, task: str, inputs: dict[str, Any] | None = None, **options: Any) -> Run:
        """Submit a run and wait for it to finish."""
        return self.wait(self.submit(task, inputs, **options).id)

    def list_runs(
        self,
        task: str | None = None,
        status: str | Collection[str] | None = None,
        parent_id: str | None = None,
        limit: int = 100,
        *,
        before: str | None = None,
    ) -> list[Run]:
        """Runs, newest first; `before` is the id of the last run of the previous page."""
        params = _list_params(task, status, parent_id, limit, before)
        return [_run(r) for r in self._call("GET", "/runs", params=params)["runs"]]

    def iter_runs(
        self,
        task: str | None = None,
        status: str | Collection[str] | None = None,
        parent_id: str | None = None,
        *,
        page_size: int = 500,
    ) -> Iterator[Run]:
        """Every matching run, newest first, fetched a page at a time."""
        cursor: str | None = None
        while True:
            params = _list_params(task, status, parent_id, page_size, cursor)
            page = self._call("GET", "/runs", params=params)
            yield from (_run(r) for r in page["runs"])
            cursor = page["next_cursor"]
            if cursor is None:
                return

    def cancel(self, run_id: str) -> Run:
        return _run(self._call("POST", f"/runs/{run_id}/cancel"))

    def get_attempts(self, run_id: str) -> list[Attempt]:
        return [_attempt(a) for a in self._call("GET", f"/runs/{run_id}/attempts")]

    def get_logs(self, run_id: str, *, after_id: int = 0, limit: int = 1000) -> list[LogLine]:
        params = {"after_id": after_id, "limit": limit}
        page = self._call("GET", f"/runs/{run_id}/logs", params=params)
        return [LogLine(**line) for line in page["lines"]]

    # services -------------------------------------------------------------------------
    def services(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/services")
        return result

    def service_status(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/services/{name}")
        return result

    def start_service(self, name: str, config: Any = None) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST", f"/services/{name}/start", json={"config": config}
        )
        return result

    def stop_service(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/services/{name}/stop")
        return result

    def restart_service(self, name: str, config: Any = None) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST", f"/services/{name}/restart", json={"config": config}
        )
        return result

    def service_logs(
        self, name: str, *, after_id: int = 0, limit: int = 1000
    ) -> list[dict[str, Any]]:
        params = {"after_id": after_id, "limit": limit}
        lines: list[dict[str, Any]] = self._call("GET", f"/services/{name}/logs", params=params)[
            "lines"
        ]
        return lines

    # workflows ------------------------------------------------------------------------
    def submit_workflow(
        self,
        workflow: Workflow | dict[str, Any] | str,
        inputs: dict[str, Any] | None = None,
        *,
        priority: int | None = None,
    ) -> Run:
        """Start a workflow (a `Workflow`, its data form, or YAML text) on the server; its
        steps must name tasks the server serves. Raises `WorkflowValidationError` or
        `InputValidationError`, and nothing is run."""
        body = _workflow_body(workflow, inputs, priority)
        return _run(self._call("POST", "/workflows", json=body))

    def get_workflow(self, run_id: str) -> dict[str, Any]:
        """The workflow run (`run`), its workflow (`workflow`) and its `steps`."""
        result: dict[str, Any] = self._call("GET", f"/workflows/{run_id}")
        return result

    def rerun_workflow(self, run_id: str) -> Run:
        """A new run of a finished workflow run, reusing the steps that completed."""
        return _run(self._call("POST", f"/workflows/{run_id}/rerun"))

    # packages -------------------------------------------------------------------------
    def packages(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/packages")
        return result

    def package(self, name: str) -> dict[str, Any]:
        """One package with its install log (raises `UnknownPackageError`)."""
        result: dict[str, Any] = self._call("GET", f"/packages/{name}")
        return result

    def add_package(self, source: str, *, pip_args: Collection[str] = ()) -> dict[str, Any]:
        """Start installing a package (admins); returns it `installing`: poll `package`."""
        body = {"source": source, "pip_args": list(pip_args)}
        result: dict[str, Any] = self._call("POST", "/packages", json=body)
        return result

    def reinstall_package(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/packages/{name}/reinstall")
        return result

    def remove_package(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("DELETE", f"/packages/{name}")
        return result

    # pipelines ------------------------------------------------------------------------
    def deploy_pipeline(
        self,
        pipeline: dict[str, Any] | str,
        *,
        name: str | None = None,
        bus: str | None = None,
        status_interval: float = 1.0,
    ) -> dict[str, Any]:
        """Deploy a pipeline in the server: the name of one its files define, or its data
        form (a dict, or YAML text) whose stages name served tasks. Returns its status;
        raises `WiringError`, `StageConfigError`, or `PipelineError` when the name runs."""
        body = _deploy_body(pipeline, name, bus, status_interval)
        result: dict[str, Any] = self._call("POST", "/pipelines", json=body)
        return result

    def pipelines(self) -> list[dict[str, Any]]:
        """Every deployment's status, running or stopped."""
        result: list[dict[str, Any]] = self._call("GET", "/pipelines")
        return result

    def pipeline_status(self, name: str) -> dict[str, Any]:
        """A deployment's status: each stage's state, messages in and out, drops, errors."""
        result: dict[str, Any] = self._call("GET", f"/pipelines/{name}")
        return result

    def stop_pipeline(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/pipelines/{name}/stop")
        return result

    def publish(
        self,
        deployment: str,
        topic: str,
        value: Any,
        *,
        timestamp: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Publish one message; raises `PortValidationError` for a value the topic's
        inputs do not accept."""
        body = _publish_body(value, timestamp, metadata)
        result: dict[str, Any] = self._call(
            "POST", f"/pipelines/{deployment}/topics/{topic}", json=body
        )
        return result

    def tail(
        self, deployment: str, topic: str, *, count: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """A topic's messages as they come (`timestamp`, `value`, `metadata`, and
        `dropped`: how many this reader lost by falling behind); ends after `count`
        messages, or when the deployment stops."""
        path = f"/pipelines/{deployment}/topics/{topic}/tail"
        parser, dropped, seen = _SseParser(), [0], 0
        timeout = httpx.Timeout(self._http.timeout.connect, read=None)
        try:
            with self._http.stream("GET", path, timeout=timeout) as response:
                if response.is_error:
                    response.read()
                    raise _error_from(response)
                for line in response.iter_lines():
                    done = parser.feed(line)
                    message = done and _tail_message(*done, dropped)
                    if message:
                        yield message
                        seen += 1
                        if count is not None and seen >= count:
                            return
        except httpx.TransportError as exc:
            raise _unreachable(self.url, exc) from exc


class AsyncClient:
    """The asynchronous client: `async with AsyncClient(url, token=...) as client:`.

    The same operations as `Client`, each a coroutine.
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:8321",
        *,
        token: str | None = None,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.url + "/api",
            headers=_headers(token),
            timeout=timeout,
            transport=transport,
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise _unreachable(self.url, exc) from exc
        return _checked(response)

    async def health(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", "/health")
        return result

    async def workers(self) -> list[WorkerRecord]:
        """Every worker recorded on the server's database, alive or lost, oldest first."""
        return [_worker(w) for w in await self._call("GET", "/workers")]

    async def tasks(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._call("GET", "/tasks")
        return result

    async def task(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", f"/tasks/{name}")
        return result

    async def submit(
        self,
        task: str,
        inputs: dict[str, Any] | None = None,
        *,
        priority: int | None = None,
        idempotency_key: str | None = None,
        config: Any = None,
        parent_id: str | None = None,
    ) -> Run:
        body = _submit_body(task, inputs, priority, idempotency_key, config, parent_id)
        return _run(await self._call("POST", "/runs", json=body))

    async def get_run(self, run_id: str) -> Run:
        return _run(await self._call("GET", f"/runs/{run_id}"))

    async def wait(self, run_id: str, timeout: float | None = None) -> Run:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = _WAIT_SLICE if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeoutError(f"run {run_id} did not finish within {timeout:g} s")
            try:
                params = {"timeout": min(left, _WAIT_SLICE)}
                return _run(await self._call("GET", f"/runs/{run_id}/wait", params=params))
            except WaitTimeoutError:
                continue

    async def run(self, task: str, inputs: dict[str, Any] | None = None, **options: Any) -> Run:
        run = await self.submit(task, inputs, **options)
        return await self.wait(run.id)

    async def list_runs(
        self,
        task: str | None = None,
        status: str | Collection[str] | None = None,
        parent_id: str | None = None,
        limit: int = 100,
        *,
        before: str | None = None,
    ) -> list[Run]:
        params = _list_params(task, status, parent_id, limit, before)
        return [_run(r) for r in (await self._call("GET", "/runs", params=params))["runs"]]

    async def cancel(self, run_id: str) -> Run:
        return _run(await self._call("POST", f"/runs/{run_id}/cancel"))

    async def get_attempts(self, run_id: str) -> list[Attempt]:
        return [_attempt(a) for a in await self._call("GET", f"/runs/{run_id}/attempts")]

    async def get_logs(self, run_id: str, *, after_id: int = 0, limit: int = 1000) -> list[LogLine]:
        params = {"after_id": after_id, "limit": limit}
        page = await self._call("GET", f"/runs/{run_id}/logs", params=params)
        return [LogLine(**line) for line in page["lines"]]

    async def services(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._call("GET", "/services")
        return result

    async def service_status(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", f"/services/{name}")
        return result

    async def start_service(self, name: str, config: Any = None) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "POST", f"/services/{name}/start", json={"config": config}
        )
        return result

    async def stop_service(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", f"/services/{name}/stop")
        return result

    async def restart_service(self, name: str, config: Any = None) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "POST", f"/services/{name}/restart", json={"config": config}
        )
        return result

    async def service_logs(
        self, name: str, *, after_id: int = 0, limit: int = 1000
    ) -> list[dict[str, Any]]:
        params = {"after_id": after_id, "limit": limit}
        page = await self._call("GET", f"/services/{name}/logs", params=params)
        lines: list[dict[str, Any]] = page["lines"]
        return lines

    async def submit_workflow(
        self,
        workflow: Workflow | dict[str, Any] | str,
        inputs: dict[str, Any] | None = None,
        *,
        priority: int | None = None,
    ) -> Run:
        body = _workflow_body(workflow, inputs, priority)
        return _run(await self._call("POST", "/workflows", json=body))

    async def get_workflow(self, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", f"/workflows/{run_id}")
        return result

    async def rerun_workflow(self, run_id: str) -> Run:
        return _run(await self._call("POST", f"/workflows/{run_id}/rerun"))

    async def packages(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._call("GET", "/packages")
        return result

    async def package(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", f"/packages/{name}")
        return result

    async def add_package(self, source: str, *, pip_args: Collection[str] = ()) -> dict[str, Any]:
        body = {"source": source, "pip_args": list(pip_args)}
        result: dict[str, Any] = await self._call("POST", "/packages", json=body)
        return result

    async def reinstall_package(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", f"/packages/{name}/reinstall")
        return result

    async def remove_package(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("DELETE", f"/packages/{name}")
        return result

    # pipelines ------------------------------------------------------------------------
    async def deploy_pipeline(
        self,
        pipeline: dict[str, Any] | str,
        *,
        name: str | None = None,
        bus: str | None = None,
        status_interval: float = 1.0,
    ) -> dict[str, Any]:
        """Deploy a pipeline in the server: the name of one its files define, or its data
        form (a dict, or YAML text) whose stages name served tasks. Returns its status;
        raises `WiringError`, `StageConfigError`, or `PipelineError` when the name runs."""
        body = _deploy_body(pipeline, name, bus, status_interval)
        result: dict[str, Any] = await self._call("POST", "/pipelines", json=body)
        return result

    async def pipelines(self) -> list[dict[str, Any]]:
        """Every deployment's status, running or stopped."""
        result: list[dict[str, Any]] = await self._call("GET", "/pipelines")
        return result

    async def pipeline_status(self, name: str) -> dict[str, Any]:
        """A deployment's status: each stage's state, messages in and out, drops, errors."""
        result: dict[str, Any] = await self._call("GET", f"/pipelines/{name}")
        return result

    async def stop_pipeline(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", f"/pipelines/{name}/stop")
        return result

    async def publish(
        self,
        deployment: str,
        topic: str,
        value: Any,
        *,
        timestamp: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Publish one message; raises `PortValidationError` for a value the topic's
        inputs do not accept."""
        body = _publish_body(value, timestamp, metadata)
        result: dict[str, Any] = await self._call(
            "POST", f"/pipelines/{deployment}/topics/{topic}", json=body
        )
        return result

    async def tail(
        self, deployment: str, topic: str, *, count: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """A topic's messages as they come (`timestamp`, `value`, `metadata`, and
        `dropped`: how many this reader lost by falling behind); ends after `count`
        messages, or when the deployment stops."""
        path = f"/pipelines/{deployment}/topics/{topic}/tail"
        parser, dropped, seen = _SseParser(), [0], 0
        timeout = httpx.Timeout(self._http.timeout.connect, read=None)
        try:
            async with self._http.stream("GET", path, timeout=timeout) as response:
                if response.is_error:
                    await response.aread()
                    raise _error_from(response)
                async for line in response.aiter_lines():
                    done = parser.feed(line)
                    message = done and _tail_message(*done, dropped)
                    if message:
                        yield message
                        seen += 1
                        if count is not None and seen >= count:
                            return
        except httpx.TransportError as exc:
            raise _unreachable(self.url, exc) from exc
