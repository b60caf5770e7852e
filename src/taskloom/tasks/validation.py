"""Turning validation failures into messages a person can act on.

Both validators taskloom uses (pydantic for typed signatures, `jsonschema` for class tasks
that hand over a JSON Schema) report here in one form: a `FieldError` naming the field,
saying what was expected and what was sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jsonschema
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ..exceptions import FieldError, InputValidationError

__all__ = [
    "coerce_cli_value",
    "config_from_arguments",
    "field_errors_from_jsonschema",
    "field_errors_from_pydantic",
    "refuse_unstorable",
    "split_arguments",
    "unstorable_fields",
]

_EXPECTED: dict[str, str] = {
    "int_parsing": "expected an integer",
    "int_type": "expected an integer",
    "int_from_float": "expected an integer",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "bool_parsing": "expected a boolean (true/false)",
    "bool_type": "expected a boolean (true/false)",
    "string_type": "expected a string",
    "bytes_type": "expected bytes",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "set_type": "expected a list",
    "dict_type": "expected an object",
    "model_type": "expected an object",
    "dataclass_type": "expected an object",
    "model_attributes_type": "expected an object",
    "none_required": "expected null",
    "datetime_parsing": "expected a date and time (ISO 8601)",
    "datetime_type": "expected a date and time (ISO 8601)",
    "date_parsing": "expected a date (YYYY-MM-DD)",
    "date_from_datetime_parsing": "expected a date (YYYY-MM-DD)",
    "uuid_parsing": "expected a UUID",
}

_JSON_TYPE_NAMES = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "a boolean (true/false)",
    "array": "a list",
    "object": "an object",
    "null": "null",
}


def _dotted(loc: Iterable[Any]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif parts:
            parts.append(f".{item}")
        else:
            parts.append(str(item))
    return "".join(parts) or "(inputs)"


_PLAIN = frozenset({int, float, bool, type(None)})


def refuse_unstorable(task: str, values: Mapping[str, Any]) -> None:
    """Raise `InputValidationError` naming each field of `values` that cannot be stored.

    The common case (numbers and ASCII text at the top level) is decided without a walk.
    """
    for key, value in values.items():
        kind = type(value)
        if (kind in _PLAIN or (kind is str and value.isascii())) and key.isascii():
            continue
        errors = unstorable_fields(dict(values), hint=": send valid Unicode (UTF-8) text")
        if errors:
            raise InputValidationError(task, errors)
        return


def unstorable_fields(values: Any, *, hint: str = "") -> list[FieldError]:
    """The fields of JSON-compatible `values` that hold text UTF-8 cannot encode.

    A Python `str` may hold a lone surrogate (JSON's `"\\ud800"` decodes to one); no
    database can store it, and escaping it would change the input, so it is refused.
    """
    errors: list[FieldError] = []
    stack: list[tuple[tuple[Any, ...], Any]] = [((), values)]
    while stack:
        loc, value = stack.pop()
        if isinstance(value, str):
            at = None if value.isascii() else _lone_surrogate(value)
            if at is not None:
                errors.append(
                    FieldError(
                        _dotted(loc),
                        f"text holds a lone surrogate {value[at]!r} at position {at}, which "
                        f"UTF-8 cannot encode{hint}",
                    )
                )
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and not key.isascii() and _lone_surrogate(key) is not None:
                    errors.append(
                        FieldError(
                            _dotted((*loc, key)),
                            f"the key holds a lone surrogate, which UTF-8 cannot encode{hint}",
                        )
                    )
                stack.append(((*loc, key), item))
        elif isinstance(value, list | tuple):
            stack.extend(((*loc, index), item) for index, item in enumerate(value))
    errors.sort(key=lambda e: e.field)
    return errors


def _lone_surrogate(text: str) -> int | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def _got(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def field_errors_from_pydantic(
    exc: ValidationError, *, known_fields: Sequence[str] = (), strip_prefix: int = 0
) -> list[FieldError]:
    """Map pydantic's errors to fields; `strip_prefix` drops leading location parts."""
    errors: list[FieldError] = []
    for detail in exc.errors(include_url=False):
        loc = tuple(detail["loc"])[strip_prefix:]
        errors.append(
            FieldError(_dotted(loc), _pydantic_message(detail, known_fields), detail.get("input"))
        )
    return errors


def _pydantic_message(detail: ErrorDetails, known_fields: Sequence[str]) -> str:
    kind = detail["type"]
    value = detail.get("input")
    if kind == "missing":
        return "missing required input"
    if kind == "extra_forbidden":
        expected = f"; expected one of: {', '.join(known_fields)}" if known_fields else ""
        return f"unknown input{expected}"
    if kind in _EXPECTED:
        return f"{_EXPECTED[kind]}, got {_got(value)}"
    if kind in {"literal_error", "enum"}:
        ctx = detail.get("ctx") or {}
        return f"expected {ctx.get('expected', 'one of the allowed values')}, got {_got(value)}"
    # pydantic's own wording is clear for constraints (>=, max length, pattern, ...).
    msg = detail["msg"]
    return f"{msg[0].lower()}{msg[1:]}, got {_got(value)}"


def field_errors_from_jsonschema(
    schema: Mapping[str, Any],
    instance: Mapping[str, Any],
    validator: jsonschema.protocols.Validator,
) -> list[FieldError]:
    errors: list[FieldError] = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path)):
        path = list(error.absolute_path)
        kind = error.validator
        if kind == "required":
            missing = _missing_property(error.message)
            errors.append(FieldError(_dotted([*path, missing]), "missing required input"))
        elif kind == "additionalProperties":
            known = list(
                (error.schema.get("properties") or {}) if isinstance(error.schema, dict) else []
            )
            extra = _extra_properties(error.message)
            hint = f"; expected one of: {', '.join(known)}" if known else ""
            for name in extra:
                errors.append(FieldError(_dotted([*path, name]), f"unknown input{hint}"))
        elif kind == "type":
            expected: Any = error.validator_value
            names = [expected] if isinstance(expected, str) else list(expected)
            text = " or ".join(_JSON_TYPE_NAMES.get(n, n) for n in names)
            errors.append(
                FieldError(
                    _dotted(path), f"expected {text}, got {_got(error.instance)}", error.instance
                )
            )
        elif kind == "enum":
            allowed: Any = error.validator_value
            choices = ", ".join(repr(c) for c in allowed)
            errors.append(
                FieldError(
                    _dotted(path),
                    f"expected one of {choices}, got {_got(error.instance)}",
                    error.instance,
                )
            )
        else:
            errors.append(FieldError(_dotted(path), f"{error.message}", error.instance))
    return errors


