"""taskloom: write a task once as a typed function or a small class; run it every way.

The public API. Everything else is importable but private by name.
"""

from .context import Context, RunCancelledError
from .engine import Engine, RunEvent
from .exceptions import (
    DuplicateTaskError,
    EngineClosedError,
    FieldError,
    InputValidationError,
    Retry,
    RunNotFoundError,
    StoreError,
    TaskDefinitionError,
    TaskloomError,
    TaskTimeoutError,
    UnknownTaskError,
    WaitTimeoutError,
    WorkerLostError,
)
from .policies import RestartPolicy, RetryPolicy
from .runs import Attempt, ErrorInfo, LogLine, Run, RunStatus
from .services import Service, ServiceState, ServiceStatus, Supervisor, service
from .streams import Pipeline
from .tasks import Registry, Task, TaskDefinition, TaskOptions, executor_register, task

#: aipartnerupflow's name for the executor base class: `from taskloom import BaseTask`.
BaseTask = Task

__version__ = "0.1.0"

__all__ = (
    "Attempt",
    "BaseTask",
    "Context",
    "DuplicateTaskError",
    "Engine",
    "EngineClosedError",
    "ErrorInfo",
    "FieldError",
    "InputValidationError",
    "LogLine",
    "Pipeline",
    "Registry",
    "RestartPolicy",
    "Retry",
    "RetryPolicy",
    "Run",
    "RunCancelledError",
    "RunEvent",
    "RunNotFoundError",
    "RunStatus",
    "Service",
    "ServiceState",
    "ServiceStatus",
    "StoreError",
    "Supervisor",
    "Task",
    "TaskDefinition",
    "TaskDefinitionError",
    "TaskOptions",
    "TaskTimeoutError",
    "TaskloomError",
    "UnknownTaskError",
    "WaitTimeoutError",
    "WorkerLostError",
    "__version__",
    "executor_register",
    "service",
    "task",
)
