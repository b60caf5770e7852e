"""Class-based tasks: `taskloom.Task`.

Two shapes are accepted:

- the executor shape (as in aipartnerupflow): class attributes `id`, `name`,
  `description`, `async execute(self, inputs: dict) -> dict`, optional
  `get_input_schema()` returning a JSON Schema, which is enforced (`required`,
  `enum`, types, defaults), and optional `async cancel()`;
- the idiomatic shape: a nested pydantic model `Inputs`; `execute` receives an instance of
  it; optional `setup()` and `teardown()` run around each run.

Options are class keywords: `class Resize(taskloom.Task, retries=3, timeout=60): ...`.
One instance is made per run, so `cancel()` always speaks of that run.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import jsonschema
from pydantic import BaseModel, ValidationError

from ..context import Context
from ..exceptions import FieldError, InputValidationError, TaskDefinitionError
from .definition import TaskDefinition, check_name, not_an_object
from .options import TaskOptions, parse_options
from .signature import JSON_SCHEMA_DIALECT, parse_docstring_text
from .validation import field_errors_from_jsonschema, field_errors_from_pydantic

__all__ = ["ClassTask", "Task", "executor_register"]


class Task:
    """Base class of class-based tasks. See the module documentation for the two shapes."""

    id: ClassVar[str | None] = None
    name: ClassVar[str | None] = None
    description: ClassVar[str | None] = None
    Inputs: ClassVar[type[BaseModel] | None] = None

    #: The run this instance executes (set by the engine before `setup`/`execute`).
    context: Context

    _taskloom_options: ClassVar[TaskOptions] = TaskOptions()
    _taskloom_definition: ClassVar[ClassTask | None] = None

    def __init_subclass__(cls, **options: Any) -> None:
        super().__init_subclass__()
        label = next(
            (v for v in (cls.__dict__.get("id"), cls.__dict__.get("name")) if isinstance(v, str)),
            cls.__name__,
        )
        cls._taskloom_options = parse_options(str(label), options) if options else TaskOptions()
        if cls._taskloom_options.executor not in (None, "loop"):
            raise TaskDefinitionError(
                f"task {label!r}: a class task runs on the event loop (its sync `execute` "
                f"in a thread); executor {cls._taskloom_options.executor!r} is for functions"
            )
        cls._taskloom_definition = None

    async def execute(self, inputs: Any) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__} must define `async def execute(self, inputs)`"
        )

    def get_input_schema(self) -> dict[str, Any] | None:
        """A JSON Schema of the inputs; None when `Inputs` (or nothing) describes them."""
        return None

    async def cancel(self) -> Any:
        """Called when the run is cancelled while executing; stop the work if you can."""
        return None

    async def setup(self) -> None:
        """Called before `execute` in each run."""

    async def teardown(self) -> None:
        """Called after `execute` in each run, whether it succeeded or not."""


class _Declared:
    """Reads `id`, `name` and `description` of a task class: class attributes, or
    properties as aipartnerupflow's `ExecutableTask` declares them (read from an instance
    made with no arguments, once)."""

    def __init__(self, cls: type[Task]) -> None:
        self._cls = cls
        self._instance: Task | None = None

    def __call__(self, attribute: str) -> str | None:
        cls = self._cls
        value = getattr(cls, attribute, None)
        if isinstance(value, property):
            if self._instance is None:
                try:
                    self._instance = cls()
                except Exception as exc:
                    raise TaskDefinitionError(
                        f"task class {cls.__name__}: its `{attribute}` property is read from "
                        f"an instance, and {cls.__name__}() must work with no arguments: {exc}"
                    ) from exc
            try:
                value = getattr(self._instance, attribute)
            except Exception as exc:
                raise TaskDefinitionError(
                    f"task class {cls.__name__}: reading its `{attribute}` property failed: {exc}"
                ) from exc
        if value is not None and not isinstance(value, str):
            raise TaskDefinitionError(
                f"task class {cls.__name__}: `{attribute}` must be text, not {type(value).__name__}"
            )
        return value


def _own_docstring(cls: type[Task]) -> str | None:
    """The docstring of the task class or of the nearest of its bases that has one, but
    never taskloom's own base class's (`inspect.getdoc` would inherit it)."""
    for klass in cls.__mro__:
        if klass is Task or klass is object:
            return None
        doc = klass.__dict__.get("__doc__")
        if isinstance(doc, str) and doc.strip():
            return inspect.cleandoc(doc)
    return None


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class ClassTask(TaskDefinition):
    """The definition of a `Task` subclass."""

    kind = "class"

    def __init__(self, cls: type[Task]) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Task)):
            raise TaskDefinitionError(f"{cls!r} is not a taskloom.Task subclass")
        if cls.execute is Task.execute:
            raise TaskDefinitionError(
                f"task class {cls.__name__}: define `async def execute(self, inputs)`"
            )
        self.cls = cls
        declared = _Declared(cls)
        task_id, label, description = declared("id"), declared("name"), declared("description")
        self.name = task_id or label or _snake(cls.__name__)
        check_name(self.name)
        self.label = label or self.name
        doc = parse_docstring_text(_own_docstring(cls))
        self.description = description or doc.summary or ""
        self.options = cls._taskloom_options
        self.module = cls.__module__
        self.qualname = cls.__qualname__
        self.is_async = inspect.iscoroutinefunction(cls.execute)
        self._model = cls.Inputs
        self._schema, self._validator = self._read_schema()
        self._defaults = {
            key: prop["default"]
            for key, prop in (self._schema.get("properties") or {}).items()
            if isinstance(prop, dict) and "default" in prop
        }

    def __repr__(self) -> str:
        return f"<task {self.name!r} (class {self.module}.{self.qualname})>"

    def _read_schema(self) -> tuple[dict[str, Any], jsonschema.protocols.Validator | None]:
        if self._model is not None:
            if not (isinstance(self._model, type) and issubclass(self._model, BaseModel)):
                raise TaskDefinitionError(f"task {self.name!r}: `Inputs` must be a pydantic model")
            schema = self._model.model_json_schema()
            schema.pop("title", None)
            return {"$schema": JSON_SCHEMA_DIALECT, "title": self.name, **schema}, None
        try:
            given = self.cls().get_input_schema()
        except Exception as exc:
            raise TaskDefinitionError(
                f"task {self.name!r}: {self.cls.__name__}() and get_input_schema() must work "
                f"with no arguments: {exc}"
            ) from exc
        if given is None:
            return {"$schema": JSON_SCHEMA_DIALECT, "title": self.name, "type": "object"}, None
        schema = dict(given)
        validator_cls = jsonschema.validators.validator_for(
            schema, default=jsonschema.Draft202012Validator
        )
        try:
            validator_cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise TaskDefinitionError(
                f"task {self.name!r}: get_input_schema() is not a valid JSON Schema: {exc.message}"
            ) from exc
        # A property list is a promise of what is accepted: unknown keys are refused
        # unless the schema says otherwise.
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        schema.setdefault("title", self.name)
        return schema, validator_cls(schema)

    @property
    def input_schema(self) -> dict[str, Any]:
        return self._schema

    @property
    def output_schema(self) -> dict[str, Any]:
        return {}

    def validate_inputs(self, inputs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        if not isinstance(inputs, Mapping):
            raise InputValidationError(self.name, [not_an_object(inputs)])
        if self._model is not None:
            return self._validate_model(self._model, inputs)
        values = {**self._defaults, **inputs}
        if self._validator is not None:
            errors = field_errors_from_jsonschema(self._schema, values, self._validator)
            if errors:
                raise InputValidationError(self.name, errors)
        return {"inputs": values}, values

    def _validate_model(
        self, model: type[BaseModel], inputs: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        known = [f.alias or name for name, f in model.model_fields.items()]
        errors: list[FieldError] = []
        if model.model_config.get("extra") != "allow":
            hint = f"; expected one of: {', '.join(known)}"
            errors = [FieldError(k, f"unknown input{hint}") for k in inputs if k not in known]
        try:
            instance = model.model_validate(inputs)
        except ValidationError as exc:
            reported = {e.field for e in errors}
            errors += [
                e
                for e in field_errors_from_pydantic(exc, known_fields=known)
                if e.field not in reported
            ]
        if errors:
            raise InputValidationError(self.name, errors)
        return {"inputs": instance}, instance.model_dump(mode="json")


def as_class_task(cls: type[Task]) -> ClassTask:
    """The (cached) definition of a Task subclass."""
    definition = cls.__dict__.get("_taskloom_definition")
    if definition is None:
        definition = ClassTask(cls)
        cls._taskloom_definition = definition
    return definition


def executor_register() -> Any:
    """Register a `Task` subclass in the default registry (aipartnerupflow's decorator).

    `from taskloom import BaseTask, executor_register` lets an aipartnerupflow executor
    run unchanged apart from its import.
    """
    from .registry import default_registry

    def decorate(cls: type[Task]) -> type[Task]:
        default_registry.add(as_class_task(cls))
        return cls

    return decorate
