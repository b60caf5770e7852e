"""`ScheduleBook`: the operations on schedules that every surface calls.

The CLI, the HTTP API and Python (`engine.schedules`) list, add, pause, resume, remove
and trigger schedules through one `ScheduleBook` over the store. Schedules given as task
options are shown too before anything records them (`options`), so `taskloom schedules
tasks.py` lists them on a fresh database.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from ..runs import Run
from ..store import RunStore, ScheduleRecord, ScheduleStore
from ..tasks.definition import TaskDefinition
from .errors import ScheduleError, ScheduleNotFoundError
from .rules import Cron, Interval, Rule, format_instant
from .ticker import record_for, rule_of, tick_prefix

__all__ = ["NAME_PATTERN", "ScheduleBook", "summary", "upcoming"]

#: A stored schedule's (and a webhook's) name: 1 to 200 letters, digits and `._-:`, a
#: segment of a URL path. A task option's schedule is named after its task.
NAME_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,200}")


def summary(record: ScheduleRecord, *, now: float, count: int = 5) -> dict[str, Any]:
    """What the CLI, the API and the dashboard show of a schedule (JSON-ready)."""
    rule = rule_of(record)
    fires = [format_instant(t) for t in upcoming(record, now, count)]
    return {
        "name": record.name,
        "task": record.task,
        "kind": record.kind,
        "rule": record.rule,
        "description": rule.describe(),
        "timezone": record.timezone,
        "inputs": record.inputs,
        "start": None if record.start_at is None else format_instant(record.start_at),
        "end": None if record.end_at is None else format_instant(record.end_at),
        "jitter": record.jitter,
        "catch_up": record.catch_up,
        "max_catch_up": record.max_catch_up,
        "source": record.source,
        "paused": record.paused,
        "recorded": bool(record.created_at),
        "next_fire": fires[0] if fires else None,
        "next_fires": fires,
        "last_fire": None if record.last_fire_at is None else format_instant(record.last_fire_at),
    }


def upcoming(record: ScheduleRecord, now: float, count: int = 5) -> list[float]:
    """The next `count` fire times of a schedule: none while it is paused or once its
    rule has ended; a tick due (or overdue) first, then the rule's own after now."""
    first = record.next_fire_at
    if record.paused or first is None:
        return []
    rule = rule_of(record)
    if first < now:
        return [first, *rule.next_fires(now, count - 1)][:count]
    return rule.next_fires(first - 1e-6, count)


class BookStore(ScheduleStore, RunStore, Protocol):
    """What a book reads and writes: schedules, and the runs they made."""


