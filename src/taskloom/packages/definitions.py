"""From a package record to the tasks it registers, named `<package>/<task>`.

A taskloom manifest gives one command task per task. A Fractal manifest gives, per entry
of its `task_list` (named by a slug of the entry's name):

- `non_parallel`: a command task `<pkg>/<slug>`;
- `parallel`: an operation `<pkg>/<slug>` and its per-image command `<pkg>/<slug>.parallel`;
- `compound`: an operation `<pkg>/<slug>`, its init command `<pkg>/<slug>.init` and its
  compute command `<pkg>/<slug>.compute`.

Each command runs the script with the package's own interpreter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..store import PackageRecord, PackageStore
from ..tasks.definition import TaskDefinition
from ..tasks.options import TaskOptions
from .command import CommandTask
from .errors import ManifestError
from .fractal import FractalOperation

__all__ = ["executables_of", "find_package_task", "normalize_name", "package_tasks", "slug"]


def normalize_name(name: str) -> str:
    """A distribution name as packaging normalises it: lowercase, runs of `-_.` as `-`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def slug(name: str) -> str:
    """A Fractal task name ("Threshold Image") as a task name part ("threshold_image")."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "task"


def executables_of(kind: str, manifest: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(task, executable) for every executable a manifest names."""
    found: list[tuple[str, str]] = []
    if kind == "taskloom":
        for entry in manifest.get("tasks") or []:
            if entry.get("executable"):
                found.append((entry["name"], entry["executable"]))
        return found
    for entry in manifest.get("task_list") or []:
        for key in ("executable_non_parallel", "executable_parallel"):
            if entry.get(key):
                found.append((entry.get("name", "?"), entry[key]))
    return found


def package_tasks(record: PackageRecord) -> list[TaskDefinition]:
    """The tasks a ready package registers."""
    if record.python is None or record.root is None or not isinstance(record.manifest, dict):
        raise ManifestError(f"package {record.name!r} is not installed (state {record.state})")
    python, root = record.python, Path(record.root)
    if record.manifest_kind == "taskloom":
        return _taskloom_tasks(record.name, python, root, record.manifest)
    if record.manifest_kind == "fractal":
        return _fractal_tasks(record.name, python, root, record.manifest)
    raise ManifestError(f"package {record.name!r}: unknown manifest kind {record.manifest_kind!r}")


def _taskloom_tasks(
    package: str, python: str, root: Path, manifest: Mapping[str, Any]
) -> list[TaskDefinition]:
    tasks: list[TaskDefinition] = []
    for entry in manifest.get("tasks") or []:
        executable = entry.get("executable")
        if not executable:
            continue  # a task without a run_cli entry point cannot run in its own venv
        options = TaskOptions(
            tags=tuple(entry.get("tags") or ()),
            meta=dict(entry.get("meta") or {}),
            timeout=entry.get("timeout"),
        )
        tasks.append(
            CommandTask(
                f"{package}/{entry['name']}",
                [python, str(root / executable)],
                contract=entry.get("contract", "v2"),
                input_schema=entry.get("input_schema"),
                output_schema=entry.get("output_schema"),
                label=entry.get("label"),
                description=entry.get("description") or "",
                options=options,
                package=package,
            )
        )
    return tasks


def _fractal_tasks(
    package: str, python: str, root: Path, manifest: Mapping[str, Any]
) -> list[TaskDefinition]:
    tasks: list[TaskDefinition] = []
    for entry in manifest.get("task_list") or []:
        name = f"{package}/{slug(str(entry.get('name', '')))}"
        kind = entry.get("type") or (
            "compound"
            if entry.get("executable_non_parallel") and entry.get("executable_parallel")
            else "parallel"
            if entry.get("executable_parallel")
            else "non_parallel"
        )
        description = str(entry.get("docs_info") or "")
        tags = tuple(entry.get("tags") or ())
        where = _Where(package, python, root, name, description, tags)

        if kind in ("non_parallel", "converter_non_parallel"):
            tasks.append(_command(where, entry, "", "non_parallel"))
        elif kind == "parallel":
            compute = _command(where, entry, ".parallel", "parallel")
            tasks += [
                FractalOperation(
                    name,
                    fractal_type="parallel",
                    compute=compute,
                    label=entry.get("name"),
                    description=description,
                    options=TaskOptions(tags=tags),
                    package=package,
                ),
                compute,
            ]
        elif kind == "compound":
            init, compute = (
                _command(where, entry, ".init", "non_parallel"),
                _command(where, entry, ".compute", "parallel"),
            )
            tasks += [
                FractalOperation(
                    name,
                    fractal_type="compound",
                    compute=compute,
                    init=init,
                    label=entry.get("name"),
                    description=description,
                    options=TaskOptions(tags=tags),
                    package=package,
                ),
                init,
                compute,
            ]
        else:
            raise ManifestError(f"task {name!r}: unknown Fractal task type {kind!r}")
    return tasks


def find_package_task(store: PackageStore, name: str) -> TaskDefinition | None:
    """The task `name` (`<package>/<task>`) of a ready package in `store`, or None."""
    package, sep, task_name = name.partition("/")
    if not sep:
        return None
    record = store.get_package(normalize_name(package))
    if record is None or record.state != "ready":
        return None
    wanted = f"{record.name}/{task_name}"
    return next((task for task in package_tasks(record) if task.name == wanted), None)


@dataclass(frozen=True, slots=True)
class _Where:
    package: str
    python: str
    root: Path
    name: str
    description: str
    tags: tuple[str, ...]


def _command(where: _Where, entry: Mapping[str, Any], suffix: str, which: str) -> CommandTask:
    executable = entry.get(f"executable_{which}")
    if not executable:
        raise ManifestError(f"task {where.name!r}: the manifest names no executable_{which}")
    return CommandTask(
        f"{where.name}{suffix}",
        [where.python, str(where.root / executable)],
        input_schema=entry.get(f"args_schema_{which}") or {"type": "object"},
        label=entry.get("name"),
        description=where.description,
        options=TaskOptions(
            tags=where.tags,
            meta=dict(entry.get(f"meta_{which}") or {}),
            # The per-image units fan out on the Dask cluster of an engine that has one
            # (the package's interpreter and scripts at the same paths there, as on a
            # cluster's shared file system); made in the engine's process otherwise.
            executor="dask" if which == "parallel" else None,
        ),
        package=where.package,
    )
