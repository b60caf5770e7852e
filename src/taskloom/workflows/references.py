"""References inside step inputs: a step's result (or an item or key of it), a workflow input.

In Python a reference is a `Ref` object (`listing.result`, `listing.result["paths"]`,
`wf.input("folder")`); in YAML or JSON it is text: `${steps.listing.result}`,
`${steps.listing.result.paths[0]}`, `${inputs.folder}`. A string that is exactly one
reference takes the referenced value as it is; a reference inside a longer string is
replaced by the value's text (`"${inputs.folder}/out"`). Inputs may nest references in
lists and objects. One model serves both forms: text is parsed into `Ref` and
`Interpolation` objects, and written back the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..exceptions import TaskloomError

__all__ = [
    "Interpolation",
    "Ref",
    "ReferenceSyntaxError",
    "dump_value",
    "parse_reference",
    "parse_value",
    "references_in",
    "resolve_value",
]

_REFERENCE = re.compile(r"\$\{([^}]*)\}")
_NAME = r"[A-Za-z_][A-Za-z0-9_-]*"
_HEAD = re.compile(rf"^(?:steps\.({_NAME})\.result|inputs\.({_NAME}))")
_PART = re.compile(r"\.([A-Za-z0-9_-]+)|\[(-?\d+)\]")


class ReferenceSyntaxError(TaskloomError, ValueError):
    """A reference's text cannot be read."""


@dataclass(frozen=True, slots=True)
class Ref:
    """A value that comes from elsewhere: `source` is `steps` or `inputs`, `name` the step
    or input, `path` the keys (str) and indexes (int) to follow into its value."""

    source: str
    name: str
    path: tuple[str | int, ...] = ()

    def __getitem__(self, key: str | int) -> Ref:
        return Ref(self.source, self.name, (*self.path, key))

    @property
    def text(self) -> str:
        head = f"steps.{self.name}.result" if self.source == "steps" else f"inputs.{self.name}"
        parts = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in self.path)
        return "${" + head + parts + "}"

    def __str__(self) -> str:
        return self.text

    def follow(self, value: Any) -> Any:
        """The part of `value` this reference's path names (raises `LookupError`)."""
        for part in self.path:
            if isinstance(part, int):
                if not isinstance(value, list):
                    raise LookupError(f"{self.text}: [{part}] needs a list, got {_kind(value)}")
                try:
                    value = value[part]
                except IndexError:
                    raise LookupError(
                        f"{self.text}: index {part} is out of range ({len(value)} items)"
                    ) from None
            else:
                if isinstance(value, dict):
                    if part not in value:
                        raise LookupError(f"{self.text}: no key {part!r} in the value")
                    value = value[part]
                elif isinstance(value, list) and part.isdigit():
                    value = value[int(part)]
                else:
                    raise LookupError(f"{self.text}: .{part} needs an object, got {_kind(value)}")
        return value


@dataclass(frozen=True, slots=True)
class Interpolation:
    """A string with references inside it: `parts` are literal strings and `Ref`s."""

    parts: tuple[str | Ref, ...]

    @property
    def text(self) -> str:
        return "".join(p if isinstance(p, str) else p.text for p in self.parts)


def parse_reference(text: str) -> Ref:
    """`steps.NAME.result[.key][[index]]...` or `inputs.NAME...` (without `${ }`)."""
    head = _HEAD.match(text.strip())
    if head is None:
        raise ReferenceSyntaxError(
            f"cannot read reference ${{{text}}}: expected ${{steps.STEP.result}} or "
            "${inputs.NAME}, optionally followed by .key or [index]"
        )
    ref = Ref("steps", head.group(1)) if head.group(1) else Ref("inputs", head.group(2))
    rest = text.strip()[head.end() :]
    position = 0
    path: list[str | int] = []
    while position < len(rest):
        part = _PART.match(rest, position)
        if part is None:
            raise ReferenceSyntaxError(f"cannot read reference ${{{text}}} at {rest[position:]!r}")
        path.append(part.group(1) if part.group(1) is not None else int(part.group(2)))
        position = part.end()
    return Ref(ref.source, ref.name, tuple(path))


def parse_value(value: Any) -> Any:
    """Turn the text references in a JSON-like value into `Ref` / `Interpolation` objects."""
    if isinstance(value, str):
        if "${" not in value:
            return value
        matches = list(_REFERENCE.finditer(value))
        if len(matches) == 1 and matches[0].span() == (0, len(value)):
            return parse_reference(matches[0].group(1))
        parts: list[str | Ref] = []
        position = 0
        for match in matches:
            if match.start() > position:
                parts.append(value[position : match.start()])
            parts.append(parse_reference(match.group(1)))
            position = match.end()
        if position < len(value):
            parts.append(value[position:])
        return Interpolation(tuple(parts)) if matches else value
    if isinstance(value, dict):
        return {key: parse_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [parse_value(item) for item in value]
    return value


def dump_value(value: Any) -> Any:
    """The JSON-like form of a value: references become their `${...}` text."""
    if isinstance(value, Ref | Interpolation):
        return value.text
    if isinstance(value, dict):
        return {key: dump_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [dump_value(item) for item in value]
    return value


def references_in(value: Any) -> Iterator[Ref]:
    """Every reference inside a value, in order."""
    if isinstance(value, Ref):
        yield value
    elif isinstance(value, Interpolation):
        yield from (p for p in value.parts if isinstance(p, Ref))
    elif isinstance(value, dict):
        for item in value.values():
            yield from references_in(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from references_in(item)


def resolve_value(value: Any, lookup: Callable[[Ref], Any]) -> Any:
    """Replace each reference in `value` by `lookup(ref)`; interpolated ones by their text."""
    if isinstance(value, Ref):
        return lookup(value)
    if isinstance(value, Interpolation):
        return "".join(p if isinstance(p, str) else _as_text(lookup(p)) for p in value.parts)
    if isinstance(value, dict):
        return {key: resolve_value(item, lookup) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [resolve_value(item, lookup) for item in value]
    return value


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
