"""Workflows: submit one given as data, read a workflow run with its steps, rerun, cancel.

A workflow comes in the data form `taskloom workflow run FILE` reads (a JSON object, or
the YAML or JSON text of a file). The server runs only the tasks it serves: a step's
`task` must be a task the server has registered, by its name or by the `module:attr`
reference a workflow built in Python records for it. A file path or a module the server
does not serve is refused (422, naming the step) and never imported: a client cannot make
the server load code.

A workflow is bounded by the engine's `workflow_limits` (steps in it, items in one map)
and read no deeper than 64 levels: 422 naming the limit. A large body is counted before
it is parsed (`refuse_oversized`, called by the JSON body check in front of every route),
so a million steps are refused without being built; the data form is read off the event
loop.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from pydantic_core import to_json
from starlette.responses import Response
from starlette.types import Scope

from ...documents import TooManyMembersError, count_json_members
from ...engine import Engine
from ...exceptions import NotAWorkflowRunError, TaskloomError, WorkflowValidationError
from ...runs import Run, RunStatus
from ...tasks.definition import TaskDefinition
from ...workflows import Step, Workflow, WorkflowLimits
from ...workflows.model import parse_text, task_reference
from ...workflows.operations import (
    WORKFLOW_PREFIX,
    workflow_of,
)
from ...workflows.validation import WorkflowProblems, topological_order
from ..encoding import jsonable
from ..errors import error_response
from .deps import EngineDep, Operator, Viewer, responses
from .models import RunOut, WorkflowOut, WorkflowSubmitIn

__all__ = ["COUNTED_ABOVE", "refuse_oversized", "router", "served_resolver"]

router = APIRouter(prefix="/workflows", tags=["workflows"])

Resolver = Callable[[Step], TaskDefinition]


def served_resolver(engine: Engine) -> Resolver:
    """Finds a step's task among the tasks `engine` serves, and nowhere else."""
    by_reference = {task_reference(d): d for d in engine.registry}

    def resolve(step: Step) -> TaskDefinition:
        found = engine.registry.find(step.task) or by_reference.get(step.task)
        if found is None:
            served = ", ".join(sorted(engine.registry.names)) or "none"
            raise TaskloomError(f"this server runs only the tasks it serves ({served})")
        return found

    return resolve


def _check_served(workflow: Workflow, resolve: Resolver) -> None:
    """Every step whose task is not served, all at once (the engine stops at the first)."""
    problems = []
    for step in workflow.steps.values():
        try:
            resolve(step)
        except TaskloomError as exc:
            problems.append(
                WorkflowValidationError(
                    workflow.name, f"unknown task {step.task!r}: {exc}", step=step.name
                )
            )
    if problems:
        raise WorkflowProblems(problems)


def _parse(given: dict[str, Any] | str, limits: WorkflowLimits) -> Workflow:
    """The workflow of a request, within `limits` (YAML text: read without aliases, no
    deeper than 64 levels, and no further than `limits.max_steps` steps)."""
    data: Any = given
    if isinstance(given, str):
        data = parse_text(given, source="workflow", limits=limits)
    return Workflow.from_dict(data, limits=limits)


#: Bodies up to this size are parsed as they come (a few MiB of objects at most); larger
#: ones have their steps counted first.
COUNTED_ABOVE = 1 << 20


def refuse_oversized(scope: Scope, body: bytes) -> Response | None:
    """422 for `POST /api/workflows` with more steps than the engine allows, found by
    counting them in the raw body: stops past the limit, builds nothing per step."""
    if (
        len(body) <= COUNTED_ABOVE
        or scope.get("method") != "POST"
        or scope.get("path") not in ("/api/workflows", "/api/workflows/")
    ):
        return None
    engine: Engine | None = getattr(scope["app"].state, "engine", None)
    limits = engine.workflow_limits if engine is not None else WorkflowLimits()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None  # the body check that follows says what is wrong
    try:
        count_json_members(text, ("workflow", "steps"), limits.max_steps)
    except TooManyMembersError:
        # The name may come after the steps, which were not all read: none is named.
        return error_response(limits.too_many_steps("workflow", None))
    return None


def _out(run: Run) -> dict[str, Any]:
    data: dict[str, Any] = jsonable(run.as_dict())
    return data


#: The fields of a run as `RunOut` answers them (its record has a few more).
_RUN_OUT = tuple(RunOut.model_fields)


def _raw_out(run: Run) -> dict[str, Any]:
    """A run as `RunOut` answers it, its values not yet made JSON (done once for a whole
    answer by `_json_response`)."""
    data = {name: getattr(run, name) for name in _RUN_OUT}
    data["status"] = run.status.value
    error = run.error
    data["error"] = error.as_dict() if error is not None else None
    return data


class _WorkflowShape:
    """What a workflow run's answer takes from its workflow, which never changes once it
    is recorded: the workflow, its data form, and its steps in dependency order."""

    __slots__ = ("data", "order", "steps", "workflow")

    def __init__(self, workflow: Workflow) -> None:
        self.workflow = workflow
        self.data = jsonable(workflow.to_dict())
        self.order = topological_order(workflow)
        #: What each step's answer says of the step itself, in dependency order.
        self.steps = [
            (
                step,
                {
                    "name": step.name,
                    "task": step.task,
                    "map": step.map,
                    "dependencies": step.dependencies,
                    "after": list(step.after),
                    "optional": list(step.optional),
                },
            )
            for step in (workflow.steps[name] for name in self.order)
        ]


