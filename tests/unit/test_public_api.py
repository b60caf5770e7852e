"""The public API of `taskloom` is a curated list: exactly these names, each importable."""

from __future__ import annotations

import importlib
import types

import pytest

import taskloom

CURATED = (
    "AsyncClient",
    "Attempt",
    "BaseTask",
    "Client",
    "ClientError",
    "CommandTask",
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
    "UnknownTaskError",
    "UnstorableValueError",
    "WaitTimeoutError",
    "WorkerLostError",
    "Workflow",
    "WorkflowError",
    "WorkflowValidationError",
    "__version__",
    "executor_register",
    "load_workflow",
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


def test_exceptions_share_one_root() -> None:
    for name in CURATED:
        value = getattr(taskloom, name)
        if isinstance(value, type) and issubclass(value, Exception) and name.endswith("Error"):
            assert issubclass(value, taskloom.TaskloomError), name
    assert issubclass(taskloom.DuplicateTaskError, taskloom.TaskDefinitionError)
    assert issubclass(taskloom.Retry, taskloom.TaskloomError)


def test_version_is_a_string() -> None:
    assert isinstance(taskloom.__version__, str)
    assert taskloom.__version__.count(".") >= 1
