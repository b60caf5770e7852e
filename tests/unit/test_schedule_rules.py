"""When schedules fire: cron rules in time zones across daylight saving, intervals, catch-up.

The year of fire times is checked against a reference computed here independently: every
quarter hour of the year in UTC, turned into local time with `zoneinfo`, matched against
the cron fields by a small matcher of this file (every rule's minutes are quarter hours
and every zone changes its clock on a quarter hour, so the grid sees every fire).
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from taskloom.schedules.errors import ScheduleError
from taskloom.schedules.rules import (
    MACROS,
    CatchUp,
    Cron,
    Interval,
    Rule,
    format_instant,
    parse_instant,
)

RULES = ["30 2 * * *", "@hourly", "*/15 1-3 * * *", "0 9 * * 1-5", "0 0 1,15 * *"]
ZONES = [
    "Europe/Zurich",
    "America/New_York",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
]
YEAR_START = datetime(2027, 1, 1, tzinfo=UTC).timestamp()
YEAR_END = datetime(2028, 1, 1, tzinfo=UTC).timestamp()
QUARTER = 900


def _values(spec: str, low: int, high: int) -> set[int]:
    found: set[int] = set()
    for part in spec.split(","):
        step = 1
        if "/" in part:
            part, by = part.split("/")
            step = int(by)
        if part == "*":
            first, last = low, high
        elif "-" in part:
            first, last = (int(v) for v in part.split("-"))
        else:
            first = last = int(part)
        found.update(range(first, last + 1, step))
    return found


Matcher = tuple[set[int], set[int], set[int], set[int], set[int], bool, bool]


def matcher(rule: str) -> Matcher:
    fields = MACROS.get(rule, rule).split()
    minute, hour, day, month, weekday = fields
    return (
        _values(minute, 0, 59),
        _values(hour, 0, 23),
        _values(day, 1, 31),
        _values(month, 1, 12),
        {d % 7 for d in _values(weekday, 0, 7)},
        day != "*",
        weekday != "*",
    )


def matches(
    m: tuple[set[int], set[int], set[int], set[int], set[int], bool, bool], t: datetime
) -> bool:
    minutes, hours, days, months, weekdays, day_set, weekday_set = m
    if t.minute not in minutes or t.hour not in hours or t.month not in months:
        return False
    on_day, on_weekday = t.day in days, (t.isoweekday() % 7) in weekdays
    if day_set and weekday_set:
        return on_day or on_weekday  # cron: either restricted day field
    return on_day and on_weekday


def reference(rule: str, zone_name: str, start: float, end: float) -> list[float]:
    """The fire times in (start, end], found on a UTC quarter-hour grid: a local time
    fires the first time the local clock shows it, and the local times the clock jumped
    over fire at the first instant after the jump."""
    zone = ZoneInfo(zone_name)
    m = matcher(rule)
    step = timedelta(minutes=15)
    fires: list[float] = []
    latest = datetime.fromtimestamp(start, zone).replace(tzinfo=None)  # the local clock's
    instant = start + QUARTER
    while instant <= end:
        shown = datetime.fromtimestamp(instant, zone).replace(tzinfo=None)
        fire = False
        skipped = latest + step
        while skipped < shown:  # sprang forward over these
            fire = fire or matches(m, skipped)
            skipped += step
        if shown > latest:  # not a time shown before (the clock fell back)
            fire = fire or matches(m, shown)
            latest = shown
        if fire:
            fires.append(instant)
        instant += QUARTER
    return fires


def _simulate(rule: Rule, start: float, end: float, seed: int) -> list[float]:
    """A fake clock that moves by random steps up to four hours; at each step the rule
    says what is due, as a worker's look would (no tick is missed: the grace is long)."""
    rng = random.Random(seed)
    fired: list[float] = []
    next_at = rule.first_fire(start)
    now = start
    while next_at is not None and now < end:
        now = min(end, now + rng.uniform(1, 4 * 3600))
        due, following = rule.due(next_at, now, grace=10 * 86400)
        fired.extend(due)
        if following is None:
            break
        next_at = following
    return fired


