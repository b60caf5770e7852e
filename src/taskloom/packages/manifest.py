"""Manifests: what a package's tasks are, generated from code.

Two forms:

- the taskloom manifest (`manifest_version: "taskloom/1"`): per task its name, label,
  description, version, kind, input and output JSON Schemas, IO metadata, tags, resource
  meta and executable (the task's script, relative to the package folder);
- a Fractal manifest (`manifest_version: "2"`, what `__FRACTAL_MANIFEST__.json` holds),
  with argument schemas made the way fractal-task-tools makes them, so Fractal reads a
  taskloom package like one of its own.

A task's script is the module that defines it; it is an executable when the module calls
`run_cli` (checked in its source). Fractal's task type follows from the signature:
`zarr_url` makes a task `parallel`, otherwise it is `non_parallel`; a task whose `meta`
names an init task (`{"init": "init_grid"}`) is the compute part of a `compound` task.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import inspect
import pkgutil
import re
import tomllib
import warnings
from collections.abc import Callable, Iterator
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import docstring_parser
from pydantic import ConfigDict
from pydantic.json_schema import GenerateJsonSchema, NoDefault
from pydantic_core import core_schema

from ..tasks.definition import FunctionTask, TaskDefinition
from ..tasks.registry import tasks_in_module
from .errors import ManifestError, ManifestWarning

__all__ = [
    "FRACTAL_ARGS_SCHEMA_VERSION",
    "FRACTAL_MANIFEST_FILE",
    "TASKLOOM_MANIFEST_FILE",
    "TASKLOOM_MANIFEST_VERSION",
    "PackageTask",
    "find_package_tasks",
    "fractal_args_schema",
    "fractal_manifest",
    "taskloom_manifest",
]

TASKLOOM_MANIFEST_VERSION = "taskloom/1"
TASKLOOM_MANIFEST_FILE = "__TASKLOOM_MANIFEST__.json"
FRACTAL_MANIFEST_FILE = "__FRACTAL_MANIFEST__.json"
FRACTAL_ARGS_SCHEMA_VERSION = "fractal_schema_v1"

#: The arguments Fractal's v2 task types require and forbid, by (task type, executable
#: kind): what fractal-task-tools checks when it makes a manifest (its
#: `_task_arguments.py`), and fractal-server when it collects one.
FRACTAL_REQUIRED_ARGUMENTS: dict[tuple[str, str], frozenset[str]] = {
    ("non_parallel", "non_parallel"): frozenset({"zarr_urls", "zarr_dir"}),
    ("compound", "non_parallel"): frozenset({"zarr_urls", "zarr_dir"}),
    ("parallel", "parallel"): frozenset({"zarr_url"}),
    ("compound", "parallel"): frozenset({"zarr_url", "init_args"}),
}
FRACTAL_FORBIDDEN_ARGUMENTS: dict[tuple[str, str], frozenset[str]] = {
    ("non_parallel", "non_parallel"): frozenset({"zarr_url"}),
    ("compound", "non_parallel"): frozenset({"zarr_url"}),
    ("parallel", "parallel"): frozenset({"zarr_urls", "zarr_dir"}),
    ("compound", "parallel"): frozenset({"zarr_urls", "zarr_dir"}),
}
#: The arguments of Fractal's v1 tasks, which a v2 manifest cannot describe.
FRACTAL_V1_ARGUMENTS = frozenset({"input_paths", "output_path", "metadata"})

#: Keys of a task's `meta` that Fractal keeps at the top of a task entry, not in `meta_*`.
FRACTAL_ENTRY_KEYS = ("category", "modality", "input_types", "output_types", "docs_info")


@dataclass(frozen=True, slots=True)
class PackageTask:
    """A task found in a package: its definition, module and executable (if it has one)."""

    definition: TaskDefinition
    module: ModuleType
    executable: str | None  # the module's path relative to the package folder

    @property
    def fractal_type(self) -> str:
        if self.init is not None:
            return "compound"
        return "parallel" if "zarr_url" in self.definition.inputs else "non_parallel"

    @property
    def init(self) -> str | None:
        """The init task of a compound task: `meta={"init": "<task name>"}` on its compute task."""
        value = self.definition.options.meta.get("init")
        return None if value is None else str(value)


def find_package_tasks(package: str) -> tuple[ModuleType, list[PackageTask]]:
    """Import the package `package` and every module in it; the tasks they define."""
    try:
        root = importlib.import_module(package)
    except ImportError as exc:
        raise ManifestError(f"cannot import the package {package!r}: {exc}") from exc
    folder = Path(root.__file__ or "").parent
    found: list[PackageTask] = []
    for module in _modules(root):
        file = getattr(module, "__file__", None)
        executable = None
        if file and _calls_run_cli(Path(file)):
            executable = Path(file).resolve().relative_to(folder.resolve()).as_posix()
        found += [PackageTask(d, module, executable) for d in tasks_in_module(module)]
    names = [t.definition.name for t in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ManifestError(
            f"package {package!r}: several tasks are named {', '.join(map(repr, duplicates))}; "
            "give each a distinct `name`"
        )
    return root, found


def _modules(root: ModuleType) -> Iterator[ModuleType]:
    yield root
    paths = getattr(root, "__path__", None)
    if paths is None:
        return
    for info in pkgutil.walk_packages(paths, prefix=f"{root.__name__}."):
        try:
            yield importlib.import_module(info.name)
        except Exception as exc:
            raise ManifestError(
                f"cannot import {info.name!r}: {type(exc).__name__}: {exc}"
            ) from exc


def _calls_run_cli(path: Path) -> bool:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name == "run_cli":
                return True
    return False


def _version(package: str) -> str | None:
    for name in (package, package.replace("_", "-")):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


# --- the taskloom manifest -------------------------------------------------------------------


def taskloom_manifest(package: str) -> dict[str, Any]:
    """The taskloom manifest of the package `package` (an importable name)."""
    _, tasks = find_package_tasks(package)
    version = _version(package)
    return {
        "manifest_version": TASKLOOM_MANIFEST_VERSION,
        "package": package,
        "version": version,
        "tasks": [_taskloom_entry(task, version) for task in tasks],
    }


def _taskloom_entry(task: PackageTask, version: str | None) -> dict[str, Any]:
    definition = task.definition
    io = {name: dict(m) for name, port in definition.inputs.items() for m in _io(port.metadata)}
    return {
        "name": definition.name,
        "label": definition.label,
        "description": definition.description,
        "version": version,
        "kind": definition.kind,
        "executable": task.executable,
        "contract": "v2",
        "fractal_type": task.fractal_type,
        "init": task.init,
        "input_schema": definition.input_schema,
        "output_schema": definition.output_schema,
        "io": io,
        "tags": list(definition.options.tags),
        "meta": dict(definition.options.meta),
        "timeout": definition.options.timeout,
    }


def _io(metadata: tuple[Any, ...]) -> Iterator[dict[str, Any]]:
    merged: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, dict):
            merged.update(item)
    if merged:
        yield merged


# --- the Fractal manifest -------------------------------------------------------------------


def fractal_manifest(package: str, *, authors: str | None = None) -> dict[str, Any]:
    """The Fractal manifest (`__FRACTAL_MANIFEST__.json`, version 2) of `package`.

    `authors` defaults to the installed distribution's authors, else those of the
    `pyproject.toml` in the working directory (as fractal-task-tools does).
    """
    _, tasks = find_package_tasks(package)
    by_name = {task.definition.name: task for task in tasks}
    inits = {task.init for task in tasks if task.init is not None}
    entries = []
    left_out = []
    for task in tasks:
        if task.executable is None or task.definition.name in inits:
            continue  # not an executable (Fractal could not run it), or part of a compound task
        init = None
        if task.init is not None:
            init = by_name.get(task.init)
            if init is None or init.executable is None:
                raise ManifestError(
                    f"task {task.definition.name!r}: its init task {task.init!r} is not an "
                    f"executable task of package {package!r}"
                )
        problem = _fractal_arguments_problem(task, init)
        if problem is not None:
            left_out.append(task.definition.name)
            warnings.warn(ManifestWarning(problem), stacklevel=2)
            continue
        entries.append(_fractal_entry(task, init))
    if not entries and left_out:
        raise ManifestError(
            f"package {package!r}: no task fits Fractal's v2 manifest "
            f"(left out: {', '.join(left_out)})"
        )
    if not entries:
        raise ManifestError(
            f"package {package!r} has no task executables: end each task's module with "
            "`if __name__ == '__main__': taskloom.run_cli(the_task)`"
        )
    return {
        "manifest_version": "2",
        "task_list": entries,
        "has_args_schemas": True,
        "args_schema_version": FRACTAL_ARGS_SCHEMA_VERSION,
        "authors": authors if authors is not None else _authors(package),
    }


def _function(task: PackageTask) -> Callable[..., Any]:
    definition = task.definition
    if not isinstance(definition, FunctionTask):
        raise ManifestError(
            f"task {definition.name!r}: a Fractal manifest describes function tasks "
            f"(their signature is the argument schema); it is a {definition.kind} task"
        )
    return definition.fn


def _fractal_arguments_problem(task: PackageTask, init: PackageTask | None) -> str | None:
    """Why Fractal would refuse this task in a v2 manifest, or None if it would not."""
    kind = task.fractal_type
    parts = [(task, "non_parallel" if kind == "non_parallel" else "parallel")]
    if init is not None:
        parts.insert(0, (init, "non_parallel"))
    for part, which in parts:
        arguments = set(fractal_args_schema(_function(part)).get("properties", {}))
        required = FRACTAL_REQUIRED_ARGUMENTS[(kind, which)] - arguments
        forbidden = FRACTAL_FORBIDDEN_ARGUMENTS[(kind, which)] & arguments
        if not (required or forbidden):
            continue
        what = []
        if required:
            what.append(f"it lacks {', '.join(sorted(required))}")
        if forbidden:
            what.append(f"it takes {', '.join(sorted(forbidden))}")
        v1 = sorted(FRACTAL_V1_ARGUMENTS & arguments)
        hint = (
            f"; its arguments {', '.join(v1)} are Fractal's v1 contract, which a v2 "
            "manifest cannot describe (run_cli still runs it with -j/--metadata-out)"
            if v1
            else ""
        )
        name = part.definition.name
        role = "" if part is task else f" (the init task of {task.definition.name!r})"
        return (
            f"task {name!r}{role} is left out of the Fractal manifest: as the "
            f"{which} part of a {kind} task {' and '.join(what)}{hint}"
        )
    return None


def _fractal_entry(task: PackageTask, init: PackageTask | None) -> dict[str, Any]:
    definition = task.definition
    fn = _function(task)
    meta = dict(definition.options.meta)
    meta.pop("init", None)
    entry: dict[str, Any] = {"name": definition.label}
    for key in FRACTAL_ENTRY_KEYS:
        if key in meta:
            entry[key] = meta.pop(key)
    if definition.options.tags:
        entry["tags"] = list(definition.options.tags)
    entry["type"] = task.fractal_type
    parts = [(task, fn, meta)]
    if init is not None:
        init_meta = {k: v for k, v in init.definition.options.meta.items() if k != "init"}
        parts.insert(0, (init, _function(init), init_meta))
    docs = []
    for part, part_fn, part_meta in parts:
        which = (
            "non_parallel" if part is init or task.fractal_type == "non_parallel" else "parallel"
        )
        assert part.executable is not None
        entry[f"executable_{which}"] = part.executable
        if part_meta:
            entry[f"meta_{which}"] = part_meta
        entry[f"args_schema_{which}"] = fractal_args_schema(part_fn)
        docs.append(_docs_info(part_fn))
    entry.setdefault("docs_info", "".join(docs))
    return entry


def _authors(package: str) -> str | None:
    for name in (package, package.replace("_", "-")):
        try:
            metadata = importlib.metadata.metadata(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        names = [str(a) for a in metadata.get_all("Author") or [] if a]
        for item in ",".join(metadata.get_all("Author-email") or []).split(","):
            found = re.match(r"\s*(.+?)\s*<", item)
            if found:
                names.append(found.group(1).strip('"'))
        return ", ".join(names) or None
    pyproject = Path.cwd() / "pyproject.toml"
    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
        return ", ".join(author["name"] for author in project["authors"])
    except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError):
        return None


def _docs_info(fn: Callable[..., Any]) -> str:
    text = inspect.getdoc(fn) or ""
    parsed = docstring_parser.parse(text)
    parts = [p for p in (parsed.short_description, parsed.long_description) if p]
    joiner = "\n\n" if parsed.blank_after_short_description else "\n"
    return f"## {fn.__name__}\n{joiner.join(parts)}\n"


class _FractalSchemaGenerator(GenerateJsonSchema):
    """Defaults from a `default_factory` are shown as values, as Fractal's schemas show them."""

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        if "default" in schema:
            return schema["default"]
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            return factory()  # type: ignore[call-arg]
        return NoDefault