class ScheduleBook:
    """Schedules on a store; `tasks` are the task definitions known here (to check a new
    schedule's task and inputs, and to show task-option schedules not recorded yet)."""

    def __init__(
        self,
        store: BookStore,
        tasks: Iterable[TaskDefinition] = (),
        *,
        clock: Callable[[], float] = time.time,
        changed: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._tasks = {d.name: d for d in tasks}
        self._clock = clock
        self._changed = changed or (lambda: None)

    # reading -----------------------------------------------------------------------------
    def options(self) -> list[ScheduleRecord]:
        """The schedules task options give, as they would be recorded now."""
        now = self._clock()
        return [
            record_for(name, name, d.options.schedule, source="task", now=now)
            for name, d in sorted(self._tasks.items())
            if d.options.schedule is not None
        ]

    def all(self) -> list[ScheduleRecord]:
        """Every recorded schedule, and the task-option schedules not recorded yet (with
        `created_at` 0), by name."""
        recorded = {r.name: r for r in self._store.list_schedules()}
        for record in self.options():
            if record.name not in recorded:
                record.created_at = record.updated_at = 0.0
                recorded[record.name] = record
        return [recorded[name] for name in sorted(recorded)]

    def get(self, name: str) -> ScheduleRecord:
        """The schedule `name` (recorded, or given by a task option); raises
        `ScheduleNotFoundError`."""
        record = self._store.get_schedule(name)
        if record is not None:
            return record
        for option in self.options():
            if option.name == name:
                option.created_at = option.updated_at = 0.0
                return option
        raise ScheduleNotFoundError(name)

    def next_fires(self, name: str, count: int = 5) -> list[float]:
        """The next `count` fire times of a schedule (none while it is paused)."""
        return upcoming(self.get(name), self._clock(), count)

    def runs(self, name: str, limit: int = 10) -> list[Run]:
        """The last `limit` runs the schedule made (its ticks' and its manual ones),
        newest first."""
        prefix = tick_prefix(name)
        manual = self._store.runs_keyed(prefix + "manual:", limit=limit)
        # Keys sort by tick; the manual ones ("manual:...") sort after every tick's.
        ticked = [
            r
            for r in self._store.runs_keyed(prefix, limit=limit + len(manual))
            if not (r.idempotency_key or "").startswith(prefix + "manual:")
        ]
        made = sorted([*manual, *ticked[:limit]], key=lambda r: r.created_at, reverse=True)
        return made[:limit]

    # changing ----------------------------------------------------------------------------
    def add(
        self,
        name: str,
        task: str,
        *,
        cron: str | None = None,
        interval: float | None = None,
        timezone: str = "UTC",
        inputs: Mapping[str, Any] | None = None,
        start: Any = None,
        end: Any = None,
        jitter: float = 0.0,
        catch_up: str = "skip",
        max_catch_up: int = 10,
        paused: bool = False,
        replace: bool = False,
    ) -> ScheduleRecord:
        """Record a schedule of `task` on a cron rule or an interval (seconds). Its task
        and inputs are checked when the task is known here; nothing is recorded when
        anything is invalid (`ScheduleError`, `InputValidationError`)."""
        if not isinstance(name, str) or NAME_PATTERN.fullmatch(name) is None:
            raise ScheduleError(
                f"name: {name!r} is not a schedule name (expected 1 to 200 letters, digits "
                "or ._-:)",
                field="name",
            )
        if (cron is None) == (interval is None):
            raise ScheduleError(
                "cron: give exactly one of a cron expression and an interval", field="cron"
            )
        common: dict[str, Any] = {
            "timezone": timezone,
            "inputs": dict(inputs or {}),
            "start": start,
            "end": end,
            "jitter": jitter,
            "catch_up": catch_up,
            "max_catch_up": max_catch_up,
        }
        rule: Rule = (
            Cron(cron, **common) if cron is not None else Interval(seconds=interval, **common)  # type: ignore[arg-type]
        )
        definition = self._tasks.get(task)
        if definition is not None:
            definition.validate_inputs(dict(inputs or {}))
        elif self._tasks:
            known = ", ".join(sorted(self._tasks))
            raise ScheduleError(f"task: unknown task {task!r} (known here: {known})", field="task")
        existing = self._store.get_schedule(name)
        if existing is not None and not replace:
            raise ScheduleError(
                f"name: a schedule named {name!r} exists (remove it first, or replace it)",
                field="name",
            )
        record = record_for(name, task, rule, source="stored", now=self._clock(), paused=paused)
        self._store.save_schedule(record)
        self._changed()
        return record

    def pause(self, name: str) -> ScheduleRecord:
        record = self._recorded(name)
        self._store.set_schedule_paused(
            name, True, next_fire_at=record.next_fire_at, now=self._clock()
        )
        return self._recorded(name)

    def resume(self, name: str) -> ScheduleRecord:
        """Fire again from the first tick after now: what fell while paused is not made up."""
        record = self._recorded(name)
        if record.paused:
            now = self._clock()
            following = rule_of(record).first_fire(now)
            self._store.set_schedule_paused(name, False, next_fire_at=following, now=now)
            self._changed()
        return self._recorded(name)

    def remove(self, name: str) -> None:
        """Forget a schedule. One a task option gives comes back when an engine serving
        the task starts again: pause it to keep it from firing."""
        if not self._store.delete_schedule(name):
            raise ScheduleNotFoundError(name)

    def trigger(self, name: str) -> str:
        """Ask for one run now, recorded as manual; returns the run's idempotency key
        (an engine serving the task starts it at its next look, within a second). A
        trigger asked while another one waits joins it: the same key, one run."""
        from .ticker import manual_key

        self._recorded(name)
        waiting = self._store.request_schedule_trigger(name, at=self._clock())
        if waiting is None:
            raise ScheduleNotFoundError(name)
        self._changed()
        return manual_key(name, waiting)

    def _recorded(self, name: str) -> ScheduleRecord:
        record = self._store.get_schedule(name)
        if record is None:
            if any(option.name == name for option in self.options()):
                self._register_option(name)
                record = self._store.get_schedule(name)
            if record is None:
                raise ScheduleNotFoundError(name)
        return record

    def _register_option(self, name: str) -> None:
        """A task-option schedule nothing recorded yet is recorded when it is changed."""
        for option in self.options():
            if option.name == name:
                self._store.save_schedule(option)
