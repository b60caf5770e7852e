"""Schedules: list, read, add, pause, resume, trigger and remove; the next fire times.

Every route calls `engine.schedules` (a `ScheduleBook`), as the CLI and Python do.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from ...schedules.book import summary
from ...schedules.rules import format_instant
from ..encoding import jsonable
from .deps import EngineDep, Operator, Viewer, responses
from .models import RunOut, _In

__all__ = ["router"]

router = APIRouter(prefix="/schedules", tags=["schedules"])

#: How many of a schedule's last runs its page shows.
LAST_RUNS = 10


class ScheduleIn(_In):
    """A schedule to record: exactly one of `cron` and `interval` (seconds)."""

    name: str = Field(min_length=1, max_length=200)
    task: str = Field(min_length=1, max_length=200)
    cron: str | None = Field(default=None, min_length=1, max_length=200)
    interval: float | None = Field(default=None, gt=0)
    timezone: str = Field(default="UTC", min_length=1, max_length=64)
    inputs: dict[str, Any] = Field(default_factory=dict)
    start: str | None = Field(default=None, max_length=64, description="ISO 8601")
    end: str | None = Field(default=None, max_length=64, description="ISO 8601")
    jitter: float = Field(default=0.0, ge=0, le=86400 * 366)
    catch_up: Literal["skip", "one", "all"] = "skip"
    max_catch_up: int = Field(default=10, ge=1, le=10_000)
    paused: bool = False
    replace: bool = False


class ScheduleOut(BaseModel):
    """A schedule: its rule (and in words), time zone, inputs, when it fires next (ISO
    8601, UTC), whether it is paused, where it comes from (`task`: a task's option;
    `stored`: the CLI or API) and whether it is recorded yet."""

    name: str
    task: str
    kind: Literal["cron", "interval"]
    rule: str
    description: str
    timezone: str
    inputs: dict[str, Any]
    start: str | None
    end: str | None
    jitter: float
    catch_up: str
    max_catch_up: int
    source: str
    paused: bool
    recorded: bool
    next_fire: str | None
    next_fires: list[str]
    last_fire: str | None


class ScheduleDetailOut(ScheduleOut):
    """A schedule and its last runs (newest first), each with its status."""

    runs: list[RunOut]


class FiresOut(BaseModel):
    fires: list[str]


class TriggeredOut(BaseModel):
    """The idempotency key of the run asked for (a worker serving the task starts it)."""

    idempotency_key: str


@router.get(
    "", response_model=list[ScheduleOut], dependencies=[Viewer], responses=responses(401, 403)
)
async def list_schedules(engine: EngineDep) -> list[dict[str, Any]]:
    """Every schedule, recorded ones and those the served tasks' options give, by name."""
    book = engine.schedules
    records = await asyncio.to_thread(book.all)
    now = time.time()
    return [summary(record, now=now) for record in records]


@router.post(
    "",
    status_code=201,
    response_model=ScheduleOut,
    dependencies=[Operator],
    responses=responses(401, 403, 404, 422),
)
async def add_schedule(body: ScheduleIn, engine: EngineDep) -> dict[str, Any]:
    """Record a schedule of a task this server serves; 422 naming the field when the
    rule, the time zone or an input is invalid (nothing recorded)."""
    engine.task(body.task)  # 404 for a task this server does not serve
    record = await asyncio.to_thread(
        functools.partial(
            engine.schedules.add,
            body.name,
            body.task,
            cron=body.cron,
            interval=body.interval,
            timezone=body.timezone,
            inputs=body.inputs,
            start=body.start,
            end=body.end,
            jitter=body.jitter,
            catch_up=body.catch_up,
            max_catch_up=body.max_catch_up,
            paused=body.paused,
            replace=body.replace,
        )
    )
    return summary(record, now=time.time())


@router.get(
    "/{name}/next",
    response_model=FiresOut,
    dependencies=[Viewer],
    responses=responses(401, 403, 404, 422),
)
async def next_fires(
    name: str, engine: EngineDep, count: Annotated[int, Query(ge=1, le=1000)] = 5
) -> dict[str, Any]:
    """The next `count` fire times (ISO 8601, UTC); none while it is paused."""
    fires = await asyncio.to_thread(engine.schedules.next_fires, name, count)
    return {"fires": [format_instant(t) for t in fires]}


@router.post(
    "/{name}/pause",
    response_model=ScheduleOut,
    dependencies=[Operator],
    responses=responses(401, 403, 404),
)
async def pause(name: str, engine: EngineDep) -> dict[str, Any]:
    """Stop the schedule from firing until it is resumed."""
    record = await asyncio.to_thread(engine.schedules.pause, name)
    return summary(record, now=time.time())


@router.post(
    "/{name}/resume",
    response_model=ScheduleOut,
    dependencies=[Operator],
    responses=responses(401, 403, 404),
)
async def resume(name: str, engine: EngineDep) -> dict[str, Any]:
    """Fire again from the first tick after now (what fell while paused is not made up)."""
    record = await asyncio.to_thread(engine.schedules.resume, name)
    return summary(record, now=time.time())


@router.post(
    "/{name}/trigger",
    status_code=202,
    response_model=TriggeredOut,
    dependencies=[Operator],
    responses=responses(401, 403, 404),
)
async def trigger(name: str, engine: EngineDep) -> dict[str, Any]:
    """One run now, recorded as manual: a worker serving the task starts it within a
    second. Answers the idempotency key the run is recorded under."""
    key = await asyncio.to_thread(engine.schedules.trigger, name)
    return {"idempotency_key": key}


@router.get(
    "/{name}",
    response_model=ScheduleDetailOut,
    dependencies=[Viewer],
    responses=responses(401, 403, 404),
)
async def get_schedule(name: str, engine: EngineDep) -> dict[str, Any]:
    """A schedule, its next five fire times and its last runs."""
    record = await asyncio.to_thread(engine.schedules.get, name)
    runs = await asyncio.to_thread(engine.schedules.runs, record.name, LAST_RUNS)
    return {
        **summary(record, now=time.time()),
        "runs": [jsonable(r.as_dict()) for r in runs],
    }


@router.delete(
    "/{name}", status_code=204, dependencies=[Operator], responses=responses(401, 403, 404)
)
async def remove(name: str, engine: EngineDep) -> Response:
    """Forget the schedule (one a task option gives comes back when a worker serving the
    task starts again; pause it to keep it from firing)."""
    await asyncio.to_thread(engine.schedules.remove, name)
    return Response(status_code=204)
