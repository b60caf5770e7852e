"""The table of how errors travel over HTTP: what the server writes, the client reads back."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import taskloom
from taskloom.exceptions import FieldError, TaskloomError, WorkflowValidationError
from taskloom.http_errors import ERRORS
from taskloom.packages.collection import PackageInstallError
from taskloom.server.tokens import AuthError, ForbiddenError, TokenNotFoundError
from taskloom.store.base import StoreBusyError
from taskloom.workflows.validation import WorkflowProblems

#: One error of each class the client raises again, with every attribute set.
SAMPLES: dict[str, Callable[[], TaskloomError]] = {
    "InputValidationError": lambda: taskloom.InputValidationError(
        "adder", [FieldError("a", "expected an integer"), FieldError("b.c", "missing")]
    ),
    "AttributeValidationError": lambda: taskloom.AttributeValidationError(
        "SensorService", [FieldError("readout_frequency", "expected a number, got 'fast'")]
    ),
    "StageConfigError": lambda: taskloom.StageConfigError(
        "ticking", "total", [FieldError("every", "must be > 0")]
    ),
    "PortValidationError": lambda: taskloom.PortValidationError(
        "ticking", "numbers", "total", "value", "expected a number"
    ),
    "WorkflowValidationError": lambda: taskloom.WorkflowValidationError(
        "chain", "missing", step="add", field="input 'b'"
    ),
    "WorkflowLimitError": lambda: taskloom.WorkflowLimitError("big", "too many", field="steps"),
    "WiringError": lambda: taskloom.WiringError("ticking", ["no stage feeds 'x'", "a cycle"]),
    "TaskDefinitionError": lambda: taskloom.TaskDefinitionError("task 'x': bad options"),
    "DuplicateTaskError": lambda: taskloom.DuplicateTaskError(),
    "UnknownTaskError": lambda: taskloom.UnknownTaskError("nope", ["adder", "nap"]),
    "RunNotFoundError": lambda: taskloom.RunNotFoundError("r-1"),
    "UnknownServiceError": lambda: taskloom.UnknownServiceError("sensor", ["ticker"]),
    "DeploymentNotFoundError": lambda: taskloom.DeploymentNotFoundError("ticking"),
    "NotAWorkflowRunError": lambda: taskloom.NotAWorkflowRunError("run r-1 is no workflow run"),
    "UnknownPackageError": lambda: taskloom.UnknownPackageError(),
    "UnknownTopicError": lambda: taskloom.UnknownTopicError("ticking", "x", ["numbers"]),
    "ServiceRunningError": lambda: taskloom.ServiceRunningError(),
    "WorkflowError": lambda: taskloom.WorkflowError("run r-1 is still running"),
    "PackageError": lambda: taskloom.PackageError("installing already"),
    "PipelineError": lambda: taskloom.PipelineError("running already"),
    "ServiceError": lambda: taskloom.ServiceError(),
    "WaitTimeoutError": lambda: taskloom.WaitTimeoutError("run r-1 did not finish"),
    "EngineClosedError": lambda: taskloom.EngineClosedError(),
    "StoreError": lambda: taskloom.StoreError("the database went away"),
    "StoreUnavailableError": lambda: taskloom.StoreUnavailableError("locked", retry_after=2.5),
    "ScheduleError": lambda: taskloom.ScheduleError(
        "cron: '61 * * * *' is not a valid cron expression", field="cron", name="hourly"
    ),
    "ScheduleNotFoundError": lambda: taskloom.ScheduleNotFoundError("hourly"),
    "HookNotFoundError": lambda: taskloom.HookNotFoundError("deploy"),
    "SignatureError": lambda: taskloom.SignatureError("the signature does not match the body"),
}


def test_there_is_a_sample_of_every_error_the_client_raises_again() -> None:
    assert sorted(SAMPLES) == sorted(e.__name__ for e in ERRORS.rebuilt_classes())


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_the_client_raises_the_error_the_server_told(name: str) -> None:
    sent = SAMPLES[name]()
    body = ERRORS.body(sent)
    assert body["error"]["type"] == name
    rebuilt = ERRORS.rebuild(body["error"])
    assert type(rebuilt) is type(sent)
    assert str(rebuilt) == str(sent)
    assert vars(rebuilt) == vars(sent)


def test_status_codes_by_kind() -> None:
    def status(exc: TaskloomError) -> int:
        return ERRORS.status(exc)

    assert status(AuthError()) == 401
    assert status(ForbiddenError()) == 403
    assert status(TokenNotFoundError()) == 404
    assert status(SAMPLES["PortValidationError"]()) == 422
    assert status(SAMPLES["UnknownTopicError"]()) == 404
    assert status(SAMPLES["DuplicateTaskError"]()) == 409
    assert status(SAMPLES["TaskDefinitionError"]()) == 400
    assert status(SAMPLES["WaitTimeoutError"]()) == 408
    assert status(SAMPLES["StoreUnavailableError"]()) == 503
    assert status(TaskloomError("anything else")) == 400


def test_a_class_the_table_does_not_name_answers_as_its_ancestor_under_its_own_name() -> None:
    busy = StoreBusyError("locked", retry_after=0.2)
    assert ERRORS.status(busy) == 503
    assert ERRORS.body(busy) == {
        "error": {"type": "StoreBusyError", "message": "locked", "retry_after": 0.2}
    }
    assert ERRORS.headers(busy) == {"Retry-After": "1"}
    installing = PackageInstallError("pip failed", record=None)  # type: ignore[arg-type]
    assert ERRORS.status(installing) == 409
    # The client does not know the name: it raises a `ClientError` with the status.
    assert ERRORS.rebuild(ERRORS.body(installing)["error"]) is None


def test_the_bodies_keep_their_shape() -> None:
    assert ERRORS.body(SAMPLES["PortValidationError"]()) == {
        "error": {
            "type": "PortValidationError",
            "message": "deployment 'ticking', topic 'numbers': stage 'total' input 'value': "
            "expected a number",
            "task": "total",
            "what": "input",
            "errors": [{"field": "value", "message": "expected a number"}],
            "deployment": "ticking",
            "topic": "numbers",
        }
    }
    assert ERRORS.body(SAMPLES["WiringError"]())["error"]["errors"] == [
        {"field": "pipeline", "message": "no stage feeds 'x'"},
        {"field": "pipeline", "message": "a cycle"},
    ]
    assert ERRORS.body(SAMPLES["UnknownTaskError"]())["error"] == {
        "type": "UnknownTaskError",
        "message": "unknown task 'nope'; registered tasks: adder, nap",
        "name": "nope",
    }


def test_several_workflow_problems_are_told_as_one_validation_error() -> None:
    problems = WorkflowProblems(
        [
            WorkflowValidationError("w", "unknown task 'x'", step="one"),
            WorkflowValidationError("w", "missing", step="two", field="input 'a'"),
        ]
    )
    error = ERRORS.body(problems)["error"]
    assert error["type"] == "WorkflowValidationError"
    assert error["errors"] == [
        {"field": "steps.one", "step": "one", "message": "unknown task 'x'"},
        {"field": "steps.two.inputs.a", "step": "two", "message": "missing"},
    ]
    rebuilt = ERRORS.rebuild(error)
    assert isinstance(rebuilt, WorkflowValidationError)
    assert type(rebuilt) is WorkflowValidationError
    assert rebuilt.step == "one"
    assert rebuilt.message.splitlines() == [
        "workflow 'w': step 'one': unknown task 'x'",
        "workflow 'w': step 'two': input 'a': missing",
    ]


def test_refusals_of_the_caller_are_not_rebuilt() -> None:
    for refusal in (AuthError(), ForbiddenError(), TokenNotFoundError()):
        assert ERRORS.rebuild(ERRORS.body(refusal)["error"]) is None
    assert ERRORS.headers(AuthError()) == {"WWW-Authenticate": "Bearer"}
    assert ERRORS.headers(ForbiddenError()) is None


def test_an_unknown_type_name_is_not_rebuilt() -> None:
    assert ERRORS.rebuild({"type": "SomethingNewError", "message": "?"}) is None
    assert ERRORS.rebuild({"type": "TaskloomError", "message": "?"}) is None


def test_retry_after_reads_a_header_text_or_falls_back_to_one_second() -> None:
    told = {"type": "StoreUnavailableError", "message": "locked"}
    from_header = ERRORS.rebuild({**told, "retry_after": "3"})
    assert isinstance(from_header, taskloom.StoreUnavailableError)
    assert from_header.retry_after == 3.0
    unreadable = ERRORS.rebuild(told)
    assert isinstance(unreadable, taskloom.StoreUnavailableError)
    assert unreadable.retry_after == 1.0
