"""The live attributes of a service class: which they are, their schema, their checks.

A `Service` class with loops holds public attributes, as pydase's services do: declared
with an annotation and a default (`readout_frequency: float = 1.0`, or with a pydantic
`Field(1.0, gt=0)`), or assigned in `__init__` (`self.readout_frequency = 1.0`, typed by
its value). They are found once the instance is made, when the class is registered. Every
new value is validated by pydantic against the attribute's type; a value is kept as
JSON, so a value JSON cannot hold (NaN, an object) is refused too.
"""

from __future__ import annotations

import inspect
import json
import math
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any

from pydantic import ConfigDict, Field, PydanticSchemaGenerationError, TypeAdapter, ValidationError
from pydantic import create_model as create_pydantic_model
from pydantic.errors import PydanticUserError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticSerializationError, PydanticUndefined

from ..exceptions import FieldError, TaskDefinitionError
from ..tasks.validation import coerce_cli_value, field_errors_from_pydantic
from .errors import AttributeValidationError

__all__ = ["Attribute", "AttributeSet", "attributes_of"]

#: Names a service class uses for itself, never attributes.
RESERVED = frozenset({"name", "description", "context"})


@dataclass(frozen=True, slots=True)
class Attribute:
    """One live attribute: its type as pydantic checks it and its default (the value it
    had once the instance was made)."""

    name: str
    annotation: Any
    adapter: TypeAdapter[Any]
    default: Any
    description: str | None = None


