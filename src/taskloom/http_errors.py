"""How each taskloom error travels in an HTTP answer: one table for the server and the client.

An answer for an error has the body `{"error": {"type": ..., "message": ..., <fields>}}`.
Each `ErrorKind` of `ERRORS` names a class of error, the status code of its answers, the
fields its body carries and the headers it adds. The server's error handler writes every
answer from it (`ERRORS.body(exc)`), and the Python client reads the body back into the
same exception (`ERRORS.rebuild(error)`), with the message and the attributes the server's
had. An error of a class not in the table answers as its nearest ancestor that is, under
its own type name; a type name the table does not know (a server's newer error, or one it
does not rebuild: a refused token) becomes a `ClientError` with the status in the client.

Nothing here imports the web stack: the client uses it too.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .exceptions import (
    DuplicateTaskError,
    EngineClosedError,
    FieldError,
    InputValidationError,
    NotAWorkflowRunError,
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
from .packages.errors import PackageError, UnknownPackageError
from .schedules.errors import (
    HookNotFoundError,
    ScheduleError,
    ScheduleNotFoundError,
    SignatureError,
)
from .server.tokens import AuthError, ForbiddenError, TokenNotFoundError
from .services.errors import (
    AttributeValidationError,
    ServiceError,
    ServiceRunningError,
    UnknownServiceError,
)
from .streams.errors import (
    DeploymentNotFoundError,
    PipelineError,
    PortValidationError,
    StageConfigError,
    UnknownTopicError,
    WiringError,
)
from .workflows.limits import WorkflowLimitError
from .workflows.validation import WorkflowProblems

__all__ = ["ERRORS", "Carried", "ErrorKind", "ErrorRegistry", "carried", "error_body"]


def _as_is(value: Any) -> Any:
    return value


@dataclass(frozen=True, slots=True)
class Carried:
    """One field of an error's body: its `key`, how the server tells it from the error,
    and the `attribute` the client rebuilds from it (None: told, never read back)."""

    key: str
    tell: Callable[[Any], Any]
    attribute: str | None = None
    read: Callable[[Any], Any] = _as_is


def carried(attribute: str, read: Callable[[Any], Any] = _as_is) -> Carried:
    """An attribute of the error, carried under its own name."""
    return Carried(attribute, operator.attrgetter(attribute), attribute, read)


def _field_errors(data: Any) -> list[FieldError]:
    return [FieldError(str(e.get("field", "")), str(e.get("message", ""))) for e in data or []]


def _seconds(value: Any) -> float:
    """A `retry_after` as told (a number, or the text of a `Retry-After`), 1 s if unreadable."""
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return 1.0


def _workflow_errors(exc: WorkflowValidationError) -> list[dict[str, Any]]:
    """One entry a problem (`WorkflowProblems` has several): the field as a path into the
    workflow's data form (`steps.add.inputs.b`), the step and the problem."""
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


_INPUT_FIELDS = (
    carried("task"),
    carried("what"),
    Carried("errors", lambda e: [f.as_dict() for f in e.errors], "errors", _field_errors),
)
_WORKFLOW_FIELDS = (
    carried("workflow"),
    carried("step"),
    carried("field"),
    carried("problem"),
    Carried("errors", _workflow_errors),
)
_WIRING_FIELDS = (
    carried("pipeline"),
    Carried(
        "errors",
        lambda e: [{"field": "pipeline", "message": p} for p in e.problems],
        "problems",
        lambda data: [str(e.get("message", "")) for e in data or []],
    ),
)


def _bearer(_exc: Any) -> dict[str, str]:
    return {"WWW-Authenticate": "Bearer"}


def _retry_after(exc: StoreUnavailableError) -> dict[str, str]:
    # Whole seconds, at least 1; the body's `retry_after` is the exact figure.
    return {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}


@dataclass(frozen=True, slots=True)
class ErrorKind:
    """How answers tell one class of error (and its subclasses the table does not name)."""

    error: type[TaskloomError]
    status: int
    fields: tuple[Carried, ...] = ()
    #: The headers its answers add.
    headers: Callable[[Any], dict[str, str]] | None = None
    #: The type name its answers give, when it stands for another class.
    told_as: str | None = None
    #: Whether the client raises it again; if not, a `ClientError` with the status.
    rebuilt: bool = True


#: The kind of an error no class of the table is an ancestor of.
_ANY_ERROR = ErrorKind(TaskloomError, 400, rebuilt=False)


def error_body(type_name: str, message: str, **fields: Any) -> dict[str, Any]:
    """The body of every error answer, the HTTP layer's own too (`NotFound`, ...)."""
    return {"error": {"type": type_name, "message": message, **fields}}


