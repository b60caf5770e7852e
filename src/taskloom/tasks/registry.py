"""Registries: the tasks an engine knows by name."""

from __future__ import annotations

import importlib.metadata
import inspect
import threading
from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import Any

from ..exceptions import DuplicateTaskError, TaskDefinitionError, UnknownTaskError
from .classes import Task, as_class_task
from .definition import TaskDefinition

__all__ = [
    "ENTRY_POINT_GROUP",
    "Registry",
    "TaskLike",
    "as_task",
    "default_registry",
    "tasks_in_module",
]

ENTRY_POINT_GROUP = "taskloom.tasks"

#: What names a task where one is asked for: its registered name, its definition (a
#: `@task` function is one), or a `Task` subclass.
TaskLike = str | TaskDefinition | type[Task]


def as_task(obj: Any) -> TaskDefinition:
    """The definition of a task object: a `@task` function or a `Task` subclass."""
    if isinstance(obj, TaskDefinition):
        return obj
    if isinstance(obj, type) and issubclass(obj, Task):
        return as_class_task(obj)
    if callable(obj):
        raise TaskDefinitionError(
            f"{getattr(obj, '__qualname__', obj)!r} is not a task: decorate it with @taskloom.task"
        )
    raise TaskDefinitionError(f"{obj!r} is not a task")


def tasks_in_module(module: ModuleType) -> list[TaskDefinition]:
    """Every task defined in `module` (not merely imported into it), in definition order."""
    found: list[TaskDefinition] = []
    for value in vars(module).values():
        if isinstance(value, TaskDefinition) and value.module == module.__name__:
            found.append(value)
        elif (
            isinstance(value, type)
            and issubclass(value, Task)
            and value is not Task
            and value.__module__ == module.__name__
            and not inspect.isabstract(value)
            and value.execute is not Task.execute
        ):
            found.append(as_class_task(value))
    return found


class Registry:
    """Tasks by name. Registering a different task under a taken name is an error."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskDefinition] = {}
        self._lock = threading.Lock()

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[TaskDefinition]:
        return iter(list(self._tasks.values()))

    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def names(self) -> list[str]:
        return list(self._tasks)

    def add(self, definition: TaskDefinition) -> TaskDefinition:
        with self._lock:
            existing = self._tasks.get(definition.name)
            if existing is not None and not existing.same_as(definition):
                raise DuplicateTaskError(
                    f"two tasks are named {definition.name!r}: {existing!r} and {definition!r}; "
                    "give one of them another name (@task(name=...) or the class's `id`)"
                )
            self._tasks[definition.name] = definition
        return definition

    def register(self, obj: Any) -> list[TaskDefinition]:
        """Register a task, a `Task` subclass, a module (every task defined in it) or a list."""
        if isinstance(obj, ModuleType):
            return [self.add(d) for d in tasks_in_module(obj)]
        if isinstance(obj, list | tuple | set | frozenset):
            return [d for item in obj for d in self.register(item)]
        return [self.add(as_task(obj))]

    def register_entry_points(self, group: str = ENTRY_POINT_GROUP) -> list[TaskDefinition]:
        """Register what installed packages declare under the `taskloom.tasks` entry points."""
        added: list[TaskDefinition] = []
        for entry_point in importlib.metadata.entry_points(group=group):
            try:
                target = entry_point.load()
            except Exception as exc:
                raise TaskDefinitionError(
                    f"entry point {entry_point.name!r} ({entry_point.value}) failed to load: {exc}"
                ) from exc
            added += self.register(target)
        return added

    def get(self, name: str) -> TaskDefinition:
        try:
            return self._tasks[name]
        except KeyError:
            raise UnknownTaskError(name, self.names) from None

    def find(self, name: str) -> TaskDefinition | None:
        return self._tasks.get(name)

    def remove(self, name: str) -> TaskDefinition | None:
        """Forget the task registered under `name`; returns it (None when unknown)."""
        with self._lock:
            return self._tasks.pop(name, None)

    def update(self, definitions: Iterable[TaskDefinition]) -> None:
        for definition in definitions:
            self.add(definition)


#: Where `executor_register()` puts classes; engines look here for names they lack.
default_registry = Registry()
