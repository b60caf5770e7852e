"""The engine operations on workflows: submit, re-run, and what recovery does with them.

A workflow run is a `Run` whose task is `workflow:<name>`; its `config` holds the
workflow's definition (the data form), so `show` and `rerun` work from any process.
It is committed, `running`, before `submit` returns: a crash never loses it.

An engine that dies takes its workflows' schedulers with it. Recovery does not resume
them: an engine that starts (and every five heartbeats after) claims each `running`
workflow run whose engine is dead, cancels its unfinished step runs and ends it `failed`
with `WorkerLostError`. `rerun` then makes a new workflow run that reuses every step that
had completed. An engine that closes cleanly does the same to its own unfinished
workflows (their error type is `Interrupted`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import jsonschema

from ..exceptions import (
    InputValidationError,
    RunNotFoundError,
    WorkerLostError,
    WorkflowError,
)
from ..loading import resolve_task
from ..runs import ErrorInfo, Run, RunStatus, new_run_id
from ..store import Store
from ..tasks.definition import TaskDefinition
from ..tasks.validation import field_errors_from_jsonschema, refuse_unstorable
from .model import Step, Workflow
from .scheduler import WorkflowExecution
from .validation import check_workflow

if TYPE_CHECKING:
    from ..engine.engine import Engine

__all__ = [
    "child_runs",
    "recover_workflows",
    "rerun_workflow",
    "submit_workflow",
    "validate_workflow_inputs",
    "workflow_of",
]

WORKFLOW_PREFIX = "workflow:"


def validate_workflow_inputs(workflow: Workflow, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Check the workflow's inputs against their schemas; defaults are filled in."""
    schema = workflow.input_schema
    values = dict(inputs)
    validator = jsonschema.Draft202012Validator(schema)
    errors = field_errors_from_jsonschema(schema, values, validator)
    if errors:
        raise InputValidationError(workflow.task_name, errors)
    for key, property_schema in workflow.input_schemas.items():
        if key not in values and "default" in property_schema:
            values[key] = property_schema["default"]
    return values


def _resolver(engine: Engine) -> Any:
    def resolve(step: Step) -> TaskDefinition:
        if step.definition is not None:
            return engine._definition(step.definition)
        found = engine.registry.find(step.task)
        if found is not None:
            return found
        return engine._definition(resolve_task(step.task, engine.registry))

    return resolve


async def submit_workflow(
    engine: Engine,
    workflow: Workflow,
    inputs: Mapping[str, Any] | None = None,
    *,
    priority: int | None = None,
    reuse: dict[str, Run] | None = None,
    resolve: Callable[[Step], TaskDefinition] | None = None,
) -> Run:
    """Check the workflow, record its run (committed), and start its first steps.

    `resolve` finds each step's task (by default: the step's task object, a registered
    name, or a `module:attr` / `file.py:attr` target, imported); an error it raises is a
    `WorkflowValidationError` naming the step. A workflow over the engine's
    `workflow_limits` is refused first (`WorkflowLimitError`).
    """
    limits = engine.workflow_limits
    definitions = check_workflow(workflow, resolve or _resolver(engine), limits=limits)
    stored = validate_workflow_inputs(workflow, inputs or {})
    definition = workflow.to_dict()
    refuse_unstorable(workflow.task_name, {"inputs": stored, "workflow": definition})
    now = time.time()
    run = Run(
        id=new_run_id(),
        task=workflow.task_name,
        inputs=stored,
        status=RunStatus.RUNNING,
        priority=0 if priority is None else int(priority),
        attempts=1,
        worker_id=engine.worker_id,
        created_at=now,
        started_at=now,
        config={"workflow": definition},
    )
    execution = WorkflowExecution(engine, workflow, definitions, run, reuse=reuse, limits=limits)
    committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    assert engine._writer is not None
    engine._writer.check_available(workflow.task_name)
    engine._writer.submit_run(run, functools.partial(_settle_none, committed))
    await committed
    engine._workflows[run.id] = execution
    if engine._listeners:
        engine._emit("submitted", run)
    execution.start()
    return run.copy()


def workflow_of(run: Run) -> Workflow:
    """The workflow a workflow run ran (read from its record)."""
    definition = (run.config or {}).get("workflow")
    if not run.task.startswith(WORKFLOW_PREFIX) or not isinstance(definition, dict):
        raise WorkflowError(f"run {run.id} (task {run.task!r}) is not a workflow run")
    return Workflow.from_dict(definition)


def child_runs(store: Store, parent_id: str) -> list[Run]:
    """Every run whose parent is `parent_id`, oldest first (read page by page)."""
    found: list[Run] = []
    before: str | None = None
    while True:
        page = store.list_runs(parent_id=parent_id, limit=10_000, before=before)
        found.extend(page)
        if len(page) < 10_000:
            break
        before = page[-1].id
    found.reverse()
    return found


async def rerun_workflow(
    engine: Engine, run_id: str, *, resolve: Callable[[Step], TaskDefinition] | None = None
) -> Run:
    """A new workflow run of the same workflow and inputs that reuses each step (or map
    item) that completed with the same inputs; the rest runs again (`resolve` as in
    `submit_workflow`)."""
    old = await engine.get_run(run_id)
    workflow = workflow_of(old)
    if not old.is_finished:
        raise WorkflowError(
            f"workflow run {run_id} is still {old.status}; wait for it or cancel it first"
        )
    assert engine.store is not None
    children = await engine._in_thread(child_runs, engine.store, run_id)
    reuse: dict[str, Run] = {}
    for child in children:
        key = child.idempotency_key or ""
        prefix, _, suffix = key.partition("/")
        if prefix == run_id and child.status == RunStatus.COMPLETED:
            reuse[suffix] = child
    return await submit_workflow(
        engine, workflow, old.inputs, priority=old.priority, reuse=reuse, resolve=resolve
    )


async def recover_workflows(engine: Engine) -> list[str]:
    """End the `running` workflow runs of dead engines `failed`; returns their ids."""
    store = engine.store
    assert store is not None
    running = await engine._in_thread(
        functools.partial(store.list_runs, status=RunStatus.RUNNING.value, limit=10_000)
    )
    names = {
        r.task
        for r in running
        if r.task.startswith(WORKFLOW_PREFIX) and r.worker_id != engine.worker_id
    }
    if not names:
        return []
    claimed = await engine._in_thread(store.claim_orphaned_runs, engine.worker_id, sorted(names))
    ended: list[str] = []
    for run in claimed:
        if run.status != RunStatus.RUNNING or run.id in engine._workflows:
            continue
        children = await engine._in_thread(child_runs, store, run.id)
        for child in children:
            if not child.is_finished:
                with contextlib.suppress(RunNotFoundError):
                    await engine.cancel(child.id)
        lost = WorkerLostError(
            f"the engine running workflow run {run.id} ({run.task!r}) stopped before it "
            f"finished; `taskloom workflow rerun {run.id}` reuses its completed steps"
        )
        await end_workflow_run(engine, run.id, ErrorInfo.from_exception(lost))
        ended.append(run.id)
    return ended


async def end_workflow_run(engine: Engine, run_id: str, error: ErrorInfo) -> None:
    error.traceback = None
    committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    assert engine._writer is not None
    engine._writer.finish(
        run_id,
        {"status": RunStatus.FAILED, "error": error, "finished_at": time.time()},
        None,
        None,
        functools.partial(_settle_none, committed),
    )
    await committed


def _settle_none(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(None)
