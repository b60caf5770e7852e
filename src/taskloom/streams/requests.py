"""A pipeline a request names or gives, resolved among the tasks a server serves.

A pipeline comes in the data form `taskloom pipeline deploy FILE.yaml` reads (a JSON
object, or the YAML or JSON text of a file), or as the name of a `taskloom.Pipeline`
defined at module level in the served files. A stage's `task` must be a served task, by
its name, by its `module:attr` reference, or as `file.py:attr` where the file is a
served module; anything else is refused (`WiringError`, naming the stage) and never
imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..documents import DocumentLimitError, check_depth, load_yaml
from ..tasks.definition import TaskDefinition
from ..tasks.registry import Registry
from ..workflows.model import task_reference
from .errors import WiringError
from .pipeline import STAGE_KEYS, Pipeline, keep_topics

__all__ = ["pipeline_from_request", "served_task"]


def served_task(registry: Registry, reference: str) -> TaskDefinition | None:
    """The served task `reference` names (its name, `module:attr`, or `file.py:attr`
    of a served module); None for any other."""
    found = registry.find(reference)
    if found is not None:
        return found
    module_part, _, attr = reference.partition(":")
    for definition in registry:
        if task_reference(definition) == reference:
            return definition
        module = definition.module or ""
        if (
            module_part.endswith(".py")
            and attr == definition.qualname
            and Path(module_part).stem == module.rpartition(".")[2]
        ):
            return definition
    return None


def _from_data(registry: Registry, data: Any) -> Pipeline:
    """A pipeline from its data form, with stages resolved among the served tasks only."""
    if not isinstance(data, Mapping) or "name" not in data:
        raise WiringError("pipeline", ["give a `name` and a list of `stages`"])
    pipeline = Pipeline(str(data["name"]))
    stages = data.get("stages")
    if not isinstance(stages, list) or not stages:
        raise WiringError(pipeline.name, ["`stages` must be a non-empty list"])
    problems: list[str] = []
    try:
        keep_topics(pipeline, data.get("keep"))
    except WiringError as exc:
        problems.extend(exc.problems)
    for index, entry in enumerate(stages):
        where = f"stages[{index}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("task"), str):
            problems.append(f"{where}: needs `task`, the name of a served task")
            continue
        unknown = sorted(str(k) for k in set(entry) - STAGE_KEYS)
        if unknown:
            problems.append(f"{where}: unknown key(s) {', '.join(unknown)}")
            continue
        task = served_task(registry, entry["task"])
        if task is None:
            served = ", ".join(sorted(registry.names)) or "none"
            problems.append(
                f"{where}: unknown task {entry['task']!r}: this server runs only the tasks "
                f"it serves ({served})"
            )
            continue
        options = {str(k): v for k, v in entry.items() if k != "task"}
        try:
            pipeline.stage(task, **options)
        except WiringError as exc:
            problems.extend(f"{where}: {p}" for p in exc.problems)
        except TypeError as exc:  # a wrongly typed option (a list for `name`, ...)
            problems.append(f"{where}: {exc}")
    if problems:
        raise WiringError(pipeline.name, problems)
    return pipeline


def pipeline_from_request(
    given: dict[str, Any] | str, *, registry: Registry, served: Mapping[str, Pipeline]
) -> Pipeline:
    """The pipeline a request names (one of `served`) or gives (YAML text: read without
    aliases and no deeper than 64 levels; any data form: no deeper than 64 levels),
    its stages among `registry`'s tasks. Raises `WiringError`. Blocking: text takes a
    while to read."""
    data: Any = given
    if isinstance(given, str):
        if given in served:
            return served[given]
        try:
            data = load_yaml(given)
        except (DocumentLimitError, yaml.YAMLError) as exc:
            raise WiringError("pipeline", [f"cannot parse the text: {exc}"]) from None
        if isinstance(data, str):
            known = ", ".join(sorted(served)) or "none"
            raise WiringError("pipeline", [f"no served pipeline named {given!r} (served: {known})"])
    try:
        check_depth(data)
    except DocumentLimitError as exc:
        raise WiringError("pipeline", [f"{exc}; flatten the data"]) from None
    return _from_data(registry, data)
