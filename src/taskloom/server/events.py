"""Live events for the API: what happens to runs and services, as Server-Sent Events.

An `EventHub` listens to the engine (`engine.add_listener`: a run submitted, started,
progressing, logging, retrying, finished) and to its supervisor (every state change of a
service, every line it logs, every change of an attribute of a service class), and hands
each event to every subscriber's queue. A queue is bounded: a client
that reads too slowly loses events rather than growing the server's memory, and is told so
by a `lagged` event with the count it lost. A stream takes what its queue holds in one
batch (`Subscription.batches`), so a burst of events costs one write to the client, not
one each.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic_core import to_json

from ..engine import Engine, RunEvent
from ..services.status import AttributeChange, ServiceStatus
from ..store import ServiceLogLine
from .encoding import jsonable

__all__ = ["QUEUE_SIZE", "Event", "EventFilter", "EventHub", "Subscription"]

#: Events a subscriber may have waiting before newer ones are dropped. A burst is large:
#: one commit of a busy worker ends hundreds of runs, each told as it was read back.
QUEUE_SIZE = 10_000
#: The most events a stream takes from its queue in one batch.
BATCH_SIZE = 500


@dataclass(frozen=True, slots=True)
class Event:
    """One event: `type` is `run`, `log`, `service`, `service_log`, `service_attribute` or
    `lagged`; `data` is JSON-ready, or None when `text` holds it already encoded (a run's
    event is encoded once, whatever the number of subscribers)."""

    type: str
    data: dict[str, Any] | None
    run_id: str | None = None
    task: str | None = None
    service: str | None = None
    parent_id: str | None = None
    text: str | None = None

    def json(self) -> str:
        """`data` as JSON text."""
        if self.text is not None:
            return self.text
        return json.dumps(self.data, separators=(",", ":"))


@dataclass(frozen=True, slots=True, kw_only=True)
class EventFilter:
    """Which events a subscriber wants; None means any. `parent_id` keeps the events of
    that run and of its children (a workflow run and its steps)."""

    types: frozenset[str] | None = None
    run_id: str | None = None
    task: str | None = None
    service: str | None = None
    parent_id: str | None = None

    def wants(self, event: Event) -> bool:
        if self.types is not None and event.type not in self.types:
            return False
        if self.run_id is not None and event.run_id != self.run_id:
            return False
        if self.task is not None and event.task != self.task:
            return False
        if self.parent_id is not None and self.parent_id not in (event.parent_id, event.run_id):
            return False
        return self.service is None or event.service == self.service


@dataclass(slots=True, eq=False)  # compared and hashed by identity, kept in a set
class Subscription:
    filter: EventFilter
    queue: asyncio.Queue[Event] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    dropped: int = 0

    def offer(self, event: Event) -> None:
        if not self.filter.wants(event):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1

    async def events(self) -> AsyncIterator[Event]:
        async for batch in self.batches():
            for event in batch:
                yield event

    async def batches(self, limit: int = BATCH_SIZE) -> AsyncIterator[list[Event]]:
        """Each time something is waiting: all of it (at most `limit`), oldest first, after
        a `lagged` event if events were dropped since the last batch."""
        queue = self.queue
        while True:
            batch = [await queue.get()]
            while len(batch) < limit and not queue.empty():
                batch.append(queue.get_nowait())
            if self.dropped:
                lost, self.dropped = self.dropped, 0
                batch.insert(0, Event("lagged", {"dropped": lost}))
            yield batch


class EventHub:
    """Fans the engine's and the supervisor's events out to subscribers (on the loop)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._subscriptions: set[Subscription] = set()
        self._removers: list[Callable[[], None]] = []

    def start(self) -> None:
        self._removers.append(self._engine.add_listener(self._on_run))
        supervisor = self._engine.supervisor
        supervisor.add_listener(self._on_service)
        self._removers.append(lambda: supervisor.remove_listener(self._on_service))
        supervisor.add_log_listener(self._on_service_log)
        self._removers.append(lambda: supervisor.remove_log_listener(self._on_service_log))
        supervisor.add_attribute_listener(self._on_attribute)
        self._removers.append(lambda: supervisor.remove_attribute_listener(self._on_attribute))

    def close(self) -> None:
        for remove in self._removers:
            remove()
        self._removers.clear()

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    def subscribe(self, event_filter: EventFilter) -> Subscription:
        subscription = Subscription(event_filter)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def publish(self, event: Event) -> None:
        for subscription in list(self._subscriptions):
            subscription.offer(event)

    def _on_run(self, event: RunEvent) -> None:
        if not self._subscriptions:
            return
        run = event.run
        if event.kind == "log" and event.line is not None:
            data = {
                "run_id": run.id,
                "task": run.task,
                "parent_id": run.parent_id,
                "line": event.line.as_dict(),
            }
            self.publish(Event("log", data, run.id, run.task, parent_id=run.parent_id))
        else:
            record = event.record
            if record is None:
                record = to_json(run.as_dict(), fallback=repr).decode()
            text = f'{{"kind":"{event.kind}","run":{record}}}'
            self.publish(Event("run", None, run.id, run.task, parent_id=run.parent_id, text=text))

    def _on_service(self, status: ServiceStatus) -> None:
        if self._subscriptions:
            data = jsonable(status.as_dict())
            self.publish(Event("service", data, service=status.name))

    def _on_service_log(self, line: ServiceLogLine) -> None:
        if self._subscriptions:
            self.publish(Event("service_log", jsonable(line.as_dict()), service=line.service))

    def _on_attribute(self, change: AttributeChange) -> None:
        if self._subscriptions:
            data = jsonable(change.as_dict())
            self.publish(Event("service_attribute", data, service=change.service))
