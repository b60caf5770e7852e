"""The exceptions taskloom raises: one root, a branch per subsystem.

Each class docstring is its default message. Messages name the task, the run and the
field involved, and say what to do about it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

__all__ = [
    "DuplicateTaskError",
    "EngineClosedError",
    "ExecutorUnavailableError",
    "FieldError",
    "InputValidationError",
    "NotAWorkflowRunError",
    "Retry",
    "RunNotFoundError",
    "StoreError",
    "StoreUnavailableError",
    "TaskDefinitionError",
    "TaskTimeoutError",
    "TaskloomError",
    "UnknownTaskError",
    "UnstorableValueError",
    "WaitTimeoutError",
    "WorkerLostError",
    "WorkflowError",
    "WorkflowValidationError",
]


class TaskloomError(Exception):
    """A taskloom operation failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (type(self).__doc__ or type(self).__name__).strip())

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    @classmethod
    def rebuilt(cls, message: str, **attributes: Any) -> Self:
        """This error as another process raised it: the message and the attributes it told
        (the HTTP client raises a server's errors this way). The class's `__init__` is not
        called: it would write a message of its own from fewer facts than the teller had
        (`UnknownTaskError` names the registered tasks, which an answer does not carry)."""
        error = cls.__new__(cls)
        TaskloomError.__init__(error, message)
        vars(error).update(attributes)
        return error


# --- defining and registering tasks -------------------------------------------------------


class TaskDefinitionError(TaskloomError, TypeError):
    """A task is defined incorrectly: check its options and signature."""


class DuplicateTaskError(TaskDefinitionError):
    """Two different tasks were registered under one name; give one of them another `name`."""


class UnknownTaskError(TaskloomError, LookupError):
    """No task is registered under this name."""

    def __init__(self, name: str, known: Sequence[str] = ()) -> None:
        hint = f"; registered tasks: {', '.join(sorted(known))}" if known else ""
        super().__init__(f"unknown task {name!r}{hint}")
        self.name = name


# --- inputs ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldError:
    """One invalid input field: where it is, what was wrong, what was sent."""

    field: str
    message: str
    value: Any = None

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "message": self.message}


class InputValidationError(TaskloomError, ValueError):
    """The inputs of a task are invalid."""

    def __init__(self, task: str, errors: Sequence[FieldError], *, what: str = "input") -> None:
        self.task = task
        self.errors = list(errors)
        self.what = what
        super().__init__(self._describe())

    def _describe(self) -> str:
        """The message, one line a field (a subclass names more: the stage, the topic)."""
        lines = [f"task {self.task!r}: {self.what} {e.field!r}: {e.message}" for e in self.errors]
        return "\n".join(lines) or f"task {self.task!r}: invalid {self.what}"

    def as_dict(self) -> dict[str, Any]:
        return {"task": self.task, "errors": [e.as_dict() for e in self.errors]}


# --- runs -------------------------------------------------------------------------------


class RunNotFoundError(TaskloomError, LookupError):
    """No run has this id."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run with id {run_id!r}")
        self.run_id = run_id


class WaitTimeoutError(TaskloomError, TimeoutError):
    """The run did not finish within the time given to wait for it."""


class EngineClosedError(TaskloomError, RuntimeError):
    """The engine is not running: use it inside `async with Engine(...)`."""


class Retry(TaskloomError):
    """The task asked to be retried."""

    def __init__(self, message: str | None = None, *, delay: float | None = None) -> None:
        super().__init__(message or "the task asked to be retried")
        self.delay = delay


class TaskTimeoutError(TaskloomError, TimeoutError):
    """An attempt ran longer than the task's timeout."""


class WorkerLostError(TaskloomError):
    """The worker that was executing the run stopped without finishing it."""


class ExecutorUnavailableError(TaskloomError):
    """An executor of calls elsewhere (a Dask scheduler) could not be reached."""


# --- workflows ----------------------------------------------------------------------------


class WorkflowError(TaskloomError):
    """A workflow could not be run as asked."""


class WorkflowValidationError(WorkflowError, ValueError):
    """A workflow is invalid; nothing of it was run."""

    def __init__(
        self, workflow: str, problem: str, *, step: str | None = None, field: str | None = None
    ) -> None:
        self.workflow = workflow
        self.step = step
        self.field = field
        self.problem = problem
        super().__init__(self._describe())

    def _describe(self) -> str:
        """The message: where the problem is, then what it is."""
        where = f"workflow {self.workflow!r}"
        if self.step is not None:
            where += f": step {self.step!r}"
        if self.field is not None:
            where += f": {self.field}"
        return f"{where}: {self.problem}"


class NotAWorkflowRunError(WorkflowError, LookupError):
    """The run named in a workflow route is not a workflow run."""


# --- storage ----------------------------------------------------------------------------


class StoreError(TaskloomError):
    """The store (database) could not complete an operation."""


class StoreUnavailableError(StoreError):
    """The store cannot commit right now (database down, disk full or locked); nothing was
    accepted: try again after `retry_after` seconds."""

    def __init__(self, message: str | None = None, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnstorableValueError(StoreError):
    """A value cannot be stored: it holds text that UTF-8 cannot encode (a lone surrogate).

    Raised for a run's result, which then fails its attempt; inputs with such text are
    refused as `InputValidationError` naming the field."""
