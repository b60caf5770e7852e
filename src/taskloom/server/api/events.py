"""`GET /api/events`: live events as Server-Sent Events.

Each event's SSE `event` field is its type (`run`, `log`, `service`, `service_log`,
`service_attribute`, `lagged`) and its `data` a JSON object: `{"kind": "finished", "run":
{...}}` for a run, `{"run_id", "task", "parent_id", "line": {...}}` for a log line, a
service's status for a service, `{"service", "values", "changed_at", "changed_by"}` for new
values of a service class's attributes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from sse_starlette import EventSourceResponse, ServerSentEvent

from ..events import Event, EventFilter
from .deps import HubDep, Viewer, responses

__all__ = ["router"]
#: Seconds between two comment lines that keep an idle connection (and its proxies) open.
PING_INTERVAL = 15

router = APIRouter(tags=["events"], dependencies=[Viewer])


@router.get(
    "/events",
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "a stream of events"},
        **responses(401, 403, 422),
    },
)
async def events(
    hub: HubDep,
    types: Annotated[
        list[Literal["run", "log", "service", "service_log", "service_attribute"]] | None,
        Query(alias="type", description="Only these types."),
    ] = None,
    run_id: Annotated[str | None, Query(max_length=36)] = None,
    task: Annotated[str | None, Query(max_length=200)] = None,
    service: Annotated[str | None, Query(max_length=200)] = None,
    parent_id: Annotated[
        str | None,
        Query(max_length=36, description="Only this run and its children (a workflow's steps)."),
    ] = None,
) -> EventSourceResponse:
    """Follow runs, their log lines, services, their log lines and the attributes of
    service classes as they change."""
    wanted = frozenset[str](types) if types else None
    subscription = hub.subscribe(
        EventFilter(types=wanted, run_id=run_id, task=task, service=service, parent_id=parent_id)
    )

    async def stream() -> AsyncIterator[ServerSentEvent | bytes]:
        try:
            yield ServerSentEvent(comment="subscribed")
            async for batch in subscription.batches():
                # One write for what waited: the bytes of its events, one after another.
                yield b"".join([_sse(event).encode() for event in batch])
        finally:
            hub.unsubscribe(subscription)

    return EventSourceResponse(stream(), ping=PING_INTERVAL)


def _sse(event: Event) -> ServerSentEvent:
    return ServerSentEvent(data=event.json(), event=event.type)
