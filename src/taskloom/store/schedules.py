"""Store methods for schedules and webhooks, on the SQL and in-memory backends.

Kept apart from `sql.py` and `memory.py` (which take them in as mixins), as the pipeline
methods are: they share nothing with runs but the connection.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pydantic_core import PydanticSerializationError, to_json
from sqlalchemy import Table, delete, func, select, text, update
from sqlalchemy.engine import Engine

from ..exceptions import StoreError
from .base import HookRecord, ScheduleRecord
from .schema import hooks, schedules

__all__ = ["MemorySchedules", "SqlSchedules"]

_SCHEDULE_COLUMNS = tuple(c.name for c in schedules.columns)
#: Written as the partial index `ix_schedules_due` says it, so that both databases use the
#: index (`paused IS false` on PostgreSQL and `paused = 0` on SQLite scan the table).
_IN_FORCE = text("NOT schedules.paused")


def schedule_row(record: ScheduleRecord) -> dict[str, Any]:
    try:
        inputs = to_json(record.inputs).decode()
    except PydanticSerializationError as exc:
        message = f"could not save schedule {record.name!r}: inputs are not JSON: {exc}"
        raise StoreError(message) from exc
    row = {name: getattr(record, name) for name in _SCHEDULE_COLUMNS}
    row["inputs"] = inputs
    row["paused"] = bool(record.paused)
    return row


def schedule_from_row(row: Sequence[Any]) -> ScheduleRecord:
    values = dict(zip(_SCHEDULE_COLUMNS, row, strict=True))
    values["inputs"] = json.loads(values["inputs"])
    values["paused"] = bool(values["paused"])
    return ScheduleRecord(**values)


class SqlSchedules:
    """The schedule and webhook methods of `SqlStore`."""

    if TYPE_CHECKING:

        def _use(self, what: str) -> AbstractContextManager[Engine]: ...

        def _upsert(self, what: str, table: Table, values: dict[str, Any]) -> None: ...

        def _writer(self) -> Engine: ...

    def save_schedule(self, record: ScheduleRecord) -> None:
        self._upsert("save a schedule", schedules, schedule_row(record))

    def get_schedule(self, name: str) -> ScheduleRecord | None:
        query = select(schedules).where(schedules.c.name == name)
        with self._use("read a schedule") as engine, engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else schedule_from_row(row)

    def list_schedules(self) -> list[ScheduleRecord]:
        query = select(schedules).order_by(schedules.c.name)
        with self._use("list schedules") as engine, engine.connect() as conn:
            rows = conn.execute(query).all()
        return [schedule_from_row(r) for r in rows]

    def delete_schedule(self, name: str) -> bool:
        stmt = delete(schedules).where(schedules.c.name == name)
        with self._use("remove a schedule"), self._writer().begin() as conn:
            return conn.execute(stmt).rowcount > 0

    def due_schedules(
        self, now: float, *, tasks: Collection[str] | None = None, limit: int = 100
    ) -> list[ScheduleRecord]:
        among = () if tasks is None else (schedules.c.task.in_(sorted(tasks)),)
        due = (
            select(schedules)
            .where(_IN_FORCE, schedules.c.next_fire_at <= now, *among)
            .order_by(schedules.c.next_fire_at, schedules.c.name)
            .limit(limit)
        )
        triggered = (
            select(schedules)
            .where(schedules.c.trigger_requested_at.is_not(None), *among)
            .order_by(schedules.c.name)
            .limit(limit)
        )
        with self._use("read the schedules due") as engine, engine.connect() as conn:
            rows = conn.execute(due).all()
            more = conn.execute(triggered).all()
        found = [schedule_from_row(r) for r in rows]
        names = {s.name for s in found}
        found.extend(schedule_from_row(r) for r in more if r.name not in names)
        return found

    def request_schedule_trigger(self, name: str, *, at: float) -> float | None:
        stmt = (
            update(schedules)
            .where(schedules.c.name == name)
            .values(trigger_requested_at=func.coalesce(schedules.c.trigger_requested_at, at))
        )
        read = select(schedules.c.trigger_requested_at).where(schedules.c.name == name)
        with self._use("trigger a schedule"), self._writer().begin() as conn:
            if conn.execute(stmt).rowcount != 1:
                return None
            waiting = conn.execute(read).scalar()
        return None if waiting is None else float(waiting)

    def clear_schedule_trigger(self, name: str, *, expected: float) -> bool:
        stmt = (
            update(schedules)
            .where(schedules.c.name == name, schedules.c.trigger_requested_at == expected)
            .values(trigger_requested_at=None)
        )
        with self._use("clear a schedule's trigger"), self._writer().begin() as conn:
            return conn.execute(stmt).rowcount == 1

    def next_schedule_due(self, *, tasks: Collection[str] | None = None) -> float | None:
        among = () if tasks is None else (schedules.c.task.in_(sorted(tasks)),)
        query = select(func.min(schedules.c.next_fire_at)).where(_IN_FORCE, *among)
        with self._use("read the next schedule due") as engine, engine.connect() as conn:
            value = conn.execute(query).scalar()
        return None if value is None else float(value)

    def advance_schedule(
        self, name: str, *, expected: float | None, next_fire_at: float | None, fired: float | None
    ) -> bool:
        values: dict[str, Any] = {"next_fire_at": next_fire_at}
        if fired is not None:
            values["last_fire_at"] = fired
        was = (
            schedules.c.next_fire_at.is_(None)
            if expected is None
            else schedules.c.next_fire_at == expected
        )
        stmt = update(schedules).where(schedules.c.name == name, was).values(values)
        with self._use("move a schedule on"), self._writer().begin() as conn:
            return conn.execute(stmt).rowcount == 1

    def set_schedule_paused(
        self, name: str, paused: bool, *, next_fire_at: float | None, now: float
    ) -> bool:
        stmt = (
            update(schedules)
            .where(schedules.c.name == name)
            .values(paused=paused, next_fire_at=next_fire_at, updated_at=now)
        )
        with self._use("pause or resume a schedule"), self._writer().begin() as conn:
            return conn.execute(stmt).rowcount == 1

    def save_hook(self, record: HookRecord) -> None:
        values = {
            "name": record.name,
            "task": record.task,
            "secret": record.secret,
            "created_at": record.created_at,
        }
        self._upsert("save a webhook", hooks, values)

    def get_hook(self, name: str) -> HookRecord | None:
        query = select(hooks).where(hooks.c.name == name)
        with self._use("read a webhook") as engine, engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else HookRecord(**row._mapping)

    def list_hooks(self) -> list[HookRecord]:
        query = select(hooks).order_by(hooks.c.name)
        with self._use("list webhooks") as engine, engine.connect() as conn:
            rows = conn.execute(query).all()
        return [HookRecord(**r._mapping) for r in rows]

    def delete_hook(self, name: str) -> bool:
        stmt = delete(hooks).where(hooks.c.name == name)
        with self._use("remove a webhook"), self._writer().begin() as conn:
            return conn.execute(stmt).rowcount > 0


class MemorySchedules:
    """The schedule and webhook methods of `MemoryStore`."""

    _lock: AbstractContextManager[Any]
    _schedules: dict[str, ScheduleRecord]
    _hooks: dict[str, HookRecord]

    def save_schedule(self, record: ScheduleRecord) -> None:
        schedule_row(record)  # the same JSON check as the SQL store
        stored = replace(record, inputs=json.loads(to_json(record.inputs)))
        with self._lock:
            self._schedules[record.name] = stored

    def get_schedule(self, name: str) -> ScheduleRecord | None:
        with self._lock:
            record = self._schedules.get(name)
            return None if record is None else copy.deepcopy(record)

    def list_schedules(self) -> list[ScheduleRecord]:
        with self._lock:
            return copy.deepcopy([self._schedules[n] for n in sorted(self._schedules)])

    def delete_schedule(self, name: str) -> bool:
        with self._lock:
            return self._schedules.pop(name, None) is not None

    def due_schedules(
        self, now: float, *, tasks: Collection[str] | None = None, limit: int = 100
    ) -> list[ScheduleRecord]:
        with self._lock:
            among = [s for s in self._schedules.values() if tasks is None or s.task in tasks]
            due = [
                s
                for s in among
                if not s.paused and s.next_fire_at is not None and s.next_fire_at <= now
            ]
            due.sort(key=lambda s: (s.next_fire_at or 0.0, s.name))
            due = due[:limit]
            names = {s.name for s in due}
            triggered = sorted(
                (s for s in among if s.trigger_requested_at is not None and s.name not in names),
                key=lambda s: s.name,
            )
            return copy.deepcopy(due + triggered[:limit])

    def request_schedule_trigger(self, name: str, *, at: float) -> float | None:
        with self._lock:
            record = self._schedules.get(name)
            if record is None:
                return None
            if record.trigger_requested_at is None:
                record.trigger_requested_at = at
            return record.trigger_requested_at

    def clear_schedule_trigger(self, name: str, *, expected: float) -> bool:
        with self._lock:
            record = self._schedules.get(name)
            if record is None or record.trigger_requested_at != expected:
                return False
            record.trigger_requested_at = None
            return True

    def next_schedule_due(self, *, tasks: Collection[str] | None = None) -> float | None:
        with self._lock:
            times = [
                s.next_fire_at
                for s in self._schedules.values()
                if not s.paused
                and s.next_fire_at is not None
                and (tasks is None or s.task in tasks)
            ]
            return min(times, default=None)

    def advance_schedule(
        self, name: str, *, expected: float | None, next_fire_at: float | None, fired: float | None
    ) -> bool:
        with self._lock:
            record = self._schedules.get(name)
            if record is None or record.next_fire_at != expected:
                return False
            record.next_fire_at = next_fire_at
            if fired is not None:
                record.last_fire_at = fired
            return True

    def set_schedule_paused(
        self, name: str, paused: bool, *, next_fire_at: float | None, now: float
    ) -> bool:
        with self._lock:
            record = self._schedules.get(name)
            if record is None:
                return False
            record.paused, record.next_fire_at, record.updated_at = paused, next_fire_at, now
            return True

    def save_hook(self, record: HookRecord) -> None:
        with self._lock:
            self._hooks[record.name] = replace(record)

    def get_hook(self, name: str) -> HookRecord | None:
        with self._lock:
            record = self._hooks.get(name)
            return None if record is None else replace(record)

    def list_hooks(self) -> list[HookRecord]:
        with self._lock:
            return [replace(self._hooks[n]) for n in sorted(self._hooks)]

    def delete_hook(self, name: str) -> bool:
        with self._lock:
            return self._hooks.pop(name, None) is not None
