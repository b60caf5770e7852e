"""Reading the YAML and JSON documents that users and clients give, within bounds.

A workflow or a pipeline arrives as text (a file, a request body). The text is read
without aliases (a few lines of `*name` can stand for an exponential amount of data),
no deeper than `MAX_DEPTH` levels (a parser, and the code that walks the value after it,
recurses once per level: 900 levels of `[` end in a `RecursionError`), and, where the
caller says so, with at most so many members in one mapping (a workflow's `steps`), so a
document far too large is refused while it is read, before it is built in memory.

YAML is read by libyaml's parser when PyYAML has it (events in C), composed here (in
Python: the place to count and bound).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import yaml
import yaml.cyaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import Event
from yaml.nodes import MappingNode, Node, ScalarNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

__all__ = [
    "MAX_DEPTH",
    "DocumentLimitError",
    "TooManyMembersError",
    "check_depth",
    "count_json_members",
    "load_json",
    "load_yaml",
]

#: Levels of nesting a document may have (the top mapping is level 1): far more than any
#: workflow or pipeline needs, far fewer than a recursion limit.
MAX_DEPTH = 64


class DocumentLimitError(ValueError):
    """A document is nested deeper than allowed, or has more members than allowed."""


class TooManyMembersError(DocumentLimitError):
    """The mapping under a top-level key has more members than allowed (counting stopped
    at `limit` + 1: the rest was not read)."""

    def __init__(self, key: str, limit: int, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.limit = limit


class _PythonParser(Reader, Scanner, Parser):
    """PyYAML's own parser, where it was built without libyaml."""

    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)


_Parser: type = (
    getattr(yaml.cyaml, "CParser", _PythonParser) if yaml.__with_libyaml__ else _PythonParser
)


class _BoundedComposer(Composer):
    """PyYAML's composer, counting depth (and the members of one top-level mapping)."""

    max_depth: int = MAX_DEPTH
    counted_key: str | None = None
    max_members: int = 0
    _depth: int = 0
    _root: MappingNode | None = None
    _count_next = False  # the mapping about to be composed is the counted one

    if TYPE_CHECKING:  # given by the parser and the resolver mixed in with it

        def check_event(self, *choices: type[Event]) -> bool: ...
        def peek_event(self) -> Any: ...
        def get_event(self) -> Any: ...
        def resolve(self, kind: type[Node], value: Any, implicit: Any) -> str: ...

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise DocumentLimitError(f"aliases (*name) are not accepted ({_where(mark)})")
        if self._depth >= self.max_depth:
            mark = self.peek_event().start_mark
            raise DocumentLimitError(f"nested deeper than {self.max_depth} levels ({_where(mark)})")
        self._count_next = (
            self.counted_key is not None
            and parent is not None
            and parent is self._root
            and isinstance(index, ScalarNode)
            and index.value == self.counted_key
        )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_mapping_node(self, anchor: Any) -> MappingNode:
        # Composer.compose_mapping_node, with the root remembered before its members are
        # composed (they look for it) and the counted mapping's members counted as read.
        counted, self._count_next = self._count_next, False
        start = self.get_event()
        tag = start.tag
        if tag is None or tag == "!":
            tag = self.resolve(MappingNode, None, start.implicit)
        node = MappingNode(tag, [], start.start_mark, None, flow_style=start.flow_style)
        if anchor is not None:
            self.anchors[anchor] = node
        if self._root is None and self._depth == 1:
            self._root = node
        while not self.check_event(yaml.MappingEndEvent):
            if counted and len(node.value) >= self.max_members:
                mark = self.peek_event().start_mark
                raise TooManyMembersError(
                    self.counted_key or "",
                    self.max_members,
                    f"more than {self.max_members:,} entries under {self.counted_key!r} "
                    f"({_where(mark)})",
                )
            key = self.compose_node(node, None)
            value = self.compose_node(node, key)
            node.value.append((key, value))
        node.end_mark = self.get_event().end_mark
        return node