def fractal_args_schema(fn: Callable[..., Any]) -> dict[str, Any]:
    """The JSON Schema of `fn`'s arguments in Fractal's form (`fractal_schema_v1`).

    Made from pydantic's arguments schema: property titles are the names in title case,
    the schema's title is the function name in CamelCase, argument descriptions come from
    the docstring (one line each; "Missing description" when there is none), a model's
    description is its docstring's first paragraph, and `allOf` around a single `$ref` is
    unwrapped.
    """
    from pydantic.experimental.arguments_schema import generate_arguments_schema

    core = generate_arguments_schema(
        fn,
        schema_type="arguments",
        config=ConfigDict(
            field_title_generator=lambda name, _info: name.title().replace("_", " ").strip()
        ),
    )
    schema: dict[str, Any] = _FractalSchemaGenerator().generate(core, mode="validation")
    for definition in schema.get("$defs", {}).values():
        if "description" in definition:
            definition["description"] = docstring_parser.parse(
                definition["description"]
            ).short_description
        elif "title" in definition:
            definition["description"] = f"Missing description for {definition['title']}."
        else:
            definition["description"] = "Missing description"
    properties: dict[str, Any] = schema.setdefault("properties", {})
    for name, prop in list(properties.items()):
        all_of = prop.get("allOf")
        if (
            isinstance(all_of, list)
            and len(all_of) == 1
            and isinstance(all_of[0], dict)
            and list(all_of[0]) == ["$ref"]
            and "$ref" not in prop
        ):
            unwrapped = deepcopy(prop)
            unwrapped.update(unwrapped.pop("allOf")[0])
            properties[name] = unwrapped
    for props in [properties] + [
        d["properties"] for d in schema.get("$defs", {}).values() if "properties" in d
    ]:
        for name, prop in props.items():
            prop.setdefault("title", name.title())
    if schema.get("title") is None:
        schema["title"] = "".join(part.capitalize() for part in fn.__name__.lower().split("_"))
    descriptions = {
        p.arg_name: p.description
        for p in docstring_parser.parse(inspect.getdoc(fn) or "").params
        if p.description is not None
    }
    for name, prop in properties.items():
        if "description" not in prop:
            prop["description"] = _one_line(descriptions.get(name, "Missing description"))
    return schema


def _one_line(text: str) -> str:
    text = text.replace("\n", " ")
    while "  " in text:
        text = text.replace("  ", " ")
    return text
