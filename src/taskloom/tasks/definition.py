"""`TaskDefinition` and the `@task` decorator."""

from __future__ import annotations

import asyncio
import functools
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from ..context import Context
from ..exceptions import FieldError, InputValidationError, TaskDefinitionError
from .options import DESCRIPTIVE_OPTIONS, TaskOptions, parse_options
from .signature import Port, Signature, SpecialParams, inspect_function
from .validation import coerce_cli_value

if TYPE_CHECKING:
    from ..streams.buses import Bus

__all__ = ["FunctionTask", "TaskDefinition", "task"]

P = ParamSpec("P")
R = TypeVar("R")


class TaskDefinition:
    """What every task offers the engine: a name, schemas, validation and options.

    `FunctionTask` (from `@task`) and `ClassTask` (from a `taskloom.Task` subclass) are the
    two kinds.
    """

    kind: str
    name: str
    label: str
    description: str
    options: TaskOptions
    module: str | None
    qualname: str
    is_async: bool
    is_async_generator: bool = False

    @property
    def input_schema(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def output_schema(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def inputs(self) -> Mapping[str, Port]:
        return {}

    @property
    def outputs(self) -> Mapping[str, Port]:
        return {}

    @property
    def specials(self) -> SpecialParams:
        return _NO_SPECIALS

    def validate_inputs(self, inputs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Validate and coerce inputs: (values for the call, JSON-compatible values to store).

        Raises `InputValidationError` naming the task and each invalid field.
        """
        raise NotImplementedError

    async def invoke(self, call: dict[str, Any], context: Context, engine: Any) -> Any:
        """Execute one run (kinds other than functions and classes, e.g. command tasks)."""
        raise NotImplementedError(f"task {self.name!r} of kind {self.kind!r} cannot be invoked")

    def parse_cli_inputs(self, pairs: Mapping[str, str]) -> dict[str, Any]:
        """Read `key=value` strings from a command line against the input schema."""
        properties = self.input_schema.get("properties", {})
        return {key: coerce_cli_value(raw, properties.get(key)) for key, raw in pairs.items()}

    def same_as(self, other: object) -> bool:
        """True when `other` defines the same task (the same code re-imported counts)."""
        if other is self:
            return True
        return (
            isinstance(other, TaskDefinition)
            and type(other) is type(self)
            and other.module == self.module
            and other.qualname == self.qualname
        )

    def describe(self) -> dict[str, Any]:
        """A JSON-compatible summary: what listings and manifests show."""
        return {
            "name": self.name,
            "label": self.label,
            "description": self.description,
            "kind": self.kind,
            "input_schema": self.input_schema,
            "output_schema": self.output_schema,
            "tags": list(self.options.tags),
            "meta": dict(self.options.meta),
        }


_NO_SPECIALS = SpecialParams()


class FunctionTask(TaskDefinition, Generic[P, R]):
    """A task made from a function by `@task`.

    Calling it calls the function unchanged: `adder(1, 2) == 3`.
    """

    kind = "function"
    # Copied from the function by `functools.update_wrapper`, so the task passes for it.
    __name__: str
    __wrapped__: Callable[P, R]

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        label: str | None = None,
        description: str | None = None,
        options: TaskOptions | None = None,
    ) -> None:
        if not callable(fn):
            raise TaskDefinitionError(f"@task needs a function, got {fn!r}")
        self.fn = fn
        self.name = name or fn.__name__
        check_name(self.name)
        self.options = options or TaskOptions()
        self.signature: Signature = inspect_function(fn, task=self.name)
        self.label = label or self.name
        self.description = description or self.signature.docstring.summary or ""
        self.is_async = inspect.iscoroutinefunction(fn)
        self.is_async_generator = inspect.isasyncgenfunction(fn)
        if self.options.inline and (self.is_async or self.is_async_generator):
            raise TaskDefinitionError(
                f"task {self.name!r}: 'inline' is for sync functions "
                "(async ones already run on the loop)"
            )
        if self.options.inline and self.options.timeout is not None:
            raise TaskDefinitionError(
                f"task {self.name!r}: an inline task runs on the event loop and cannot be "
                "interrupted, so it cannot have a timeout; drop 'inline' or 'timeout'"
            )
        asynchronous = self.is_async or self.is_async_generator
        executor = self.options.executor
        if executor == "loop" and not asynchronous:
            raise TaskDefinitionError(
                f"task {self.name!r}: executor 'loop' is for async functions; a sync one "
                "runs in a thread ('serial', 'thread') or on the loop with 'inline'"
            )
        if executor in ("thread", "serial") and asynchronous:
            raise TaskDefinitionError(
                f"task {self.name!r}: executor {executor!r} is for sync functions "
                "(async ones run on the loop)"
            )
        if executor == "dask" and self.is_async_generator:
            raise TaskDefinitionError(
                f"task {self.name!r}: executor 'dask' takes functions that return their "
                "result, not async generators"
            )
        self.module = getattr(fn, "__module__", None)
        self.qualname = getattr(fn, "__qualname__", self.name)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    # as a stream stage of its own program ----------------------------------------------
    async def run(
        self,
        bus: Bus | str | None = None,
        *,
        deployment: str | None = None,
        stage: str | None = None,
        inputs: dict[str, str] | None = None,
        outputs: dict[str, str] | list[str] | None = None,
        config: Any = None,
        database: str | None = None,
        status_interval: float | None = None,
        argv: Sequence[str] | None = None,
    ) -> None:
        """Run this task as a stream stage until Ctrl-C, SIGTERM or a stop request.

        `bus`: a NATS URL (default `nats://127.0.0.1:4222`) or a `Bus` object. The stage
        joins `deployment` (default: the task's name) as `stage` (default: the task's
        name); `inputs` (port -> topic), `outputs` and `config` as for `Pipeline.stage`.
        What is not given comes from `argv` (`--bus`, `--deployment`, `--stage`, `--input
        PORT=TOPIC`, `--output [PORT=]TOPIC`, `--config K=V`, `--db`), then from the
        deployment's record in the database (`database`, `TASKLOOM_DATABASE_URL` or the
        default file if it exists), then each port uses the topic of its own name.
        """
        from ..streams.standalone import run_stage, settings_for

        settings = settings_for(
            self.name,
            argv,
            bus=bus,
            deployment=deployment,
            stage=stage,
            inputs=inputs,
            outputs=outputs,
            config=config,
            database=database,
            status_interval=status_interval,
        )
        await run_stage(self, settings)

    def run_sync(self, bus: Bus | str | None = None, **settings: Any) -> None:
        """`run()` in a new event loop, reading the command line (`sys.argv`) for what is
        not given: `if __name__ == "__main__": adder.run_sync()`."""
        settings.setdefault("argv", sys.argv[1:])
        asyncio.run(self.run(bus, **settings))

    def __repr__(self) -> str:
        return f"<task {self.name!r} ({self.module}.{self.qualname})>"

    # schemas and ports -----------------------------------------------------------------
    @property
    def input_schema(self) -> dict[str, Any]:
        return self.signature.input_schema

    @property
    def output_schema(self) -> dict[str, Any]:
        return self.signature.output_schema

    @property
    def inputs(self) -> Mapping[str, Port]:
        return self.signature.inputs

    @property
    def outputs(self) -> Mapping[str, Port]:
        return self.signature.outputs

    @property
    def specials(self) -> SpecialParams:
        return self.signature.specials

    # validation ------------------------------------------------------------------------
    def validate_inputs(self, inputs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        if not isinstance(inputs, Mapping):
            raise InputValidationError(self.name, [not_an_object(inputs)])
        return self.signature.validate(inputs)


def not_an_object(value: Any) -> FieldError:
    return FieldError("(inputs)", f"expected an object of named inputs, got {type(value).__name__}")


def check_name(name: str) -> None:
    if not name or not isinstance(name, str) or len(name) > 200 or name.strip() != name:
        raise TaskDefinitionError(
            f"invalid task name {name!r}: use 1-200 characters, no outer spaces"
        )


@overload
def task(fn: Callable[P, R], /) -> FunctionTask[P, R]: ...


@overload
def task(fn: None = None, /, **options: Any) -> Callable[[Callable[P, R]], FunctionTask[P, R]]: ...


def task(
    fn: Callable[P, R] | None = None, /, **options: Any
) -> FunctionTask[P, R] | Callable[[Callable[P, R]], FunctionTask[P, R]]:
    """Make a function a task, bare (`@task`) or with options (`@task(retries=3)`).

    Options: `name`, `label`, `description` (default: the docstring summary), and those
    of `TaskOptions`: `retries`, `retry_backoff`, `retry_backoff_factor`,
    `retry_backoff_max`, `retry_jitter`, `retry_on`, `timeout`, `concurrency`,
    `thread_safe`, `inline`, `priority`, `tags`, `meta`. An unknown option fails here.
    """

    def decorate(func: Callable[P, R]) -> FunctionTask[P, R]:
        descriptive = {k: options[k] for k in DESCRIPTIVE_OPTIONS if k in options}
        name = descriptive.get("name") or getattr(func, "__name__", None) or repr(func)
        rest = {k: v for k, v in options.items() if k not in DESCRIPTIVE_OPTIONS}
        parsed = parse_options(name, rest)
        if isinstance(func, TaskDefinition):
            raise TaskDefinitionError(f"task {name!r} is already a task; apply @task once")
        return FunctionTask(func, options=parsed, **descriptive)

    if fn is not None:
        if options:
            raise TaskDefinitionError("use @task(...) with keyword options, or bare @task")
        return decorate(fn)
    return decorate
