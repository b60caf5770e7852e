"""The options a task accepts, checked when the task is defined."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, cast

from ..exceptions import TaskDefinitionError
from ..policies import RetryPolicy

__all__ = ["EXECUTORS", "TaskOptions", "check_queue_name", "parse_options"]

#: The executors a task may name (`executor=`): how its calls are made.
EXECUTORS = ("loop", "inline", "thread", "serial", "dask")


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskOptions:
    """How runs of a task are executed.

    - `retries`: extra attempts after a failure (0: none).
    - `retry_backoff`, `retry_backoff_factor`, `retry_backoff_max`, `retry_jitter`: the
      delay before a retry (see `RetryPolicy`).
    - `retry_on`: the exception types that are retried; others fail the run at once.
    - `timeout`: seconds one attempt may take; an attempt over it fails with a timeout error.
    - `concurrency`: how many runs of this task may execute at once, across all workers
      on the database.
    - `thread_safe`: a sync function may run in several threads at once; when False (the
      default) calls of a sync function never overlap.
    - `inline`: run a cheap sync function directly on the event loop (no thread hop).
    - `executor`: how calls are made, when not as the function's kind says (None): `loop`
      (an async function, on the event loop), `inline` (as `inline=True`), `thread` (as
      `thread_safe=True`: the engine's thread pool), `serial` (a sync function's own
      thread, one call at a time: the default for sync functions), or `dask` (on a Dask
      cluster: the engine given a scheduler executes the call there and records the
      run as for any other; see `taskloom.executors.dask`).
    - `priority`: default priority of its runs (higher runs first; 0 is ordinary).
    - `queue`: the queue its runs wait in (default `"default"`); a worker takes runs only
      from the queues it serves.
    - `tags`: free labels for listing and filtering.
    - `meta`: free-form resource hints (cpus, memory, ...), kept in the manifest.
    - `schedule`: a `taskloom.Cron` or `taskloom.Interval`: the task runs on it, under
      the task's name as the schedule's, wherever a long-running engine serves it.
    - `on_success`, `on_failure`: a task (or its name) to run once a run of this task
      has completed, or has failed after its last attempt, with the input `run`: that
      run's summary (id, task, status, attempts, inputs, result or error).
    """

    retries: int = 0
    retry_backoff: float = 1.0
    retry_backoff_factor: float = 2.0
    retry_backoff_max: float = 60.0
    retry_jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    timeout: float | None = None
    concurrency: int | None = None
    thread_safe: bool = False
    inline: bool = False
    executor: str | None = None
    priority: int = 0
    queue: str = "default"
    tags: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
    schedule: Any = None  # a schedules.Rule; typed loosely: tasks/ does not import schedules/
    on_success: str | None = None
    on_failure: str | None = None

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            retries=self.retries,
            backoff=self.retry_backoff,
            backoff_factor=self.retry_backoff_factor,
            backoff_max=self.retry_backoff_max,
            jitter=self.retry_jitter,
            retry_on=self.retry_on,
        )


OPTION_NAMES: frozenset[str] = frozenset(f.name for f in fields(TaskOptions))

# Options that describe the task rather than how it runs; `task()` takes them too.
DESCRIPTIVE_OPTIONS = frozenset({"name", "label", "description"})


def parse_options(task: str, options: Mapping[str, Any]) -> TaskOptions:
    """Check and normalise task options; an unknown or ill-typed one fails here, at definition."""
    unknown = [key for key in options if key not in OPTION_NAMES]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, sorted(OPTION_NAMES | DESCRIPTIVE_OPTIONS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        known = ", ".join(sorted(OPTION_NAMES | DESCRIPTIVE_OPTIONS))
        raise TaskDefinitionError(
            f"task {task!r}: unknown option {key!r}{hint} (known options: {known})"
        )
    values = dict(options)
    retry_on = values.get("retry_on")
    if retry_on is not None:
        values["retry_on"] = _exception_types(task, retry_on)
    if "tags" in values:
        tags = values["tags"]
        values["tags"] = (tags,) if isinstance(tags, str) else tuple(str(t) for t in tags)
    if "meta" in values:
        values["meta"] = dict(values["meta"])
    _check_numbers(task, values)
    for key in ("on_success", "on_failure"):
        if values.get(key) is not None:
            values[key] = _task_name(task, key, values[key])
    if values.get("schedule") is not None:
        from ..schedules.rules import Rule

        if not isinstance(values["schedule"], Rule):
            raise TaskDefinitionError(
                f"task {task!r}: option 'schedule' expects a taskloom.Cron or "
                f"taskloom.Interval, got {values['schedule']!r}"
            )
    if "queue" in values:
        values["queue"] = check_queue_name(values["queue"], f"task {task!r}: option 'queue'")
    executor = values.get("executor")
    if executor is not None:
        if executor not in EXECUTORS:
            raise TaskDefinitionError(
                f"task {task!r}: option 'executor' must be one of {', '.join(EXECUTORS)}, "
                f"not {executor!r}"
            )
        if executor == "inline":
            values["inline"] = True
        elif executor == "thread":
            values["thread_safe"] = True
    try:
        parsed = TaskOptions(**values)
        parsed.retry_policy  # noqa: B018 - validates the retry numbers
    except (TypeError, ValueError) as exc:
        raise TaskDefinitionError(f"task {task!r}: {exc}") from exc
    return parsed


def check_queue_name(value: Any, what: str) -> str:
    """A queue's name: 1 to 100 characters, letters, digits and `._-:/`."""
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= 100
        or not all(c.isalnum() or c in "._-:/" for c in value)
    ):
        raise TaskDefinitionError(
            f"{what} expects a queue name (1 to 100 letters, digits or ._-:/), got {value!r}"
        )
    return value


