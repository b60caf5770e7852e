"""Runs: submit, list (filters and cursor pagination), read, wait, cancel, attempts, logs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from ...runs import Run, RunStatus
from ..encoding import jsonable
from .deps import EngineDep, Operator, Viewer, responses
from .models import AttemptOut, LogsOut, RunOut, RunPage, SubmitIn

__all__ = ["MAX_PAGE", "MAX_WAIT", "router"]

#: The most runs one page holds, and the longest one wait request may last (seconds).
MAX_PAGE = 1000
MAX_WAIT = 60.0

router = APIRouter(prefix="/runs", tags=["runs"])

_STATUSES = ", ".join(s.value for s in RunStatus)


def _out(run: Run) -> dict[str, Any]:
    data: dict[str, Any] = jsonable(run.as_dict())
    return data


@router.post(
    "",
    status_code=201,
    response_model=RunOut,
    dependencies=[Operator],
    responses=responses(401, 403, 404, 422),
)
async def submit_run(body: SubmitIn, engine: EngineDep) -> dict[str, Any]:
    """Validate the inputs and record a run; returns it once it is committed.

    422 (`InputValidationError`, one entry per invalid field, nothing recorded) or 404
    (`UnknownTaskError`). With `idempotency_key`, the run already recorded under the key is
    returned instead of a new one. With `run_at` or `delay` the run waits, `pending`, until
    it is due; any worker serving the task starts it then.
    """
    run = await engine.submit(
        body.task,
        body.inputs,
        priority=body.priority,
        idempotency_key=body.idempotency_key,
        config=body.config,
        parent_id=body.parent_id,
        run_at=body.run_at,
        delay=body.delay,
    )
    return _out(run)


@router.get("", response_model=RunPage, dependencies=[Viewer], responses=responses(401, 403, 422))
async def list_runs(
    engine: EngineDep,
    task: Annotated[str | None, Query(max_length=200, description="Only this task's runs.")] = None,
    status: Annotated[
        list[RunStatus] | None, Query(description=f"Only runs in these statuses ({_STATUSES}).")
    ] = None,
    parent_id: Annotated[str | None, Query(max_length=36)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[
        str | None,
        Query(max_length=36, description="The `next_cursor` of the previous page."),
    ] = None,
) -> dict[str, Any]:
    """Runs, newest first, one page at a time."""
    runs = await engine.list_runs(
        task=task,
        status=[s.value for s in status] if status else None,
        parent_id=parent_id,
        limit=limit,
        before=cursor,
    )
    next_cursor = runs[-1].id if len(runs) == limit else None
    return {"runs": [_out(r) for r in runs], "next_cursor": next_cursor}


@router.get(
    "/{run_id}", response_model=RunOut, dependencies=[Viewer], responses=responses(401, 403, 404)
)
async def get_run(run_id: str, engine: EngineDep) -> dict[str, Any]:
    """One run (404 `RunNotFoundError`)."""
    return _out(await engine.get_run(run_id))


@router.get(
    "/{run_id}/wait",
    response_model=RunOut,
    dependencies=[Viewer],
    responses=responses(401, 403, 404, 408),
)
async def wait_run(
    run_id: str,
    engine: EngineDep,
    timeout: Annotated[float, Query(gt=0, le=MAX_WAIT, description="Seconds.")] = 30.0,
) -> dict[str, Any]:
    """Wait until the run is finished and return it; 408 `WaitTimeoutError` after `timeout`."""
    await engine.get_run(run_id)  # an unknown id is a 404 at once, not after the wait
    return _out(await engine.wait(run_id, timeout=timeout))


@router.post(
    "/{run_id}/cancel",
    response_model=RunOut,
    dependencies=[Operator],
    responses=responses(401, 403, 404),
)
async def cancel_run(run_id: str, engine: EngineDep) -> dict[str, Any]:
    """Cancel a run; a finished run is returned unchanged."""
    return _out(await engine.cancel(run_id))


@router.get(
    "/{run_id}/attempts",
    response_model=list[AttemptOut],
    dependencies=[Viewer],
    responses=responses(401, 403, 404),
)
async def get_attempts(run_id: str, engine: EngineDep) -> list[dict[str, Any]]:
    """The run's attempts, oldest first."""
    await engine.get_run(run_id)
    return [jsonable(a.as_dict()) for a in await engine.get_attempts(run_id)]


@router.get(
    "/{run_id}/logs",
    response_model=LogsOut,
    dependencies=[Viewer],
    responses=responses(401, 403, 404),
)
async def get_logs(
    run_id: str,
    engine: EngineDep,
    after_id: Annotated[int, Query(ge=0, le=2**53)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = MAX_PAGE,
) -> dict[str, Any]:
    """The run's log lines with an id above `after_id`, oldest first."""
    await engine.get_run(run_id)
    lines = await engine.get_logs(run_id, after_id=after_id, limit=limit)
    last = lines[-1].id if lines and lines[-1].id is not None else after_id
    return {"lines": [jsonable(line.as_dict()) for line in lines], "next_after_id": last}