class _BoundedLoader(_Parser, _BoundedComposer, SafeConstructor, Resolver):  # type: ignore[misc]
    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)  # type: ignore[misc]
        _BoundedComposer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)

    # The composer above, not libyaml's own (which neither counts nor bounds).
    get_single_node = _BoundedComposer.get_single_node
    check_node = _BoundedComposer.check_node
    get_node = _BoundedComposer.get_node

    def construct_finite_float(self, node: Node) -> float:
        """A YAML float, refused when it is `.nan` or `.inf`: JSON (and so a run's inputs
        and the store) has no such numbers."""
        value: float = SafeConstructor.construct_yaml_float(self, node)  # type: ignore[arg-type]
        if not math.isfinite(value):
            raise ConstructorError(
                None,
                None,
                f"{node.value!r} is not a finite number (JSON has no NaN or Infinity)",
                node.start_mark,
            )
        return value


_BoundedLoader.add_constructor("tag:yaml.org,2002:float", _BoundedLoader.construct_finite_float)


def load_yaml(
    text: str,
    *,
    max_depth: int = MAX_DEPTH,
    counted_key: str | None = None,
    max_members: int = 0,
) -> Any:
    """The value of one YAML document (safe types only, no aliases).

    With `counted_key`, the mapping under that key of the top mapping may have at most
    `max_members` members (`TooManyMembersError`). Raises `DocumentLimitError` or
    `yaml.YAMLError`.
    """
    loader = _BoundedLoader(text)
    loader.max_depth = max_depth
    loader.counted_key = counted_key
    loader.max_members = max_members
    try:
        return loader.get_single_data()
    except RecursionError:  # a very low recursion limit; the depth bound comes first
        raise DocumentLimitError("nested too deeply to read") from None
    finally:
        loader.dispose()


def load_json(text: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """The value of a JSON text, no deeper than `max_depth` (raises `ValueError`)."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise DocumentLimitError(f"nested deeper than {max_depth} levels") from None
    check_depth(value, max_depth)
    return value


_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
# The decoder's own string reader (C), typed here: the stubs leave it out.
_scanstring: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]


def count_json_members(text: str, path: Sequence[str], limit: int) -> int | None:
    """How many members the object at `path` (keys of nested objects from the top) of a
    JSON text has, read one member at a time and never more than `limit` + 1 of them:
    `TooManyMembersError` past `limit`. None when the text has no such object or is not
    JSON (the full parse that follows says what is wrong).

    Each member's value is decoded (in C) and dropped at once, so a text with a million
    members costs what `limit` of them cost, not a million objects in memory.
    """
    try:
        return _count_members(text, list(path), limit)
    except TooManyMembersError:
        raise
    except (ValueError, IndexError, RecursionError):
        return None


def _count_members(text: str, path: list[str], limit: int) -> int | None:
    space, decode, scan = _skip_space, _DECODER.raw_decode, _scanstring
    position = space(text, 0)
    depth = 0
    while True:  # in the object at position: find the key path[depth], or count members
        if text[position] != "{":
            return None
        position = space(text, position + 1)
        counting = depth == len(path)
        count = 0
        while text[position] != "}":
            if text[position] != '"':
                return None
            key, position = scan(text, position + 1)
            position = space(text, position)
            if text[position] != ":":
                return None
            position = space(text, position + 1)
            if not counting and key == path[depth]:
                depth += 1
                break  # descend into this value
            if counting:
                count += 1
                if count > limit:
                    raise TooManyMembersError(
                        path[-1], limit, f"more than {limit:,} entries under {path[-1]!r}"
                    )
            _, position = decode(text, position)
            position = space(text, position)
            if text[position] == ",":
                position = space(text, position + 1)
        else:
            return count if counting else None


def _skip_space(text: str, position: int) -> int:
    match = _SPACE.match(text, position)
    return position if match is None else match.end()


def check_depth(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """Refuse a value (dicts and lists) nested deeper than `max_depth` levels, walked
    without recursion (`DocumentLimitError` naming where)."""
    if not isinstance(value, dict | list):
        return
    stack: list[tuple[Iterator[Any], int, str]] = [(_children(value), 1, "")]
    while stack:
        children, depth, path = stack[-1]
        for key, child in children:
            if isinstance(child, dict | list):
                where = f"{path}.{key}" if isinstance(key, str) else f"{path}[{key}]"
                if depth + 1 > max_depth:
                    raise DocumentLimitError(
                        f"nested deeper than {max_depth} levels (at {where.lstrip('.')})"
                    )
                stack.append((_children(child), depth + 1, where))
                break
        else:
            stack.pop()


def _children(value: dict[Any, Any] | list[Any]) -> Iterator[Any]:
    return iter(value.items()) if isinstance(value, dict) else enumerate(value)


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "?"
