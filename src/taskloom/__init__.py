"""taskloom: write a task once as a typed function or a small class; run it every way.

The public API. Everything else is importable but private by name.
"""

import typing as _typing

from .context import Context, RunCancelledError
from .engine import Engine, RunEvent
from .exceptions import (
    DuplicateTaskError,
    EngineClosedError,
    ExecutorUnavailableError,
    FieldError,
    InputValidationError,
    NotAWorkflowRunError,
    Retry,
    RunNotFoundError,
    StoreError,
    StoreUnavailableError,
    TaskDefinitionError,
    TaskloomError,
    TaskTimeoutError,
    UnknownTaskError,
    UnstorableValueError,
    WaitTimeoutError,
    WorkerLostError,
    WorkflowError,
    WorkflowValidationError,
)
from .packages import (
    CommandTask,
    CommandTaskError,
    ManifestError,
    PackageError,
    PackageInstallError,
    UnknownPackageError,
    run_cli,
)
from .policies import RestartPolicy, RetryPolicy
from .runs import Attempt, ErrorInfo, LogLine, Run, RunEventKind, RunStatus
from .schedules import (
    Cron,
    HookNotFoundError,
    Interval,
    ScheduleError,
    ScheduleNotFoundError,
    SignatureError,
)
from .services import (
    AttributeValidationError,
    Service,
    ServiceAttributes,
    ServiceError,
    ServiceRunningError,
    ServiceState,
    ServiceStatus,
    Supervisor,
    UnknownServiceError,
    loop,
    service,
)
from .streams import (
    DeploymentNotFoundError,
    Pipeline,
    PipelineError,
    PortValidationError,
    StageConfigError,
    UnknownTopicError,
    WiringError,
)
from .tasks import Registry, Task, TaskDefinition, TaskOptions, executor_register, task
from .workflows import (
    ReferenceSyntaxError,
    StepHandle,
    Workflow,
    WorkflowLimitError,
    load_workflow,
)

if _typing.TYPE_CHECKING:
    from .client import AsyncClient, Client, ClientError

#: aipartnerupflow's name for the executor base class: `from taskloom import BaseTask`.
BaseTask = Task
#: aipartnerupflow's lower-level executor base class; `id`, `name` and `description` may be
#: properties there, and taskloom reads them from an instance.
ExecutableTask = Task

__version__ = "0.1.0"

__all__ = (
    "AsyncClient",
    "Attempt",
    "AttributeValidationError",
    "BaseTask",
    "Client",
    "ClientError",
    "CommandTask",
    "CommandTaskError",
    "Context",
    "Cron",
    "DeploymentNotFoundError",
    "DuplicateTaskError",
    "Engine",
    "EngineClosedError",
    "ErrorInfo",
    "ExecutableTask",
    "ExecutorUnavailableError",
    "FieldError",
    "HookNotFoundError",
    "InputValidationError",
    "Interval",
    "LogLine",
    "ManifestError",
    "NotAWorkflowRunError",
    "PackageError",
    "PackageInstallError",
    "Pipeline",
    "PipelineError",
    "PortValidationError",
    "ReferenceSyntaxError",
    "Registry",
    "RestartPolicy",
    "Retry",
    "RetryPolicy",
    "Run",
    "RunCancelledError",
    "RunEvent",
    "RunEventKind",
    "RunNotFoundError",
    "RunStatus",
    "ScheduleError",
    "ScheduleNotFoundError",
    "Service",
    "ServiceAttributes",
    "ServiceError",
    "ServiceRunningError",
    "ServiceState",
    "ServiceStatus",
    "SignatureError",
    "StageConfigError",
    "StepHandle",
    "StoreError",
    "StoreUnavailableError",
    "Supervisor",
    "Task",
    "TaskDefinition",
    "TaskDefinitionError",
    "TaskOptions",
    "TaskTimeoutError",
    "TaskloomError",
    "UnknownPackageError",
    "UnknownServiceError",
    "UnknownTaskError",
    "UnknownTopicError",
    "UnstorableValueError",
    "WaitTimeoutError",
    "WiringError",
    "WorkerLostError",
    "Workflow",
    "WorkflowError",
    "WorkflowLimitError",
    "WorkflowValidationError",
    "__version__",
    "executor_register",
    "load_workflow",
    "loop",
    "run_cli",
    "service",
    "task",
)

#: Loaded on first use: the HTTP client's imports are not needed to define or run tasks.
_LAZY = frozenset({"AsyncClient", "Client", "ClientError"})


def __getattr__(name: str) -> _typing.Any:
    if name in _LAZY:
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module 'taskloom' has no attribute {name!r}")
