"""The public API of `taskloom` is a curated list: exactly these names, each importable."""

from __future__ import annotations

import importlib
import types

import pytest

import taskloom
from taskloom.http_errors import ERRORS

#: The modules whose `__all__` is public: every error class they name is one a user may
#: meet, so it is exported at the top too.
PUBLIC_MODULES = (
    "taskloom.client",
    "taskloom.context",
    "taskloom.engine",
    "taskloom.exceptions",
    "taskloom.packages",
    "taskloom.schedules",
    "taskloom.services",
    "taskloom.store",
    "taskloom.streams",
    "taskloom.tasks",
    "taskloom.workflows",
)

CURATED = (
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


def test_all_is_exactly_the_curated_tuple() -> None:
    assert isinstance(taskloom.__all__, tuple)
    assert taskloom.__all__ == CURATED


@pytest.mark.parametrize("name", CURATED)
def test_every_public_name_is_importable(name: str) -> None:
    module = importlib.import_module("taskloom")
    assert getattr(module, name) is not None


def test_star_import_gives_exactly_the_public_names() -> None:
    namespace: dict[str, object] = {}
    exec("from taskloom import *", namespace)
    namespace.pop("__builtins__", None)
    assert set(namespace) == set(CURATED)


def test_no_public_name_is_left_out_of_all() -> None:
    # Submodules are importable, but private by convention; any other public
    # attribute of the package must be part of the curated list.
    public = {
        name
        for name, value in vars(taskloom).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public <= set(CURATED)


def test_base_task_is_the_task_base_class() -> None:
    assert taskloom.BaseTask is taskloom.Task
    assert taskloom.ExecutableTask is taskloom.Task


def test_exceptions_share_one_root() -> None:
    for name in CURATED:
        value = getattr(taskloom, name)
        if isinstance(value, type) and issubclass(value, Exception) and name.endswith("Error"):
            assert issubclass(value, taskloom.TaskloomError), name
    assert issubclass(taskloom.DuplicateTaskError, taskloom.TaskDefinitionError)
    assert issubclass(taskloom.Retry, taskloom.TaskloomError)


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_error_class_of_a_public_module_is_exported(module_name: str) -> None:
    module = importlib.import_module(module_name)
    for name in module.__all__:
        value = getattr(module, name)
        if isinstance(value, type) and issubclass(value, Exception) and name.endswith("Error"):
            assert issubclass(value, taskloom.TaskloomError), f"{module_name}.{name}"
            assert getattr(taskloom, name, None) is value, f"{module_name}.{name}"


def test_every_error_the_client_raises_again_is_exported() -> None:
    for error in ERRORS.rebuilt_classes():
        assert getattr(taskloom, error.__name__, None) is error, error.__name__


def test_reference_syntax_error_is_a_taskloom_error_and_a_value_error() -> None:
    assert issubclass(taskloom.ReferenceSyntaxError, taskloom.TaskloomError)
    assert issubclass(taskloom.ReferenceSyntaxError, ValueError)


def test_version_is_a_string() -> None:
    assert isinstance(taskloom.__version__, str)
    assert taskloom.__version__.count(".") >= 1
