"""The `ScheduleStore` contract, on every backend: memory, a SQLite file and PostgreSQL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from conformance.records import T0
from taskloom.exceptions import StoreError
from taskloom.store import HookRecord, ScheduleRecord, ScheduleStore

if TYPE_CHECKING:
    from conftest import Backend


@pytest.fixture
def store(backend: Backend) -> ScheduleStore:
    """The backend's store, as a `ScheduleStore`."""
    return backend.open()


def schedule(name: str, next_fire_at: float | None, **fields: Any) -> ScheduleRecord:
    values: dict[str, Any] = {
        "task": "report",
        "kind": "cron",
        "rule": "0 * * * *",
        "timezone": "Europe/Zurich",
        "inputs": {"region": "eu", "depth": [1, 2]},
        "created_at": T0,
        "updated_at": T0,
    }
    return ScheduleRecord(name=name, next_fire_at=next_fire_at, **{**values, **fields})


def test_schedules_are_saved_read_listed_replaced_and_removed(store: ScheduleStore) -> None:
    hourly = schedule("hourly", T0 + 3600, start_at=T0, end_at=T0 + 86400, jitter=2.5)
    store.save_schedule(schedule("b-nightly", None, source="task", catch_up="all"))
    store.save_schedule(hourly)
    assert store.get_schedule("hourly") == hourly
    assert store.get_schedule("missing") is None
    assert [s.name for s in store.list_schedules()] == ["b-nightly", "hourly"]
    listed = store.list_schedules()[0]
    assert (listed.source, listed.catch_up, listed.next_fire_at) == ("task", "all", None)

    changed = schedule("hourly", T0 + 60, kind="interval", rule="60")
    store.save_schedule(changed)
    assert store.get_schedule("hourly") == changed
    assert store.delete_schedule("hourly") is True
    assert store.delete_schedule("hourly") is False
    assert [s.name for s in store.list_schedules()] == ["b-nightly"]


def test_the_schedules_due_are_those_in_force_whose_tick_has_come(store: ScheduleStore) -> None:
    store.save_schedule(schedule("later", T0 + 100))
    store.save_schedule(schedule("soon", T0 + 10))
    store.save_schedule(schedule("now", T0))
    store.save_schedule(schedule("paused", T0, paused=True))
    store.save_schedule(schedule("ended", None))
    assert [s.name for s in store.due_schedules(T0 + 10)] == ["now", "soon"]
    assert [s.name for s in store.due_schedules(T0 + 10, limit=1)] == ["now"]
    assert store.due_schedules(T0 - 1) == []
    assert store.next_schedule_due() == T0
    store.save_schedule(schedule("other", T0 - 5, task="elsewhere"))
    assert [s.name for s in store.due_schedules(T0 + 10, tasks={"report"})] == ["now", "soon"]
    assert [s.name for s in store.due_schedules(T0 + 10, tasks={"elsewhere"})] == ["other"]
    assert store.due_schedules(T0 + 10, tasks=()) == []
    assert store.next_schedule_due(tasks={"report"}) == T0
    assert store.next_schedule_due(tasks=()) is None


def test_moving_a_schedule_on_is_a_compare_and_set(store: ScheduleStore) -> None:
    store.save_schedule(schedule("hourly", T0))
    assert store.advance_schedule("hourly", expected=T0, next_fire_at=T0 + 3600, fired=T0)
    # A second worker that read the same tick finds it moved: nothing changes.
    assert not store.advance_schedule("hourly", expected=T0, next_fire_at=T0 + 3600, fired=T0)
    found = store.get_schedule("hourly")
    assert found is not None
    assert (found.next_fire_at, found.last_fire_at) == (T0 + 3600, T0)
    assert store.advance_schedule("hourly", expected=T0 + 3600, next_fire_at=None, fired=None)
    ended = store.get_schedule("hourly")
    assert ended is not None
    assert (ended.next_fire_at, ended.last_fire_at) == (None, T0)  # the last fire is kept
    assert not store.advance_schedule("missing", expected=T0, next_fire_at=T0, fired=None)


def test_pausing_and_resuming_a_schedule(store: ScheduleStore) -> None:
    store.save_schedule(schedule("hourly", T0))
    assert store.set_schedule_paused("hourly", True, next_fire_at=T0, now=T0 + 1)
    assert store.due_schedules(T0 + 5) == []
    assert store.next_schedule_due() is None
    assert store.set_schedule_paused("hourly", False, next_fire_at=T0 + 3600, now=T0 + 2)
    found = store.get_schedule("hourly")
    assert found is not None
    assert (found.paused, found.next_fire_at, found.updated_at) == (False, T0 + 3600, T0 + 2)
    assert not store.set_schedule_paused("missing", True, next_fire_at=None, now=T0)


def test_a_trigger_is_due_until_cleared_paused_or_not(store: ScheduleStore) -> None:
    store.save_schedule(schedule("hourly", T0 + 3600, paused=True))
    assert store.due_schedules(T0) == []
    assert store.request_schedule_trigger("hourly", at=T0) == T0
    assert store.request_schedule_trigger("hourly", at=T0 + 1) == T0  # joins the first
    assert store.request_schedule_trigger("missing", at=T0) is None
    due = store.due_schedules(T0)
    assert [(s.name, s.trigger_requested_at) for s in due] == [("hourly", T0)]
    assert not store.clear_schedule_trigger("hourly", expected=T0 - 1)  # another request
    assert store.clear_schedule_trigger("hourly", expected=T0)
    assert not store.clear_schedule_trigger("hourly", expected=T0)
    assert store.due_schedules(T0) == []


def test_a_schedule_whose_inputs_are_not_json_is_refused(store: ScheduleStore) -> None:
    with pytest.raises(StoreError, match="schedule 'bad': inputs are not JSON"):
        store.save_schedule(schedule("bad", T0, inputs={"when": object()}))
    assert store.get_schedule("bad") is None


def test_webhooks_are_saved_read_listed_and_removed(store: ScheduleStore) -> None:
    hook = HookRecord(name="deploy", task="report", secret="s" * 64, created_at=T0)
    store.save_hook(HookRecord(name="build", task="report", secret="t" * 64, created_at=T0))
    store.save_hook(hook)
    assert store.get_hook("deploy") == hook
    assert store.get_hook("missing") is None
    assert [h.name for h in store.list_hooks()] == ["build", "deploy"]
    assert store.delete_hook("deploy") is True
    assert store.delete_hook("deploy") is False
    assert [h.name for h in store.list_hooks()] == ["build"]
