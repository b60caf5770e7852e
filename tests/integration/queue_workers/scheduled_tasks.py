"""A task on a one-second schedule, for the tests of schedules across processes."""

from __future__ import annotations

import taskloom


@taskloom.task(schedule=taskloom.Interval(seconds=1))
async def beat() -> str:
    """Fires every second, wherever it is served."""
    return "beat"


@taskloom.task
async def later(label: str) -> str:
    """A run that is submitted to wait for its due time."""
    return label
