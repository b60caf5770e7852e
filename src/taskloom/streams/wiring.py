"""Wiring checks: what makes a pipeline deployable, found before anything runs.

Every producer of a topic is checked against every consumer: their types must be able
to match, and the metadata dicts of their ports (`Annotated[bytes, {"content": "video"}]`)
must agree on every key both name.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, get_args, get_origin

from ..tasks.definition import FunctionTask
from ..tasks.signature import Port, config_metadata_fields
from .stages import StageSpec

__all__ = ["check_stages", "compatible", "metadata_differences", "type_name"]

TOPIC_NAME = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def type_name(annotation: Any) -> str:
    if annotation is Any:
        return "Any"
    if isinstance(annotation, type) and not get_args(annotation):
        return annotation.__name__
    return repr(annotation).replace("typing.", "")


def compatible(produced: Any, consumed: Any) -> bool:
    """Whether values of type `produced` can feed a port of type `consumed`."""
    if produced is Any or consumed is Any or consumed is object or produced == consumed:
        return True
    if _is_union(consumed):
        return any(compatible(produced, option) for option in get_args(consumed))
    if _is_union(produced):
        return all(compatible(option, consumed) for option in get_args(produced))
    if consumed is float and produced is int:
        return True
    produced_origin = get_origin(produced) or produced
    consumed_origin = get_origin(consumed) or consumed
    if not (isinstance(produced_origin, type) and isinstance(consumed_origin, type)):
        return False
    if not issubclass(produced_origin, consumed_origin):
        return False
    produced_args, consumed_args = get_args(produced), get_args(consumed)
    if not produced_args or not consumed_args or len(produced_args) != len(consumed_args):
        return True  # `list` feeds `list[int]` and back: the values are checked as they arrive
    return all(compatible(p, c) for p, c in zip(produced_args, consumed_args, strict=True))


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (typing.Union, types.UnionType)


def port_metadata(port: Port, config: Any = None) -> dict[str, Any]:
    """A port's metadata: its dicts merged, then the fields its metadata takes from the
    stage's config (`["width"]` gives `width` the config's value)."""
    merged: dict[str, Any] = {}
    for item in port.metadata:
        if isinstance(item, Mapping):
            merged.update(item)
    if config is not None:
        for name in config_metadata_fields(port.metadata):
            merged[name] = getattr(config, name)
    return merged


def metadata_differences(
    produced: Port, consumed: Port, produced_config: Any = None, consumed_config: Any = None
) -> list[str]:
    """`key produced != consumed` for each metadata key both ports name with other values."""
    mine = port_metadata(produced, produced_config)
    theirs = port_metadata(consumed, consumed_config)
    return [
        f"{key} {mine[key]!r} != {theirs[key]!r}"
        for key in mine
        if key in theirs and mine[key] != theirs[key]
    ]


def _required_inputs(spec: StageSpec) -> list[str]:
    if not isinstance(spec.task, FunctionTask):
        return list(spec.input_ports)
    parameters = inspect.signature(spec.task.fn).parameters
    return [
        name
        for name in spec.input_ports
        if name in parameters and parameters[name].default is inspect.Parameter.empty
    ]


def check_stages(stages: list[StageSpec], configs: Mapping[str, Any] | None = None) -> list[str]:
    """Every problem of the wiring, each naming its stage, port, topic and fields
    (`configs`: each stage's validated config, for metadata taken from it)."""
    problems: list[str] = []
    seen: set[str] = set()
    for spec in stages:
        where = f"stage {spec.name!r}"
        if not NAME.match(spec.name):
            problems.append(f"{where}: a stage name uses letters, digits, '_' and '-' only")
        if spec.name in seen:
            problems.append(f"{where}: two stages have this name; give one another `name`")
        seen.add(spec.name)
        problems.extend(f"{where}: {p}" for p in spec.problems)
        for port, topic in {**spec.inputs, **spec.outputs}.items():
            if not TOPIC_NAME.match(topic):
                problems.append(
                    f"{where} port {port!r}: topic {topic!r} is not a valid name (use "
                    "letters, digits, '_' and '-', in parts separated by dots)"
                )
        if spec.kind == "source" and spec.inputs:
            problems.append(f"{where}: a source (async generator) takes no inputs")
            continue
        for port in spec.inputs:
            if port not in spec.input_ports:
                known = ", ".join(spec.input_ports) or "none"
                problems.append(f"{where}: input {port!r} does not exist (inputs: {known})")
        for port in _required_inputs(spec):
            if port not in spec.inputs and spec.kind != "source":
                problems.append(f"{where}: input {port!r} is not wired to a topic")
    problems.extend(_check_topics(stages, configs or {}))
    return problems


def _check_topics(stages: list[StageSpec], configs: Mapping[str, Any]) -> list[str]:
    producers: dict[str, list[tuple[StageSpec, Port]]] = {}
    for spec in stages:
        for port, topic in spec.outputs.items():
            producers.setdefault(topic, []).append((spec, spec.output_ports[port]))
    problems: list[str] = []
    for consumer in stages:
        for port_name, topic in consumer.inputs.items():
            consumed = consumer.input_ports.get(port_name)
            if consumed is None:
                continue
            for producer, produced in producers.get(topic, []):
                pair = (
                    f"topic {topic!r}: stage {producer.name!r} output {produced.name!r} -> "
                    f"stage {consumer.name!r} input {port_name!r}"
                )
                if not compatible(produced.annotation, consumed.annotation):
                    problems.append(
                        f"{pair}: type {type_name(produced.annotation)} cannot feed "
                        f"{type_name(consumed.annotation)}"
                    )
                differences = metadata_differences(
                    produced, consumed, configs.get(producer.name), configs.get(consumer.name)
                )
                if differences:
                    problems.append(f"{pair}: metadata differs: {', '.join(differences)}")
    return problems
