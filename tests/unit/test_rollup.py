"""The rollup's duration bins and its grouping of run ends, without a database."""

from __future__ import annotations

import math
import random

import pytest

from taskloom.runs import Run, RunStatus
from taskloom.store import WriteBatch
from taskloom.store.base import ActiveCounts
from taskloom.store.rollup import GRAINS, Pruning, Rollup, bin_value, duration_bin, rollup_of
from taskloom.store.stats import build_stats, grain_for, window_cover, window_end, window_span

GROWTH = 2 ** (1 / 8)


def test_a_bins_value_is_within_four_point_four_per_cent_of_every_duration_in_it() -> None:
    rng = random.Random(8)
    worst = 0.0
    for _ in range(100_000):
        seconds = math.exp(rng.uniform(math.log(2e-6), math.log(1e6)))
        value = bin_value(duration_bin(seconds))
        worst = max(worst, abs(value - seconds) / seconds)
    assert worst <= (GROWTH - 1) / (GROWTH + 1) + 1e-12
    assert worst > 0.04  # the bound is reached, not a loose one


def test_bins_are_ordered_like_durations_and_tiny_ones_share_the_first() -> None:
    durations = [1e-6, 1.5e-6, 0.001, 0.00105, 0.5, 1.0, 2.0, 60.0, 3600.0]
    bins = [duration_bin(d) for d in durations]
    assert bins == sorted(bins)
    assert duration_bin(1.0) == 0
    assert duration_bin(2.0) == 8  # eight bins per doubling
    assert duration_bin(0.0) == duration_bin(-3.0) == duration_bin(1e-9) == duration_bin(1e-6)


def test_ends_are_grouped_at_every_grain_with_plain_status_names() -> None:
    t = 1_800_000_000.0  # a multiple of an hour
    prior = {"a": ("adder", "running", t - 1.0), "b": ("adder", "pending", None)}
    batch = WriteBatch(
        run_updates={
            "a": {"status": RunStatus.COMPLETED, "finished_at": t + 61.0},
            "b": {"status": RunStatus.CANCELLED, "finished_at": t + 3599.0},
        },
        new_runs=[Run(id="c", task="mailer", inputs={}, status=RunStatus.FAILED, finished_at=t)],
    )
    rollup = rollup_of(batch, ["a", "b", "c"], prior)
    counts = rollup.count_rows()
    assert all(type(row[3]) is str for row in counts)  # never a RunStatus: stored as text
    assert (60, t + 60, "adder", "completed", 1) in counts
    assert (3600, t, "adder", "cancelled", 1) in counts
    assert (3600, t, "mailer", "failed", 1) in counts
    assert len(counts) == 3 * len(GRAINS)
    durations = rollup.duration_rows()
    bin_62 = duration_bin(62.0)
    assert [row[:4] for row in durations if row[0] == 3600] == [(3600, t, "adder", bin_62)]
    assert durations[0][4:] == (1, 62.0)  # one run, its duration the longest


def test_the_rows_of_an_end_alone_are_those_it_has_among_other_ends() -> None:
    """One end (the shortcut for a key alone) makes the rows, in order, that the grouping
    of many ends gives for its key."""
    rng = random.Random(12)
    for _ in range(2_000):
        finished = rng.uniform(0, 2e9)
        started = None if rng.random() < 0.1 else finished - rng.expovariate(1.0)
        alone = Rollup()
        alone.add("adder", "failed", started, finished)
        among = Rollup()
        among.add("adder", "failed", started, finished)
        among.add("other", "completed", finished - 1.0, finished)
        assert alone.count_rows() == [r for r in among.count_rows() if r[2] == "adder"]
        assert alone.duration_rows() == [r for r in among.duration_rows() if r[2] == "adder"]
    assert len(alone.count_rows()) == len(GRAINS)


def test_a_windows_chart_is_read_from_the_largest_grain_of_its_buckets() -> None:
    now = 1_800_000_123.0
    grains = [grain_for(*window_span(w, now)) for w in ("15m", "1h", "6h", "1d", "7d")]
    assert grains == [60, 60, 60, 900, 3600]
    with pytest.raises(ValueError, match="window must be one of 15m, 1h, 6h, 1d, 7d, not '2h'"):
        window_span("2h", now)


def test_dead_rows_are_looked_for_once_per_ten_minutes_of_ends() -> None:
    pruning = Pruning()
    rollup = Rollup()
    rollup.add("adder", "completed", None, 10_000.0)
    assert dict(pruning.cutoffs(rollup))[60] == 10_000.0 - 7 * 3600
    assert pruning.cutoffs(rollup) == []
    rollup.add("adder", "completed", None, 10_600.0)
    assert dict(pruning.cutoffs(rollup))[21600] == 10_600.0 - 7 * 86400 - 3600


def test_a_window_is_covered_by_the_fewest_rows_exactly() -> None:
    midnight = 1_800_000_000.0 - 1_800_000_000.0 % 86400  # a day's start, UTC
    now = midnight + 7 * 3600 + 1234.5  # 7:20:34.5
    since, bucket = window_span("1d", now)  # 7:30 the day before
    end = window_end(since, now, bucket)  # 7:30, the end of the quarter holding now
    day_before = midnight - 86400
    assert (since, end) == (day_before + 7.5 * 3600, midnight + 7.5 * 3600)
    hour = 3600
    cover = window_cover(since, end)
    assert sorted(cover) == [
        (900, since, day_before + 8 * hour),  # 7:30, 7:45
        (900, midnight + 7 * hour, end),  # 7:00, 7:15
        (3600, day_before + 8 * hour, day_before + 12 * hour),  # 8:00 to 11:00
        (3600, midnight + 6 * hour, midnight + 7 * hour),  # 6:00
        (21600, day_before + 12 * hour, midnight + 6 * hour),  # 12:00, 18:00, 0:00
    ]
    # Every minute of the window is in exactly one range, and nothing outside it.
    minute = since
    while minute < end:
        assert sum(first <= minute - minute % g < last for g, first, last in cover) == 1
        minute += 60
    assert all(since <= first < last <= end for _, first, last in cover)
    rows = sum((last - first) / g for g, first, last in cover)
    assert rows == 2 + 2 + 4 + 1 + 3  # against 96 quarters


def test_a_window_ending_in_the_first_second_of_a_minute_shows_that_minute() -> None:
    minute = 1_800_000_000.0 - 1_800_000_000.0 % 60
    now = minute + 0.25  # `int(now)` is the start of the bucket that holds it
    since, bucket = window_span("15m", now)
    empty = ActiveCounts(pending={}, running={})
    stats = build_stats(
        since=since,
        until=now,
        bucket_seconds=bucket,
        by_bucket=[(minute, "failed", 1)],
        by_task=[("adder", "failed", 1)],
        durations=[],
        active=empty,
    )
    assert len(stats.buckets) == 15
    assert stats.buckets[-1].start == minute
    assert stats.totals == {"completed": 0, "failed": 1, "cancelled": 0, "finished": 1}
