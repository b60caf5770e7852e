"""Finding tasks from what a person types: `module:attr`, `path/file.py:attr`, a module,
a file, or the name of a registered task."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from .exceptions import TaskDefinitionError, UnknownTaskError
from .tasks.definition import FunctionTask, TaskDefinition
from .tasks.registry import Registry, as_task, default_registry, tasks_in_module

__all__ = ["load_module", "load_target", "resolve_task"]


def load_module(spec: str) -> ModuleType:
    """Import `spec`, a dotted module name or the path of a `.py` file (or a package folder)."""
    path = Path(spec)
    if spec.endswith(".py") or (path.is_dir() and (path / "__init__.py").exists()):
        return _import_path(path)
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        if exc.name and spec.startswith(exc.name):
            raise TaskDefinitionError(
                f"cannot import {spec!r}: no module named {exc.name!r} "
                "(give `module:attr`, `path/file.py:attr`, or a registered task name)"
            ) from exc
        raise


def _import_path(path: Path) -> ModuleType:
    path = path.resolve()
    if not path.exists():
        raise TaskDefinitionError(f"cannot import {str(path)!r}: no such file")
    if path.is_dir():
        folder, name, location = path.parent, path.name, path / "__init__.py"
    else:
        folder, name, location = path.parent, path.stem, path
    # The file's folder goes on sys.path so the file can import its neighbours, as
    # `python file.py` would allow.
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    existing = sys.modules.get(name)
    if existing is not None and Path(getattr(existing, "__file__", "") or "").resolve() == location:
        return existing
    spec = importlib.util.spec_from_file_location(name, location)
    if spec is None or spec.loader is None:
        raise TaskDefinitionError(f"cannot import {str(path)!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def load_target(target: str) -> list[TaskDefinition]:
    """The tasks a target names: one for `module:attr`, all of a module or file otherwise."""
    module_part, sep, attr = target.partition(":")
    if sep and not (len(module_part) == 1 and module_part.isalpha()):  # not a Windows drive
        module = load_module(module_part)
        obj: Any = module
        for part in attr.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                raise TaskDefinitionError(f"{module_part!r} has no attribute {attr!r}") from None
        if isinstance(obj, ModuleType):
            return tasks_in_module(obj)
        if inspect.isfunction(obj):
            # A plain function named on its own is a task with the default options, as
            # `run_cli` takes it: a Fractal task script needs no decorator to run here.
            return [FunctionTask(obj)]
        return [as_task(obj)]
    module = load_module(target)
    found = tasks_in_module(module)
    if not found:
        raise TaskDefinitionError(f"{target!r} defines no tasks")
    return found


def _looks_like_path_or_module(target: str) -> bool:
    return ":" in target or target.endswith(".py") or "/" in target or Path(target).is_dir()


def resolve_task(target: str, registry: Registry | None = None) -> TaskDefinition:
    """One task: from `module:attr` / `file.py:attr`, or a name registered in `registry`,
    in the default registry, or declared by an installed package's entry points."""
    if _looks_like_path_or_module(target):
        found = load_target(target)
        if len(found) != 1:
            names = ", ".join(d.name for d in found)
            raise TaskDefinitionError(
                f"{target!r} defines several tasks ({names}); name one as {target}:NAME"
            )
        return found[0]
    for source in (registry, default_registry):
        if source is not None and target in source:
            return source.get(target)
    entry_points = Registry()
    entry_points.register_entry_points()
    if target in entry_points:
        return entry_points.get(target)
    raise UnknownTaskError(target, entry_points.names)
