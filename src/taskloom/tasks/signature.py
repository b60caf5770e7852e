"""From a function's signature to validated inputs and JSON Schemas.

Inputs are the parameters, less the special ones (`config`, `state`, `timestamp`,
`context`). A pydantic model built from them validates and coerces inputs and yields the
JSON Schema (draft 2020-12); descriptions come from the docstring (Google, NumPy or reST).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, get_args, get_origin

import docstring_parser
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model
from pydantic.fields import FieldInfo

from ..context import Context
from ..exceptions import FieldError, InputValidationError, TaskDefinitionError
from .validation import field_errors_from_pydantic

__all__ = ["Port", "Signature", "SpecialParams", "inspect_function"]

SPECIAL_NAMES = ("config", "state", "timestamp", "context")
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

_ASYNC_ITERATORS = (
    collections.abc.AsyncIterator,
    collections.abc.AsyncGenerator,
    collections.abc.AsyncIterable,
)

# Types whose validated value is already what JSON would hold: no dump needed to store them.
_JSON_NATIVE = (int, float, str, bool, type(None))


@dataclass(frozen=True, slots=True)
class Port:
    """One input or output of a task: its name, type, description and `Annotated` metadata."""

    name: str
    annotation: Any
    description: str | None = None
    metadata: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class SpecialParams:
    """Which special parameters a function takes."""

    config: type[Any] | None = None
    state: type[Any] | None = None
    timestamp: bool = False
    context: str | None = None  # the parameter name that receives the Context

    @property
    def any(self) -> bool:
        return bool(self.config or self.state or self.timestamp or self.context)


@dataclass(frozen=True, slots=True)
class Docstring:
    summary: str | None
    description: str | None
    params: Mapping[str, str]
    returns: str | None


def parse_docstring(obj: Any) -> Docstring:
    return parse_docstring_text(inspect.getdoc(obj))


def parse_docstring_text(text: str | None) -> Docstring:
    if not text:
        return Docstring(None, None, {}, None)
    parsed = docstring_parser.parse(text)
    params = {p.arg_name: p.description for p in parsed.params if p.description}
    summary = parsed.short_description
    long = parsed.long_description
    description = f"{summary}\n\n{long}" if summary and long else summary or long
    returns = parsed.returns.description if parsed.returns else None
    return Docstring(summary, description, params, returns)


class Signature:
    """The validated-input view of a function."""

    def __init__(
        self,
        *,
        task: str,
        model: type[BaseModel],
        names: tuple[str, ...],
        inputs: dict[str, Port],
        outputs: dict[str, Port],
        output_schema: dict[str, Any],
        specials: SpecialParams,
        docstring: Docstring,
        json_native: bool,
    ) -> None:
        self.task = task
        self.model = model
        self.names = names
        self.inputs = inputs
        self.outputs = outputs
        self.output_schema = output_schema
        self.specials = specials
        self.docstring = docstring
        self._json_native = json_native
        self._internal = tuple(f"p{i}" for i in range(len(names)))
        self._validate = model.__pydantic_validator__.validate_python
        schema = model.model_json_schema(by_alias=True)
        schema.pop("title", None)
        self.input_schema: dict[str, Any] = {
            "$schema": JSON_SCHEMA_DIALECT,
            "title": task,
            **schema,
        }

    def validate(self, inputs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return (values to call the function with, JSON-compatible values to store)."""
        if not self.names and not inputs:  # nothing to validate: skip the model
            return {}, {}
        try:
            instance = self._validate(inputs)
        except ValidationError as exc:
            errors = field_errors_from_pydantic(exc, known_fields=self.names)
            raise InputValidationError(self.task, errors) from None
        values = instance.__dict__
        call = {name: values[key] for name, key in zip(self.names, self._internal, strict=True)}
        if self._json_native:
            return call, call
        return call, instance.model_dump(mode="json", by_alias=True)


def inspect_function(fn: Callable[..., Any], *, task: str) -> Signature:
    try:
        sig = inspect.signature(fn)
        hints = typing.get_type_hints(fn, include_extras=True)
    except (TypeError, NameError, ValueError) as exc:
        raise TaskDefinitionError(f"task {task!r}: cannot read the signature: {exc}") from exc
    doc = parse_docstring(fn)
    config: type[Any] | None = None
    state: type[Any] | None = None
    timestamp = False
    context_name: str | None = None
    fields: dict[str, Any] = {}
    names: list[str] = []
    ports: dict[str, Port] = {}
    json_native = True
    for param in sig.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TaskDefinitionError(
                f"task {task!r}: parameter {param.name!r}: *args and **kwargs cannot be inputs; "
                "name each input"
            )
        annotation = hints.get(param.name, Any)
        if annotation is Context or param.name == "context":
            context_name = param.name
            continue
        if param.name == "config":
            config = _constructible(task, "config", annotation)
            continue
        if param.name == "state":
            state = _constructible(task, "state", annotation)
            continue
        if param.name == "timestamp":
            if _strip_annotated(annotation)[0] not in (int, Any):
                raise TaskDefinitionError(f"task {task!r}: parameter 'timestamp' must be an int")
            timestamp = True
            continue
        base, metadata = _strip_annotated(annotation)
        description = doc.params.get(param.name)
        default = ... if param.default is param.empty else param.default
        extra: dict[str, Any] = {}
        if description is not None:  # a Field(description=...) in Annotated wins otherwise
            extra["description"] = description
        io_metadata = _io_metadata(metadata)
        if io_metadata is not None:
            extra["json_schema_extra"] = io_metadata
        info = Field(default, validation_alias=param.name, serialization_alias=param.name, **extra)
        fields[f"p{len(names)}"] = (annotation, info)
        names.append(param.name)
        ports[param.name] = Port(param.name, base, description, metadata)
        json_native = json_native and base in _JSON_NATIVE
    outputs, output_schema = _outputs(task, hints.get("return", Any), doc)
    for kind, found in (("input", ports), ("output", outputs)):
        for port in found.values():
            check_config_metadata(f"task {task!r}", kind, port, config)
    model = create_model(
        f"{_identifier(task)}_inputs",
        __config__=ConfigDict(
            extra="forbid", arbitrary_types_allowed=False, populate_by_name=False
        ),
        **fields,
    )
    return Signature(
        task=task,
        model=model,
        names=tuple(names),
        inputs=ports,
        outputs=outputs,
        output_schema=output_schema,
        specials=SpecialParams(config, state, timestamp, context_name),
        docstring=doc,
        json_native=json_native,
    )


