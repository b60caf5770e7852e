"""Values made ready for JSON responses: enums as their values, tuples as lists."""

from __future__ import annotations

from typing import Any

from pydantic_core import to_jsonable_python

__all__ = ["jsonable"]


def jsonable(value: Any) -> Any:
    """`value` as plain JSON types; anything not JSON (a task's odd result) becomes text."""
    return to_jsonable_python(value, fallback=repr)
