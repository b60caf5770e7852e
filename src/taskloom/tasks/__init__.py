"""Defining tasks: the `@task` decorator, the `Task` base class, schemas and registries."""

from .classes import ClassTask, Task, executor_register
from .definition import FunctionTask, TaskDefinition, task
from .options import TaskOptions
from .registry import ENTRY_POINT_GROUP, Registry, as_task, default_registry, tasks_in_module
from .signature import Port, SpecialParams

__all__ = (
    "ENTRY_POINT_GROUP",
    "ClassTask",
    "FunctionTask",
    "Port",
    "Registry",
    "SpecialParams",
    "Task",
    "TaskDefinition",
    "TaskOptions",
    "as_task",
    "default_registry",
    "executor_register",
    "task",
    "tasks_in_module",
)