def config_metadata_fields(metadata: tuple[Any, ...]) -> list[str]:
    """The config fields a port's metadata takes values from: `Annotated[bytes, {"content":
    "video"}, ["width", "height"]]` (streamtasks' form) gives each port the metadata
    `width` and `height` of the stage's config."""
    fields: list[str] = []
    for item in metadata:
        if isinstance(item, list | tuple) and item and all(isinstance(f, str) for f in item):
            fields.extend(item)
    return fields


def check_config_metadata(owner: str, kind: str, port: Port, config: type[Any] | None) -> None:
    """Refuse, at definition, metadata taken from a config field the config lacks."""
    fields = config_metadata_fields(port.metadata)
    if not fields:
        return
    where = f"{owner}: {kind} {port.name!r}"
    if config is None:
        raise TaskDefinitionError(
            f"{where}: its metadata comes from config field(s) {', '.join(map(repr, fields))}, "
            "but there is no config (add a `config` parameter, or a `Config` class)"
        )
    known = _config_fields(config)
    for name in fields:
        if name not in known:
            listed = ", ".join(sorted(known)) or "none"
            raise TaskDefinitionError(
                f"{where}: its metadata comes from config field {name!r}, which "
                f"{config.__name__} does not have (fields: {listed})"
            )


def _config_fields(config: type[Any]) -> set[str]:
    if dataclasses.is_dataclass(config):
        return {f.name for f in dataclasses.fields(config)}
    model_fields = getattr(config, "model_fields", None)
    if isinstance(model_fields, Mapping):
        return set(model_fields)
    return {name for name in vars(config()) if not name.startswith("_")}


def _strip_annotated(annotation: Any) -> tuple[Any, tuple[Any, ...]]:
    if get_origin(annotation) is Annotated:
        base, *metadata = get_args(annotation)
        return base, tuple(m for m in metadata if not isinstance(m, FieldInfo))
    return annotation, ()


def _io_metadata(metadata: tuple[Any, ...]) -> dict[str, Any] | None:
    """`Annotated[bytes, {"content": "video"}]`: dicts become `x-io` in the JSON Schema."""
    merged: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, Mapping):
            merged.update(item)
    return {"x-io": merged} if merged else None


def _constructible(task: str, name: str, annotation: Any) -> type[Any]:
    base, _ = _strip_annotated(annotation)
    if not isinstance(base, type):
        raise TaskDefinitionError(
            f"task {task!r}: parameter {name!r} needs a class annotation that can be built with "
            f"no arguments (a dataclass or pydantic model with defaults), got {annotation!r}"
        )
    try:
        base()
    except Exception as exc:
        raise TaskDefinitionError(
            f"task {task!r}: parameter {name!r}: {base.__name__}() must work with no arguments "
            f"(give every field a default): {exc}"
        ) from exc
    return base


def _outputs(task: str, annotation: Any, doc: Docstring) -> tuple[dict[str, Port], dict[str, Any]]:
    if annotation is inspect.Signature.empty:
        annotation = Any
    if get_origin(annotation) in _ASYNC_ITERATORS:  # a source: its outputs are what it yields
        annotation = (get_args(annotation) or (Any,))[0]
    base, metadata = _strip_annotated(annotation)
    outputs: dict[str, Port] = {}
    if base is None or base is type(None):
        return outputs, {"type": "null"}
    if get_origin(base) is tuple and get_args(base) and get_args(base)[-1] is not Ellipsis:
        for index, item in enumerate(get_args(base)):
            item_base, item_meta = _strip_annotated(item)
            outputs[f"out{index}"] = Port(f"out{index}", item_base, None, item_meta)
    else:
        outputs["result"] = Port("result", base, doc.returns, metadata)
    try:
        schema = TypeAdapter(annotation).json_schema(mode="serialization")
    except Exception as exc:
        raise TaskDefinitionError(
            f"task {task!r}: the return annotation {annotation!r} has no JSON Schema: {exc}"
        ) from exc
    if doc.returns and "description" not in schema:
        schema["description"] = doc.returns
    return outputs, schema


def _identifier(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name) or "task"


def validate_special(task: str, name: str, kind: type[Any], value: Any) -> Any:
    """Validate a `config` (or `state`) value given as a mapping, or build the default."""
    if value is None:
        return kind()
    if isinstance(value, kind):
        return value
    try:
        return TypeAdapter(kind).validate_python(value)
    except ValidationError as exc:
        errors = field_errors_from_pydantic(exc)
        raise InputValidationError(task, errors, what=name) from None
    except TypeError as exc:
        raise InputValidationError(task, [FieldError(name, str(exc))], what=name) from None


def dump_special(value: Any) -> dict[str, Any] | None:
    """The JSON form of a config value, to store with the run."""
    if value is None:
        return None
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return typing.cast(dict[str, Any], TypeAdapter(type(value)).dump_python(value, mode="json"))
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Enum):
        return {"value": value.value}
    return {"value": value}