def _local(instants: Iterable[float], zone: str) -> list[str]:
    return [datetime.fromtimestamp(t, ZoneInfo(zone)).isoformat() for t in instants]


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("rule", RULES)
def test_a_year_of_fires_equals_the_reference(rule: str, zone: str) -> None:
    expected = reference(rule, zone, YEAR_START, YEAR_END)
    cron = Cron(rule, timezone=zone)
    fired = _simulate(cron, YEAR_START, YEAR_END, seed=hash((rule, zone)) & 0xFFFF)
    assert len(fired) == len(set(fired))  # no tick twice
    assert _local(fired, zone) == _local(expected, zone)
    assert fired == cron.next_fires(YEAR_START, len(expected) + 1)[: len(expected)]


def test_the_reference_sees_both_clock_changes_of_each_zone_with_daylight_saving() -> None:
    for zone in ZONES:
        offsets = {
            datetime.fromtimestamp(t, ZoneInfo(zone)).utcoffset()
            for t in range(int(YEAR_START), int(YEAR_END), 86400)
        }
        assert len(offsets) == (1 if zone == "Asia/Kolkata" else 2), zone


def test_spring_forward_fires_once_after_the_gap_and_fall_back_once_at_the_first() -> None:
    zurich = "Europe/Zurich"
    daily = Cron("30 2 * * *", timezone=zurich)
    start = datetime(2027, 3, 27, tzinfo=ZoneInfo(zurich)).timestamp()
    assert _local(daily.next_fires(start, 3), zurich) == [
        "2027-03-27T02:30:00+01:00",
        "2027-03-28T03:00:00+02:00",  # 02:30 does not exist that day
        "2027-03-29T02:30:00+02:00",
    ]
    half_hourly = Cron("*/30 * * * *", timezone=zurich)
    start = datetime(2027, 10, 31, 1, 0, tzinfo=ZoneInfo(zurich)).timestamp()
    assert _local(half_hourly.next_fires(start, 5), zurich) == [
        "2027-10-31T01:30:00+02:00",
        "2027-10-31T02:00:00+02:00",
        "2027-10-31T02:30:00+02:00",  # then 02:00 and 02:30 come again: not fired again
        "2027-10-31T03:00:00+01:00",
        "2027-10-31T03:30:00+01:00",
    ]


def test_an_interval_is_elapsed_time_across_a_clock_change() -> None:
    every = Interval(hours=1, timezone="Europe/Zurich")
    start = datetime(2027, 3, 28, 0, 0, tzinfo=UTC).timestamp()
    fires = every.next_fires(start - 1, 4)
    assert [b - a for a, b in itertools.pairwise(fires)] == [3600.0] * 3
    assert Interval(seconds=30).next_fires(95.0, 3) == [120.0, 150.0, 180.0]  # from the epoch
    assert Interval(seconds=30, start=100.0).next_fires(95.0, 2) == [100.0, 130.0]


@pytest.mark.parametrize(
    ("catch_up", "expected"),
    [("skip", []), ("one", [7140.0]), ("all", [6900.0, 6960.0, 7020.0, 7080.0, 7140.0])],
)
@pytest.mark.parametrize("kind", ["interval", "cron"])
def test_two_hours_of_downtime_give_what_the_catch_up_policy_promises(
    kind: str, catch_up: CatchUp, expected: list[float]
) -> None:
    # Every minute from 00:00 UTC; nothing ran from 00:00:30 until 02:00:05, when a
    # worker looks: the ticks of 00:01 to 01:59 were missed (the one of 02:00 is on time).
    rule: Rule = (
        Interval(minutes=1, catch_up=catch_up, max_catch_up=5)
        if kind == "interval"
        else Cron("* * * * *", catch_up=catch_up, max_catch_up=5)
    )
    due, following = rule.due(60.0, 7205.0)
    assert due == [*expected, 7200.0]
    assert following == 7260.0


def test_a_long_downtime_of_a_short_interval_is_counted_not_walked() -> None:
    rule = Interval(seconds=1, catch_up="all", max_catch_up=3)
    due, following = rule.due(0.0, 90 * 86400.0)  # ninety days
    grace = [90 * 86400.0 - k for k in reversed(range(11))]
    assert due == [90 * 86400.0 - 13, 90 * 86400.0 - 12, 90 * 86400.0 - 11, *grace]
    assert following == 90 * 86400.0 + 1