def _task_name(task: str, option: str, value: Any) -> str:
    """The name of the task an option names (a name, or the task itself)."""
    name = value if isinstance(value, str) else getattr(value, "name", None)
    if not isinstance(name, str) or not name:
        raise TaskDefinitionError(
            f"task {task!r}: option {option!r} expects a task or a task's name, got {value!r}"
        )
    return name


def _exception_types(task: str, value: Any) -> tuple[type[BaseException], ...]:
    items = value if isinstance(value, tuple | list) else (value,)
    for item in items:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise TaskDefinitionError(
                f"task {task!r}: option 'retry_on' expects exception types, got {item!r}"
            )
    return tuple(items)


def _check_numbers(task: str, values: Mapping[str, Any]) -> None:
    checks: dict[str, tuple[type | tuple[type, ...], str]] = {
        "retries": (int, "an integer >= 0"),
        "retry_backoff": ((int, float), "a number of seconds >= 0"),
        "retry_backoff_factor": ((int, float), "a number >= 1"),
        "retry_backoff_max": ((int, float), "a number of seconds >= 0"),
        "timeout": ((int, float), "a number of seconds > 0"),
        "concurrency": (int, "an integer >= 1"),
        "priority": (int, "an integer"),
    }
    for key, (types, expected) in checks.items():
        value: Any = values.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            raise TaskDefinitionError(
                f"task {task!r}: option {key!r} expects {expected}, got {value!r}"
            )
        number = float(cast(float, value))
        if (key == "timeout" and number <= 0) or (key == "concurrency" and number < 1):
            raise TaskDefinitionError(
                f"task {task!r}: option {key!r} expects {expected}, got {value!r}"
            )
        if key == "retry_backoff_factor" and number < 1:
            raise TaskDefinitionError(
                f"task {task!r}: option {key!r} expects {expected}, got {value!r}"
            )
        if key in {"retries", "retry_backoff", "retry_backoff_max"} and number < 0:
            raise TaskDefinitionError(
                f"task {task!r}: option {key!r} expects {expected}, got {value!r}"
            )