class ErrorRegistry:
    """The kinds of error, found by class (the server) and by type name (the client)."""

    def __init__(self, kinds: Iterable[ErrorKind]) -> None:
        self.kinds = tuple(kinds)
        self._by_class = {kind.error: kind for kind in self.kinds}
        self._by_name = {
            kind.error.__name__: kind for kind in self.kinds if kind.rebuilt and not kind.told_as
        }

    def kind_of(self, exc: TaskloomError) -> ErrorKind:
        """The kind of the nearest class of `exc` the table names, its own first."""
        for cls in type(exc).__mro__:
            kind = self._by_class.get(cls)
            if kind is not None:
                return kind
        return _ANY_ERROR

    def status(self, exc: TaskloomError) -> int:
        return self.kind_of(exc).status

    def headers(self, exc: TaskloomError) -> dict[str, str] | None:
        kind = self.kind_of(exc)
        return kind.headers(exc) if kind.headers is not None else None

    def body(self, exc: TaskloomError) -> dict[str, Any]:
        kind = self.kind_of(exc)
        fields = {field.key: field.tell(exc) for field in kind.fields}
        return error_body(kind.told_as or type(exc).__name__, exc.message, **fields)

    def rebuilt_classes(self) -> list[type[TaskloomError]]:
        """The classes the client raises again from an answer."""
        return [kind.error for kind in self._by_name.values()]

    def rebuild(self, error: Mapping[str, Any]) -> TaskloomError | None:
        """The exception an answer's `error` object tells, or None for a type name the
        table does not rebuild."""
        kind = self._by_name.get(str(error.get("type")))
        if kind is None:
            return None
        attributes = {
            field.attribute: field.read(error.get(field.key))
            for field in kind.fields
            if field.attribute is not None
        }
        return kind.error.rebuilt(str(error.get("message", "")), **attributes)


ERRORS = ErrorRegistry(
    [
        # Who is calling: the server's own refusals, a `ClientError` with the status.
        ErrorKind(AuthError, 401, headers=_bearer, rebuilt=False),
        ErrorKind(ForbiddenError, 403, rebuilt=False),
        ErrorKind(TokenNotFoundError, 404, rebuilt=False),
        ErrorKind(SignatureError, 401),
        # What was sent is invalid: nothing was done.
        ErrorKind(InputValidationError, 422, _INPUT_FIELDS),
        ErrorKind(AttributeValidationError, 422, _INPUT_FIELDS),
        ErrorKind(StageConfigError, 422, (*_INPUT_FIELDS, carried("pipeline"))),
        ErrorKind(
            PortValidationError, 422, (*_INPUT_FIELDS, carried("deployment"), carried("topic"))
        ),
        ErrorKind(WorkflowValidationError, 422, _WORKFLOW_FIELDS),
        ErrorKind(WorkflowLimitError, 422, _WORKFLOW_FIELDS),
        ErrorKind(WorkflowProblems, 422, _WORKFLOW_FIELDS, told_as="WorkflowValidationError"),
        ErrorKind(WiringError, 422, _WIRING_FIELDS),
        ErrorKind(ScheduleError, 422, (carried("field"), carried("name"))),
        ErrorKind(TaskDefinitionError, 400),
        # What was named does not exist.
        ErrorKind(UnknownTaskError, 404, (carried("name"),)),
        ErrorKind(RunNotFoundError, 404, (carried("run_id"),)),
        ErrorKind(UnknownServiceError, 404, (carried("name"),)),
        ErrorKind(DeploymentNotFoundError, 404, (carried("name"),)),
        ErrorKind(NotAWorkflowRunError, 404),
        ErrorKind(UnknownPackageError, 404),
        ErrorKind(UnknownTopicError, 404),
        ErrorKind(ScheduleNotFoundError, 404, (carried("name"),)),
        ErrorKind(HookNotFoundError, 404, (carried("name"),)),
        # Not now: a service started already, a rerun of a workflow run still running, a
        # package installing already, a deployment running already (or not in this server).
        ErrorKind(ServiceRunningError, 409),
        ErrorKind(DuplicateTaskError, 409),
        ErrorKind(WorkflowError, 409),
        ErrorKind(PackageError, 409),
        ErrorKind(PipelineError, 409),
        ErrorKind(ServiceError, 400),
        ErrorKind(WaitTimeoutError, 408),
        # The server's own trouble, never the client's input: try again later.
        ErrorKind(EngineClosedError, 503),
        ErrorKind(StoreError, 503),
        ErrorKind(
            StoreUnavailableError,
            503,
            (carried("retry_after", _seconds),),
            headers=_retry_after,
        ),
    ]
)