def test_start_and_end_bound_the_fires() -> None:
    rule = Cron("0 * * * *", start="2027-01-01T03:00:00+00:00", end="2027-01-01T05:00:00Z")
    assert [format_instant(t) for t in rule.next_fires(0.0, 10)] == [
        "2027-01-01T03:00:00Z",
        "2027-01-01T04:00:00Z",
        "2027-01-01T05:00:00Z",
    ]
    assert rule.first_fire(rule.end_at or 0.0) is None
    naive_start = Cron("0 * * * *", timezone="Asia/Kolkata", start="2027-01-01T03:00:00")
    # 03:00 in Kolkata (+05:30), the first hour of its local clock from the start
    assert format_instant(naive_start.first_fire(0.0) or 0) == "2026-12-31T21:30:00Z"


def test_jitter_delays_each_run_alike_in_every_process() -> None:
    rule = Interval(seconds=10, jitter=5.0)
    delays = [rule.delay_of("poll", t) for t in rule.next_fires(0.0, 50)]
    assert all(0.0 <= d < 5.0 for d in delays)
    assert len(set(delays)) == 50
    assert delays == [
        Interval(seconds=10, jitter=5.0).delay_of("poll", t) for t in rule.next_fires(0.0, 50)
    ]
    assert Interval(seconds=10).delay_of("poll", 10.0) == 0.0


@pytest.mark.parametrize(
    ("make", "field", "words"),
    [
        (lambda: Cron("61 * * * *"), "cron", "bad minute"),
        (lambda: Cron("* * * *"), "cron", "expected 5"),
        (lambda: Cron("0 0 1 1 * 2027"), "cron", "expected 5"),
        (lambda: Cron("@sometimes"), "cron", "unknown macro"),
        (lambda: Cron("0 0 * * *", timezone="Europe/Atlantis"), "timezone", "IANA"),
        (lambda: Interval(seconds=0), "interval", "> 0"),
        (lambda: Interval(seconds=-5), "interval", "> 0"),
        (lambda: Interval(seconds=float("inf")), "interval", "> 0"),
        (lambda: Interval(seconds=1, jitter=-1), "jitter", ">= 0"),
        (lambda: Interval(seconds=1, catch_up="most"), "catch_up", "skip, one, all"),  # type: ignore[arg-type]
        (lambda: Interval(seconds=1, max_catch_up=0), "max_catch_up", ">= 1"),
        (lambda: Interval(seconds=1, start="next tuesday"), "start", "ISO 8601"),
        (lambda: Interval(seconds=1, start=10.0, end=5.0), "end", "before the start"),
    ],
)
def test_a_bad_rule_names_its_field_and_what_is_expected(make, field: str, words: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ScheduleError) as caught:
        make()
    assert caught.value.field == field
    assert words in str(caught.value)
    assert str(caught.value).startswith(f"{field}:")


def test_instants_read_and_written_in_iso_8601() -> None:
    zone = ZoneInfo("UTC")
    assert (
        parse_instant("2027-01-31T02:30:00Z", zone, "run_at")
        == datetime(2027, 1, 31, 2, 30, tzinfo=UTC).timestamp()
    )
    assert format_instant(1.5) == "1970-01-01T00:00:01.500000Z"
    with pytest.raises(ScheduleError, match="run_at: 'tomorrow' is not an ISO 8601"):
        parse_instant("tomorrow", zone, "run_at")


def test_rules_are_described_in_words() -> None:
    assert Cron("0 9 * * 1-5", timezone="America/New_York").describe() == (
        "At 09:00 on Monday through Friday (America/New_York)"
    )
    assert Interval(seconds=90).describe() == "every 1 minute 30 seconds"
    assert Interval(hours=2).describe() == "every 2 hours"


@pytest.mark.parametrize("catch_up", ["skip", "one", "all"])
def test_a_year_of_downtime_of_a_minutely_cron_is_not_walked(catch_up: CatchUp) -> None:
    rule = Cron("* * * * *", catch_up=catch_up, max_catch_up=3)
    year = 365 * 86400.0
    started = time.perf_counter()
    due, following = rule.due(60.0, year + 5)
    # A year of minutes is 525,600 ticks: walking them takes tens of seconds here.
    assert time.perf_counter() - started < 5.0
    kept = {"skip": [], "one": [year - 60], "all": [year - 180, year - 120, year - 60]}
    assert due == [*kept[catch_up], year]
    assert following == year + 60
