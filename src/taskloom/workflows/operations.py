"""The engine operations on workflows: submit, re-run, and resuming them.

A workflow run is a `Run` whose task is `workflow:<name>`; its `config` holds the
workflow's definition (the data form), so `show`, `rerun` and a resume work from any
process. It is committed, `running`, before `submit` returns: a crash never loses it.

The engine that submits a workflow drives it. If that engine dies (or closes with the
workflow unfinished, or loses its lease), a worker resumes it: an engine that starts, and
every few heartbeats after, claims each `running` workflow run whose driver is gone and
goes on from the step runs in the store (see `execution.py`). An engine in which a step's
task does not resolve gives the workflow back for another engine to resume.
`rerun` makes a new workflow run of a finished one that reuses every step that completed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import jsonschema

from ..aio import resolve as resolve_future
from ..exceptions import InputValidationError, RunNotFoundError, WorkflowError
from ..loading import resolve_task
from ..observability import tracing
from ..runs import Run, RunEventKind, RunStatus, new_run_id
from ..store import RunStore
from ..tasks.definition import TaskDefinition
from ..tasks.validation import field_errors_from_jsonschema, refuse_unstorable
from .execution import WorkflowExecution
from .keys import StepKey, runs_by_step
from .model import Step, Workflow
from .validation import check_workflow

if TYPE_CHECKING:
    from .host import WorkflowHost

logger = logging.getLogger("taskloom.workflows")

__all__ = [
    "child_runs",
    "recover_workflows",
    "rerun_workflow",
    "submit_workflow",
    "validate_workflow_inputs",
    "workflow_of",
    "workflow_steps",
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


def _resolver(host: WorkflowHost) -> Any:
    def resolve(step: Step) -> TaskDefinition:
        if step.definition is not None:
            return host.definition(step.definition)
        found = host.registry.find(step.task)
        if found is not None:
            return found
        return host.definition(resolve_task(step.task, host.registry))

    return resolve


async def submit_workflow(
    host: WorkflowHost,
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
    limits = host.workflow_limits
    definitions = check_workflow(workflow, resolve or _resolver(host), limits=limits)
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
        worker_id=host.worker_id,
        created_at=now,
        started_at=now,
        config={"workflow": definition},
    )
    span = None if host.tracer is None else tracing.start_submit(host.tracer, run)
    execution = WorkflowExecution(host, workflow, definitions, run, reuse=reuse, limits=limits)
    committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    host.record_workflow(run, functools.partial(resolve_future, committed, None))
    try:
        await committed
    except BaseException as exc:
        if span is not None:
            tracing.end(span, "refused", error=exc)
        raise
    if span is not None:
        tracing.end(span, "recorded")
    host.attach(execution)
    host.tell(RunEventKind.SUBMITTED, run)
    execution.start()
    return run.copy()


def workflow_of(run: Run) -> Workflow:
    """The workflow a workflow run ran (read from its record)."""
    definition = (run.config or {}).get("workflow")
    if not run.task.startswith(WORKFLOW_PREFIX) or not isinstance(definition, dict):
        raise WorkflowError(f"run {run.id} (task {run.task!r}) is not a workflow run")
    return Workflow.from_dict(definition)


def workflow_steps(store: RunStore, run_id: str) -> dict[str, list[Run]]:
    """The step runs of workflow run `run_id` by step, map items in item order."""
    return runs_by_step(run_id, child_runs(store, run_id))


def child_runs(store: RunStore, parent_id: str) -> list[Run]:
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
    host: WorkflowHost, run_id: str, *, resolve: Callable[[Step], TaskDefinition] | None = None
) -> Run:
    """A new workflow run of the same workflow and inputs that reuses each step (or map
    item) that completed with the same inputs; the rest runs again (`resolve` as in
    `submit_workflow`)."""
    old = await host.in_thread(host.store.get_run, run_id)
    if old is None:
        raise RunNotFoundError(run_id)
    workflow = workflow_of(old)
    if not old.is_finished:
        raise WorkflowError(
            f"workflow run {run_id} is still {old.status}; wait for it or cancel it first"
        )
    children = await host.in_thread(child_runs, host.store, run_id)
    reuse: dict[str, Run] = {}
    for child in children:
        key = StepKey.of(child)
        if key is not None and key.workflow_id == run_id and child.status == RunStatus.COMPLETED:
            reuse[key.within] = child
    return await submit_workflow(
        host, workflow, old.inputs, priority=old.priority, reuse=reuse, resolve=resolve
    )


async def recover_workflows(host: WorkflowHost, passed_over: set[str]) -> list[str]:
    """Resume the `running` workflow runs whose driver is gone; returns their ids.

    `passed_over`: workflow runs this engine could not resume (a step's task does not
    resolve here); they are left for other engines and not claimed again.
    """
    if not host.drives_workflows:
        return []
    store = host.store
    running = await host.in_thread(
        functools.partial(store.list_runs, status=RunStatus.RUNNING.value, limit=10_000)
    )
    names = {
        r.task
        for r in running
        if r.task.startswith(WORKFLOW_PREFIX)
        and r.worker_id != host.worker_id
        and r.id not in passed_over
    }
    if not names:
        return []
    claimed = await host.in_thread(store.claim_orphaned_runs, host.worker_id, sorted(names))
    resumed: list[str] = []
    for run in claimed:
        if run.status != RunStatus.RUNNING or host.driving(run.id):
            continue
        if run.id in passed_over:
            host.release_workflow(run.id)
            continue
        try:
            workflow = workflow_of(run)
            definitions = check_workflow(workflow, _resolver(host), limits=host.workflow_limits)
        except Exception as exc:  # a step's task does not resolve in this process
            logger.warning(
                "taskloom: workflow run %s (%s) cannot be resumed here, left for another "
                "engine: %s",
                run.id,
                run.task,
                exc,
                extra={"run_id": run.id, "task": run.task, "attempt": run.attempts},
            )
            passed_over.add(run.id)
            host.release_workflow(run.id)
            continue
        children = await host.in_thread(child_runs, store, run.id)
        existing: dict[str, Run] = {}
        for child in children:
            key = StepKey.of(child)
            if key is not None and key.workflow_id == run.id:
                existing[key.within] = child
        run.worker_id = host.worker_id
        execution = WorkflowExecution(
            host, workflow, definitions, run, limits=host.workflow_limits, existing=existing
        )
        host.attach(execution)
        logger.info(
            "taskloom: resuming workflow run %s (%s): %d of its step runs are recorded",
            run.id,
            run.task,
            len(existing),
            extra={"run_id": run.id, "task": run.task, "attempt": run.attempts},
        )
        execution.start()
        resumed.append(run.id)
    return resumed
