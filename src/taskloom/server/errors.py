"""How errors become responses: one JSON shape, a status code per kind of taskloom error.

Every response for an error has the body
`{"error": {"type": "UnknownTaskError", "message": "..."}}`; a validation error adds
`"task"` and `"errors": [{"field": ..., "message": ...}]`. The Python client raises the
exception `type` names. Nothing a client sends may end in a 500: every taskloom error has
a 4xx status here, and the request's own shape is checked by FastAPI (422).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from ..exceptions import (
    DuplicateTaskError,
    EngineClosedError,
    InputValidationError,
    RunNotFoundError,
    StoreError,
    StoreUnavailableError,
    TaskDefinitionError,
    TaskloomError,
    UnknownTaskError,
    WaitTimeoutError,
    WorkflowError,
    WorkflowValidationError,
)
from ..packages.errors import PackageError, UnknownPackageError
from ..services.errors import ServiceRunningError, UnknownServiceError
from ..streams.errors import (
    DeploymentNotFoundError,
    PipelineError,
    PortValidationError,
    StageConfigError,
    WiringError,
)
from .tokens import AuthError, ForbiddenError, TokenNotFoundError

__all__ = [
    "STATUS_CODES",
    "NotAWorkflowRunError",
    "RouteMethods",
    "UnknownTopicError",
    "WorkflowProblems",
    "error_body",
    "error_headers",
    "install_error_handlers",
    "status_for",
]

logger = logging.getLogger("taskloom.server")


class NotAWorkflowRunError(WorkflowError, LookupError):
    """The run named in a workflow route is not a workflow run."""


class UnknownTopicError(PipelineError, LookupError):
    """A deployment has no topic of this name."""

    def __init__(self, deployment: str, topic: str, known: list[str]) -> None:
        listed = ", ".join(known) or "none"
        super().__init__(f"deployment {deployment!r} has no topic {topic!r} (topics: {listed})")


class WorkflowProblems(WorkflowValidationError):
    """Several problems of one workflow found at once (each step whose task the server
    does not serve); it reads as the first, and the response lists them all."""

    def __init__(self, problems: list[WorkflowValidationError]) -> None:
        first = problems[0]
        super().__init__(first.workflow, first.problem, step=first.step, field=first.field)
        self.args = ("\n".join(p.message for p in problems),)
        self.problems = problems


def _workflow_errors(exc: WorkflowValidationError) -> list[dict[str, Any]]:
    problems = exc.problems if isinstance(exc, WorkflowProblems) else [exc]
    errors = []
    for problem in problems:
        path = ["steps", problem.step] if problem.step is not None else []
        if problem.field is not None:
            named = re.fullmatch(r"input '(.+)'", problem.field)
            path.append(f"inputs.{named.group(1)}" if named else problem.field.strip("'"))
        field = ".".join(path) or "workflow"
        errors.append({"field": field, "step": problem.step, "message": problem.problem})
    return errors


#: The status of each kind of error; the first class an error is an instance of wins.
STATUS_CODES: tuple[tuple[type[TaskloomError], int], ...] = (
    (AuthError, 401),
    (ForbiddenError, 403),
    (InputValidationError, 422),
    (WorkflowValidationError, 422),
    (NotAWorkflowRunError, 404),
    (UnknownPackageError, 404),
    (UnknownTaskError, 404),
    (RunNotFoundError, 404),
    (UnknownServiceError, 404),
    (TokenNotFoundError, 404),
    (DeploymentNotFoundError, 404),
    (UnknownTopicError, 404),
    (WiringError, 422),
    (ServiceRunningError, 409),
    (DuplicateTaskError, 409),
    (WaitTimeoutError, 408),
    (TaskDefinitionError, 400),
    # A workflow run still running (rerun), a package installing already.
    (WorkflowError, 409),
    (PackageError, 409),
    # A deployment running already, or not running in this server.
    (PipelineError, 409),
    # The server's own trouble, never the client's input: try again later.
    (EngineClosedError, 503),
    (StoreError, 503),
)


def status_for(exc: TaskloomError) -> int:
    for kind, status in STATUS_CODES:
        if isinstance(exc, kind):
            return status
    return 400


def error_body(type_name: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"type": type_name, "message": message, **extra}}


def error_headers(exc: TaskloomError) -> dict[str, str] | None:
    """The headers an error's response carries: how to authenticate after a 401, when to
    try again after a store that cannot commit now (whole seconds, at least 1)."""
    if status_for(exc) == 401:
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, StoreUnavailableError):
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    return None


async def _taskloom_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TaskloomError)
    status = status_for(exc)
    extra: dict[str, Any] = {}
    if isinstance(exc, InputValidationError):
        extra = {"task": exc.task, "what": exc.what, "errors": [e.as_dict() for e in exc.errors]}
        if isinstance(exc, PortValidationError):
            extra.update(deployment=exc.deployment, topic=exc.topic)
        elif isinstance(exc, StageConfigError):
            extra["pipeline"] = exc.pipeline
    elif isinstance(exc, UnknownTaskError | UnknownServiceError | DeploymentNotFoundError):
        extra = {"name": exc.name}
    elif isinstance(exc, RunNotFoundError):
        extra = {"run_id": exc.run_id}
    elif isinstance(exc, WiringError):
        extra = {
            "pipeline": exc.pipeline,
            "errors": [{"field": "pipeline", "message": p} for p in exc.problems],
        }
    elif isinstance(exc, WorkflowValidationError):
        extra = {
            "workflow": exc.workflow,
            "step": exc.step,
            "field": exc.field,
            "problem": exc.problem,
            "errors": _workflow_errors(exc),
        }
    type_name = "WorkflowValidationError" if isinstance(exc, WorkflowProblems) else None
    if status >= 500:
        logger.warning("%s: %s", type(exc).__name__, exc)
    if isinstance(exc, StoreUnavailableError):
        extra["retry_after"] = exc.retry_after
    return JSONResponse(
        error_body(type_name or type(exc).__name__, exc.message, **extra),
        status_code=status,
        headers=error_headers(exc),
    )


def _field_of(location: tuple[Any, ...] | list[Any]) -> str:
    # ("body", "inputs", "a") -> "inputs.a"; ("query", "limit") -> "limit"
    parts = [str(p) for p in location]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"}:
        parts = parts[1:]
    return ".".join(parts) or "body"


async def _request_invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"field": _field_of(e.get("loc", ())), "message": str(e.get("msg", "invalid"))}
        for e in exc.errors()
    ]
    lines = "; ".join(f"{e['field']!r}: {e['message']}" for e in errors)
    message = f"{request.method} {request.url.path}: invalid request: {lines}"
    return JSONResponse(
        error_body("RequestValidationError", message, task=None, what="request", errors=errors),
        status_code=422,
    )


#: The error `type` of the answers the HTTP layer gives by itself.
_HTTP_NAMES = {
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "BodyTooLarge",
    415: "UnsupportedMediaType",
}


class RouteMethods:
    """The methods each path of the API takes, for the `Allow` header of a 405.

    Each method of a path is a route of its own, and Starlette names only the first
    route's methods in `Allow`: the answer names those of every route of the path. The
    table is made from the routers themselves, whatever way FastAPI routes them."""

    def __init__(self, routers: Sequence[APIRouter], *, prefix: str) -> None:
        self._paths: list[tuple[re.Pattern[str], frozenset[str]]] = []
        for router in routers:
            for route in router.routes:
                if isinstance(route, APIRoute):
                    pattern, _format, _convertors = compile_path(prefix + route.path)
                    self._paths.append((pattern, frozenset(route.methods or ())))

    def allowed(self, path: str) -> list[str]:
        methods: set[str] = set()
        for pattern, route_methods in self._paths:
            if pattern.match(path):
                methods |= route_methods
        return sorted(methods)


def _allowed_methods(request: Request) -> list[str]:
    table: RouteMethods | None = getattr(request.app.state, "methods", None)
    return table.allowed(request.url.path) if table is not None else []


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(getattr(exc, "headers", None) or {})
    message = str(exc.detail)
    if exc.status_code == 405 and (allowed := _allowed_methods(request)):
        headers["Allow"] = ", ".join(allowed)
        message = f"{request.method} {request.url.path}: use {' or '.join(allowed)}"
    return JSONResponse(
        error_body(_HTTP_NAMES.get(exc.status_code, "HTTPError"), message),
        status_code=exc.status_code,
        headers=headers or None,
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # A bug of the server, never the client's doing: logged with its traceback, and
    # answered in the same shape as every other error.
    logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    message = f"the server failed: {type(exc).__name__}: {exc}"
    return JSONResponse(error_body("InternalServerError", message), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(TaskloomError, _taskloom_error)
    app.add_exception_handler(RequestValidationError, _request_invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