def _missing_property(message: str) -> str:
    # jsonschema says: "'name' is a required property"
    if message.startswith("'") and "'" in message[1:]:
        return message[1 : message.index("'", 1)]
    return message


def _extra_properties(message: str) -> list[str]:
    # jsonschema says: "Additional properties are not allowed ('x', 'y' were unexpected)"
    start, end = message.find("("), message.rfind(" were unexpected")
    if end < 0:
        end = message.rfind(" was unexpected")
    if start < 0 or end < 0:
        return [message]
    return [part.strip().strip("'") for part in message[start + 1 : end].split(",")]


def _accepts_string(schema: Mapping[str, Any]) -> bool:
    if not schema:
        return True
    kind = schema.get("type")
    if kind == "string" or (isinstance(kind, list) and "string" in kind):
        return True
    if "enum" in schema and all(isinstance(v, str) for v in schema["enum"]):
        return True
    if "const" in schema:
        return isinstance(schema["const"], str)
    for key in ("anyOf", "oneOf"):
        if any(_accepts_string(sub) for sub in schema.get(key, ())):
            return True
    return False


def coerce_cli_value(raw: str, property_schema: Mapping[str, Any] | None) -> Any:
    """Turn a command-line `key=value` value into the input to validate.

    A field that accepts text keeps the text as it was typed. Any other field reads the
    value as JSON when it parses (`3`, `true`, `[1, 2]`, `{"a": 1}`), else keeps the text,
    so that validation names the field and quotes what was typed.
    """
    if property_schema is not None and _accepts_string(property_schema):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def split_arguments(
    values: Sequence[str], *, what: str = "--config"
) -> tuple[list[Any], dict[str, str]]:
    """Command-line values as JSON objects (`{"step": 5}`) and `KEY=VALUE` pairs, the
    pairs' values as typed. Raises `ValueError` saying what is wrong."""
    objects: list[Any] = []
    pairs: dict[str, str] = {}
    for value in values:
        text = value.strip()
        if text.startswith("{"):
            try:
                objects.append(json.loads(text))
            except ValueError as exc:
                raise ValueError(f"{what} is not valid JSON: {exc}") from exc
            continue
        key, sep, raw = value.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"expected {what} as a JSON object or KEY=VALUE, got {value!r}")
        pairs[key] = raw
    return objects, pairs


def config_from_arguments(values: Sequence[str], *, what: str = "--config") -> dict[str, Any]:
    """A config from command-line values: JSON objects (`{"step": 5}`) and `KEY=VALUE`
    pairs (`step=5`), later ones winning; a VALUE is read as JSON (`5`, `true`, `[1, 2]`)
    unless it is text, which needs no quotes. Raises `ValueError` saying what is wrong
    (the caller names the task, stage or service it is for)."""
    config: dict[str, Any] = {}
    for value in values:
        objects, pairs = split_arguments([value], what=what)
        for parsed in objects:
            if not isinstance(parsed, dict):
                raise ValueError(f"expected {what} as a JSON object, got {value!r}")
            config.update(parsed)
        for key, raw in pairs.items():
            try:
                config[key] = json.loads(raw)
            except ValueError:
                config[key] = raw  # text needs no quotes
    return config