class AttributeSet:
    """The attributes of one service class, with their JSON Schema and their checks."""

    def __init__(self, service: str, attributes: Iterable[Attribute]) -> None:
        self.service = service
        self._by_name = {a.name: a for a in attributes}

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __len__(self) -> int:
        return len(self._by_name)

    @cached_property
    def schema(self) -> dict[str, Any]:
        """A JSON Schema object with one property per attribute (its `default` the
        default's JSON form), no others allowed."""
        fields: dict[str, Any] = {}
        for index, attribute in enumerate(self._by_name.values()):
            # Named a0, a1, ... inside and aliased, so an attribute may be called `json`
            # or `schema` without clashing with pydantic's own names.
            field = Field(
                default=self.dump(attribute.name, attribute.default),
                alias=attribute.name,
                title=attribute.name,
                description=attribute.description,
            )
            fields[f"a{index}"] = (attribute.annotation, field)
        model = create_pydantic_model(
            f"{self.service.replace('.', '_')}Attributes",
            __config__=ConfigDict(extra="forbid"),
            **fields,
        )
        schema: dict[str, Any] = model.model_json_schema(by_alias=True)
        schema["title"] = self.service
        return schema

    def check(self, values: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
        """Each value as the attribute holds it (validated, coerced) and its JSON form;
        every attribute at fault, unknown ones included, is named in one
        `AttributeValidationError`."""
        if not isinstance(values, Mapping):
            problem = FieldError(
                "(attributes)", f"expected an object of attribute values, got {values!r}"
            )
            raise AttributeValidationError(self.service, [problem])
        checked: dict[str, tuple[Any, Any]] = {}
        errors: list[FieldError] = []
        for name, value in values.items():
            if name not in self._by_name:
                known = ", ".join(self._by_name) or "none"
                errors.append(
                    FieldError(str(name), f"unknown attribute; attributes: {known}", value)
                )
                continue
            try:
                checked[name] = self.checked(name, value)
            except AttributeValidationError as exc:
                errors.extend(exc.errors)
        if errors:
            raise AttributeValidationError(self.service, errors)
        return checked

    def check_one(self, name: str, value: Any) -> Any:
        """One attribute's new value, validated; `AttributeValidationError` if invalid."""
        return self.checked(name, value)[0]

    def checked(self, name: str, value: Any) -> tuple[Any, Any]:
        """One attribute's new value, validated, and its JSON form."""
        attribute = self._by_name[name]
        try:
            checked = attribute.adapter.validate_python(value)
        except ValidationError as exc:
            errors = [
                FieldError(
                    f"{name}.{e.field}" if e.field != "(inputs)" else name, e.message, e.value
                )
                for e in field_errors_from_pydantic(exc)
            ]
            raise AttributeValidationError(self.service, errors) from None
        try:
            dumped = attribute.adapter.dump_python(checked, mode="json")
            if not _plain_json(dumped):
                json.dumps(dumped, allow_nan=False)
        except (ValueError, TypeError, PydanticSerializationError):
            problem = FieldError(name, f"expected a value JSON can hold, got {value!r}", value)
            raise AttributeValidationError(self.service, [problem]) from None
        return checked, dumped

    def from_texts(self, texts: Mapping[str, str]) -> dict[str, Any]:
        """Values typed on a command line (`rate=2`), read as each attribute's type reads
        text: kept as text where it accepts text, else as JSON when it parses."""
        properties = self.schema.get("properties", {})
        values = {}
        for name, raw in texts.items():
            found = properties.get(name)
            values[name] = coerce_cli_value(
                str(raw), None if found is None else self._resolved(found)
            )
        return values

    def _resolved(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        """A property's schema, its `$ref` into `$defs` followed (an enum, a model)."""
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return dict(self.schema.get("$defs", {}).get(ref.removeprefix("#/$defs/"), {}))
        return schema

    def dump(self, name: str, value: Any) -> Any:
        """The JSON form of an attribute's value."""
        return self._by_name[name].adapter.dump_python(value, mode="json")

    def dump_all(self, instance: object) -> dict[str, Any]:
        """The JSON form of every attribute as the instance holds it now."""
        return {name: self.dump(name, getattr(instance, name)) for name in self._by_name}

    def default(self, name: str) -> Any:
        """An attribute's default, as the attribute holds it."""
        return self._by_name[name].default

    def defaults(self) -> dict[str, Any]:
        """The JSON form of every attribute's default."""
        return {name: self.dump(name, a.default) for name, a in self._by_name.items()}


def attributes_of(service: str, cls: type, instance: object) -> AttributeSet:
    """The attributes of a service class, found on the class and on an instance just made.

    Annotated public names (not `ClassVar`s, methods or properties) are attributes; their
    default is what `__init__` assigned, else the class's value (a pydantic `Field` too).
    Public names `__init__` assigned without an annotation are attributes typed by their
    value, when pydantic can check and describe that type (a device handle is not one).
    """
    found: list[Attribute] = []
    hints = _hints(service, cls)
    assigned = dict(vars(instance))
    for name, hint in hints.items():
        info: FieldInfo | None = None
        if name in assigned:
            default = assigned[name]
        else:
            default = inspect.getattr_static(cls, name, PydanticUndefined)
        if isinstance(default, FieldInfo):
            info = default
            default = (
                info.default_factory()  # type: ignore[call-arg]
                if info.default_factory is not None
                else info.default
            )
        if default is PydanticUndefined:
            raise TaskDefinitionError(
                f"service {service!r}: attribute {name!r} has no default; give it one "
                f"({name}: ... = value) or assign it in __init__"
            )
        annotation = hint if info is None else Annotated[hint, info]
        adapter = _adapter(service, name, annotation)
        found.append(_checked(service, name, annotation, adapter, default, info))
    for name, value in assigned.items():
        if name.startswith("_") or name in hints or name in RESERVED:
            continue
        annotation = Any if value is None else type(value)
        try:
            adapter = TypeAdapter(annotation)
            adapter.json_schema()
        except (PydanticSchemaGenerationError, PydanticUserError, TypeError):
            continue  # not a value pydantic can check: a plain attribute, not a live one
        found.append(_checked(service, name, annotation, adapter, value, None))
    return AttributeSet(service, found)


def _hints(service: str, cls: type) -> dict[str, Any]:
    """The public annotated names of `cls` and of its bases up to `Service`, resolved."""
    from .definition import Service  # the base class is defined with this module's user

    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or klass is Service or not issubclass(klass, Service):
            continue
        try:
            own = inspect.get_annotations(klass, eval_str=True)
        except Exception as exc:
            raise TaskDefinitionError(
                f"service {service!r}: the annotations of {klass.__qualname__} cannot be "
                f"read: {exc}"
            ) from exc
        for name, hint in own.items():
            if name.startswith("_") or name in RESERVED or _is_class_var(hint):
                continue
            static = inspect.getattr_static(cls, name, None)
            if callable(static) or isinstance(static, property | staticmethod | classmethod):
                continue
            hints[name] = hint
    return hints


def _plain_json(value: Any) -> bool:
    """A value JSON holds as it is, seen at once (most attributes are one): text, a
    boolean, an integer, a finite number, null. Anything else is asked of `json`."""
    if value is None or isinstance(value, str | bool | int):
        return True
    return isinstance(value, float) and math.isfinite(value)


def _is_class_var(hint: Any) -> bool:
    return hint is typing.ClassVar or typing.get_origin(hint) is typing.ClassVar


def _adapter(service: str, name: str, annotation: Any) -> TypeAdapter[Any]:
    try:
        adapter: TypeAdapter[Any] = TypeAdapter(annotation)
        adapter.json_schema()
    except (PydanticSchemaGenerationError, PydanticUserError, TypeError) as exc:
        raise TaskDefinitionError(
            f"service {service!r}: attribute {name!r}: its type {annotation!r} cannot be "
            f"checked and shown ({exc}); use a type pydantic knows"
        ) from exc
    return adapter


def _checked(
    service: str,
    name: str,
    annotation: Any,
    adapter: TypeAdapter[Any],
    default: Any,
    info: FieldInfo | None,
) -> Attribute:
    """The attribute, its default validated: a default its own type refuses is a mistake
    in the class, told when it is registered."""
    attribute = Attribute(name, annotation, adapter, default, info.description if info else None)
    probe = AttributeSet(service, [attribute])
    try:
        value = probe.check_one(name, default)
    except AttributeValidationError as exc:
        raise TaskDefinitionError(f"the default of {exc}") from None
    return Attribute(name, annotation, adapter, value, attribute.description)