#: Workflows read lately, by workflow run id: a page that follows a workflow reads it
#: again on every event of its steps. Bounded.
_SHAPES: OrderedDict[str, _WorkflowShape] = OrderedDict()
_SHAPES_KEPT = 64


def _shape_of(run: Run) -> _WorkflowShape:
    shape = _SHAPES.get(run.id)
    if shape is None:
        shape = _SHAPES[run.id] = _WorkflowShape(workflow_of(run))
        if len(_SHAPES) > _SHAPES_KEPT:
            _SHAPES.popitem(last=False)
    else:
        _SHAPES.move_to_end(run.id)
    return shape


def _json_response(data: Any) -> Response:
    """`data` as the JSON answer, made in one pass (values that are not JSON, a task's
    odd result, as text, as `jsonable` does)."""
    return Response(to_json(data, fallback=repr), media_type="application/json")


@router.post(
    "",
    status_code=201,
    response_model=RunOut,
    dependencies=[Operator],
    responses=responses(401, 403, 422),
)
async def submit(body: WorkflowSubmitIn, engine: EngineDep) -> dict[str, Any]:
    """Check a workflow and start it; returns the workflow run once it is committed.

    422 `WorkflowValidationError` (one entry per problem, each naming its step; nothing
    recorded) or `InputValidationError` for the workflow's inputs.
    """
    # Off the loop: a large workflow takes a while to read and check as data.
    workflow = await asyncio.to_thread(_parse, body.workflow, engine.workflow_limits)
    resolve = served_resolver(engine)
    _check_served(workflow, resolve)
    run = await engine.submit_workflow(
        workflow, body.inputs, priority=body.priority, resolve=resolve
    )
    return _out(run)


async def _workflow_run(engine: Engine, run_id: str) -> Run:
    run = await engine.get_run(run_id)
    if not run.task.startswith(WORKFLOW_PREFIX):
        raise NotAWorkflowRunError(f"run {run_id} (task {run.task!r}) is not a workflow run")
    return run


def _step_status(step: Step, runs: list[Run]) -> str:
    """One status per step: `waiting` before its first run, `running` while any is
    unfinished, else the run's status (a map: `failed`, `cancelled`, `skipped` or
    `completed`, the first that some item has, in that order)."""
    if not runs:
        return "waiting"
    statuses = {r.status for r in runs}
    if any(not r.is_finished for r in runs):
        return "running"
    if step.map is None:
        return runs[0].status.value
    for status in (RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.SKIPPED):
        if status in statuses:
            return status.value
    return RunStatus.COMPLETED.value


def _step_out(step: Step, runs: list[Run], fixed: dict[str, Any]) -> dict[str, Any]:
    """A step as `WorkflowStepOut` answers it (`fixed`: what says the step itself), its
    values not yet made JSON."""
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.status.value] = counts.get(run.status.value, 0) + 1
    finished = runs and all(r.status == RunStatus.COMPLETED for r in runs)
    if step.map is None:
        result = runs[0].result if finished else None
    else:
        result = [r.result for r in runs] if finished else None
    return {
        **fixed,
        "status": _step_status(step, runs),
        "counts": counts,
        "result": result,
        "run_ids": [r.id for r in runs],
        "runs": [_raw_out(r) for r in runs],
    }


@router.get(
    "/{run_id}",
    response_model=WorkflowOut,
    dependencies=[Viewer],
    responses=responses(401, 403, 404),
)
async def get_workflow(run_id: str, engine: EngineDep) -> Response:
    """A workflow run, its workflow, and its steps in an order where each comes after the
    steps it depends on (enough to draw the graph and color it)."""
    run = await _workflow_run(engine, run_id)
    shape = _shape_of(run)
    steps = await engine.workflow_steps(run.id)
    # Answered as `WorkflowOut` says, built as such (a test holds the two together):
    # checking a thousand steps against the model again would cost more than the rest.
    return _json_response(
        {
            "run": _raw_out(run),
            "workflow": shape.data,
            "steps": [
                _step_out(step, steps.get(step.name, []), fixed) for step, fixed in shape.steps
            ],
        }
    )


@router.post(
    "/{run_id}/rerun",
    status_code=201,
    response_model=RunOut,
    dependencies=[Operator],
    responses=responses(401, 403, 404, 409, 422),
)
async def rerun(run_id: str, engine: EngineDep) -> dict[str, Any]:
    """A new workflow run of a finished one's workflow and inputs, reusing the steps that
    completed; 409 `WorkflowError` while it is still running."""
    run = await _workflow_run(engine, run_id)
    resolve = served_resolver(engine)
    _check_served(workflow_of(run), resolve)
    return _out(await engine.rerun_workflow(run_id, resolve=resolve))


@router.post(
    "/{run_id}/cancel",
    response_model=RunOut,
    dependencies=[Operator],
    responses=responses(401, 403, 404),
)
async def cancel(run_id: str, engine: EngineDep) -> dict[str, Any]:
    """Cancel a workflow run and its unfinished steps; a finished one is returned as it is."""
    await _workflow_run(engine, run_id)
    return _out(await engine.cancel(run_id))
