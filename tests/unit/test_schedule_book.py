"""`ScheduleBook`: adding, listing, pausing, resuming, triggering and removing schedules,
on a memory store with a fake clock."""

from __future__ import annotations

import pytest

import taskloom
from taskloom.exceptions import InputValidationError
from taskloom.schedules.book import ScheduleBook, summary
from taskloom.schedules.errors import ScheduleError, ScheduleNotFoundError
from taskloom.store import MemoryStore
from taskloom.tasks.registry import Registry

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


@taskloom.task(
    schedule=taskloom.Cron("30 2 * * *", timezone="Europe/Zurich", inputs={"full": True})
)
def nightly_backup(full: bool = False) -> None:
    """A task with a schedule of its own."""


@taskloom.task
def report(region: str, depth: int = 1) -> str:
    return f"{region}:{depth}"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def book(clock: Clock) -> ScheduleBook:
    registry = Registry()
    registry.register([nightly_backup, report])
    return ScheduleBook(MemoryStore(), list(registry), clock=clock)


def test_a_task_option_schedule_is_listed_before_anything_records_it(book: ScheduleBook) -> None:
    (listed,) = book.all()
    assert (listed.name, listed.task, listed.source, listed.created_at) == (
        "nightly_backup",
        "nightly_backup",
        "task",
        0.0,
    )
    shown = summary(listed, now=T0)
    assert shown["recorded"] is False
    assert shown["next_fire"] == "2027-01-16T01:30:00Z"  # 02:30 in Zurich (UTC+1)
    assert shown["description"] == "At 02:30 every day (Europe/Zurich)"
    assert len(shown["next_fires"]) == 5


def test_a_stored_schedule_is_added_with_checked_inputs(book: ScheduleBook) -> None:
    record = book.add(
        "hourly-report",
        "report",
        cron="0 * * * *",
        timezone="America/New_York",
        inputs={"region": "us"},
    )
    assert record.source == "stored"
    assert record.next_fire_at == T0 + 3600
    assert [r.name for r in book.all()] == ["hourly-report", "nightly_backup"]
    assert book.next_fires("hourly-report", 2) == [T0 + 3600, T0 + 7200]
    with pytest.raises(ScheduleError, match="name: a schedule named 'hourly-report' exists"):
        book.add("hourly-report", "report", interval=60, inputs={"region": "us"})
    replaced = book.add(
        "hourly-report", "report", interval=60, inputs={"region": "eu"}, replace=True
    )
    assert (replaced.kind, replaced.rule, replaced.inputs) == ("interval", "60", {"region": "eu"})


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"cron": "0 25 * * *"}, "cron"),
        ({"cron": "0 * * * *", "timezone": "Mars/Olympus"}, "timezone"),
        ({"interval": 0}, "interval"),
        ({"interval": 60, "catch_up": "most"}, "catch_up"),
        ({}, "cron"),
        ({"cron": "0 * * * *", "interval": 60}, "cron"),
    ],
)
def test_a_bad_schedule_is_refused_naming_its_field_and_nothing_is_recorded(
    book: ScheduleBook, options: dict[str, object], field: str
) -> None:
    with pytest.raises(ScheduleError) as caught:
        book.add("bad", "report", inputs={"region": "us"}, **options)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert [r.name for r in book.all()] == ["nightly_backup"]


def test_bad_inputs_and_unknown_tasks_are_refused(book: ScheduleBook) -> None:
    with pytest.raises(InputValidationError, match="region"):
        book.add("r", "report", interval=60, inputs={"depth": "deep"})
    with pytest.raises(ScheduleError, match="task: unknown task 'nope'"):
        book.add("r", "nope", interval=60)
    with pytest.raises(ScheduleError, match="name: 'a b' is not a schedule name"):
        book.add("a b", "report", interval=60, inputs={"region": "us"})


def test_pause_and_resume_fire_again_from_the_next_tick_after_now(
    book: ScheduleBook, clock: Clock
) -> None:
    book.add("every-minute", "report", interval=60, inputs={"region": "us"})
    paused = book.pause("every-minute")
    assert paused.paused
    assert book.next_fires("every-minute") == []
    clock.now = T0 + 3 * 3600 + 30  # three hours later: nothing is made up
    resumed = book.resume("every-minute")
    assert not resumed.paused
    assert resumed.next_fire_at == T0 + 3 * 3600 + 60


def test_a_task_option_schedule_is_recorded_when_it_is_first_changed(book: ScheduleBook) -> None:
    paused = book.pause("nightly_backup")
    assert (paused.source, paused.paused) == ("task", True)
    assert book.get("nightly_backup").created_at == T0


def test_trigger_asks_for_a_manual_run_and_remove_forgets(book: ScheduleBook, clock: Clock) -> None:
    book.add("poll", "report", interval=30, inputs={"region": "us"})
    key = book.trigger("poll")
    assert key == "schedule:poll@manual:2027-01-15T08:00:00Z"
    clock.now += 0.5
    assert book.trigger("poll") == key  # asked again before it started: the same run
    assert book.get("poll").trigger_requested_at == T0
    book.remove("poll")
    with pytest.raises(ScheduleNotFoundError):
        book.get("poll")
    with pytest.raises(ScheduleNotFoundError):
        book.remove("poll")
    with pytest.raises(ScheduleNotFoundError):
        book.trigger("poll")
