"""Fires the due ticks of schedules, in every long-running engine.

There is no scheduler process to lose: each engine that serves a schedule's task looks
at the schedules due at least every `LOOK_EVERY` seconds (sooner when the next tick is
sooner), inserts one run per tick and then moves the schedule on with a compare-and-set.
A tick's run carries the key `schedule:<name>@<tick, ISO 8601 UTC>`, unique in the store:
two engines that fire the same tick insert one run between them, and an engine killed
between the insert and the move leaves the tick to the next look, which inserts nothing
new. A manual trigger (`taskloom schedule trigger`) is keyed by the time it was asked.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..exceptions import TaskloomError
from ..runs import Run
from ..store import ScheduleRecord
from .rules import Rule, format_instant, rule_from_record

if TYPE_CHECKING:
    from ..engine import Engine
    from ..tasks.definition import TaskDefinition

__all__ = [
    "LOOK_EVERY",
    "Ticker",
    "manual_key",
    "record_for",
    "rule_of",
    "tick_key",
    "tick_prefix",
]

logger = logging.getLogger("taskloom.schedules")

#: The longest time between two looks at the schedules due.
LOOK_EVERY = 1.0


def tick_prefix(name: str) -> str:
    """How the idempotency keys of a schedule's runs begin."""
    return f"schedule:{name}@"


def tick_key(name: str, tick: float) -> str:
    """The idempotency key of a tick's run."""
    return f"{tick_prefix(name)}{format_instant(tick)}"


def manual_key(name: str, requested_at: float) -> str:
    """The idempotency key of a run triggered by hand."""
    return f"{tick_prefix(name)}manual:{format_instant(requested_at)}"


def record_for(
    name: str, task: str, rule: Rule, *, source: str, now: float, paused: bool = False
) -> ScheduleRecord:
    """A new schedule's record: its first tick is the first after `now`."""
    fields = rule.as_record()
    return ScheduleRecord(
        name=name,
        task=task,
        kind=fields["kind"],
        rule=fields["rule"],
        timezone=fields["timezone"],
        inputs=fields["inputs"],
        start_at=fields["start_at"],
        end_at=fields["end_at"],
        jitter=fields["jitter"],
        catch_up=fields["catch_up"],
        max_catch_up=fields["max_catch_up"],
        source=source,
        paused=paused,
        next_fire_at=rule.first_fire(now),
        created_at=now,
        updated_at=now,
    )


def same_rule(record: ScheduleRecord, other: ScheduleRecord) -> bool:
    """Whether two records say the same schedule (what fires, when and how)."""
    return all(getattr(record, k) == getattr(other, k) for k in _RULE_KEYS)


_RULE_KEYS = (
    "task",
    "kind",
    "rule",
    "timezone",
    "inputs",
    "start_at",
    "end_at",
    "jitter",
    "catch_up",
    "max_catch_up",
)


class Ticker:
    """Fires the schedules of the tasks an engine serves (one per long-running engine)."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    @property
    def _store(self) -> Any:
        store = self._engine.store
        assert store is not None
        return store

    async def start(self) -> None:
        await self.register(list(self._engine.registry))
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def wake(self) -> None:
        """Look again now (a schedule was added, resumed or triggered)."""
        self._wake.set()

    async def register(self, definitions: list[TaskDefinition]) -> None:
        """Record the schedules given as task options (`schedule=`), named after their task.

        A schedule already recorded from the same option is kept as it is (paused or not,
        its next tick); one whose option changed starts from its first tick after now.
        A schedule of that name stored through the CLI or API is left alone.
        """
        wanted = [(d, d.options.schedule) for d in definitions if d.options.schedule is not None]
        if not wanted:
            return
        await asyncio.to_thread(self._register, wanted)
        self.wake()

    def _register(self, wanted: list[tuple[TaskDefinition, Rule]]) -> None:
        store = self._store
        now = self._clock()
        for definition, rule in wanted:
            name = definition.name
            record = record_for(name, name, rule, source="task", now=now)
            existing: ScheduleRecord | None = store.get_schedule(name)
            if existing is None:
                store.save_schedule(record)
            elif existing.source != "task":
                logger.warning(
                    "taskloom: task %r has a schedule option, but a stored schedule has "
                    "its name; the stored one is kept",
                    name,
                )
            elif not same_rule(existing, record):
                record.paused = existing.paused
                record.created_at = existing.created_at
                record.last_fire_at = existing.last_fire_at
                store.save_schedule(record)

    async def _loop(self) -> None:
        while True:
            try:
                following = await self.fire_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("taskloom: firing schedules failed: %s", exc)
                following = None
            wait = LOOK_EVERY
            if following is not None:
                wait = min(wait, max(0.0, following - self._clock()))
            try:
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()

    async def fire_due(self) -> float | None:
        """Fire what is due now; returns the soonest next tick (None: none known)."""
        store = self._store
        now = self._clock()
        served = self._engine.registry.names  # an engine that serves a task fires it
        due = await asyncio.to_thread(functools.partial(store.due_schedules, now, tasks=served))
        for record in due:
            if record.trigger_requested_at is not None:
                await self._trigger(record)
            if record.paused or record.next_fire_at is None or record.next_fire_at > now:
                continue
            await self._fire(record, now)
        next_due: float | None = await asyncio.to_thread(
            functools.partial(store.next_schedule_due, tasks=served)
        )
        return next_due

    async def _fire(self, record: ScheduleRecord, now: float) -> None:
        rule = rule_of(record)
        assert record.next_fire_at is not None
        ticks, following = rule.due(record.next_fire_at, now)
        for tick in ticks:
            due = tick + rule.delay_of(record.name, tick)
            await self._submit(record, tick_key(record.name, tick), due if due > now else None)
        moved = await asyncio.to_thread(
            functools.partial(
                self._store.advance_schedule,
                record.name,
                expected=record.next_fire_at,
                next_fire_at=following,
                fired=ticks[-1] if ticks else None,
            )
        )
        if ticks and not moved:
            logger.debug("taskloom: schedule %r was moved on by another engine", record.name)

    async def _trigger(self, record: ScheduleRecord) -> None:
        requested = record.trigger_requested_at
        assert requested is not None
        await self._submit(record, manual_key(record.name, requested), None)
        await asyncio.to_thread(
            functools.partial(self._store.clear_schedule_trigger, record.name, expected=requested)
        )

    async def _submit(self, record: ScheduleRecord, key: str, run_at: float | None) -> Run | None:
        try:
            run = await self._engine.submit(
                record.task, dict(record.inputs), idempotency_key=key, run_at=run_at
            )
        except TaskloomError as exc:
            # Inputs the task no longer accepts: the tick is not fired; said once a tick.
            logger.warning("taskloom: schedule %r could not start a run: %s", record.name, exc)
            return None
        return run


def rule_of(record: ScheduleRecord) -> Rule:
    """The rule a schedule's record keeps."""
    return rule_from_record(
        {
            "kind": record.kind,
            "rule": record.rule,
            "timezone": record.timezone,
            "inputs": record.inputs,
            "start_at": record.start_at,
            "end_at": record.end_at,
            "jitter": record.jitter,
            "catch_up": record.catch_up,
            "max_catch_up": record.max_catch_up,
        }
    )
