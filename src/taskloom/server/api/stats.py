"""Statistics of runs for the dashboard's charts: one cheap aggregate per window.

The route calls `engine.stats`, which reads the store's rollup of run ends (counts per
bucket and duration histograms written with each end), never the runs themselves.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Query

from ...store import RunStats
from ...store.stats import WINDOWS
from .deps import EngineDep, Viewer, responses
from .models import StatsOut

__all__ = ["router", "stats_out"]

router = APIRouter(prefix="/stats", tags=["stats"])

Window = Literal["15m", "1h", "6h", "1d", "7d"]
assert get_args(Window) == tuple(WINDOWS)  # the windows the engine knows, in order


def stats_out(window: str, stats: RunStats) -> dict[str, Any]:
    """The statistics as the API answers them."""
    return {
        "window": window,
        "since": stats.since,
        "until": stats.until,
        "bucket_seconds": stats.bucket_seconds,
        "buckets": [dataclasses.asdict(bucket) for bucket in stats.buckets],
        "totals": stats.totals,
        "failure_rate": stats.failure_rate,
        "tasks": [
            {
                **dataclasses.asdict(task),
                "finished": task.finished,
                "failure_rate": task.failure_rate,
            }
            for task in stats.tasks
        ],
        "pending": stats.pending,
        "running": stats.running,
    }


@router.get(
    "", response_model=StatsOut, dependencies=[Viewer], responses=responses(401, 403, 422, 503)
)
async def get_stats(
    engine: EngineDep,
    window: Annotated[
        Window,
        Query(
            description="How far back: 15m, 1h, 6h, 1d or 7d (buckets of 60, 60, 300, "
            "900 and 3600 seconds)."
        ),
    ] = "1h",
    task: Annotated[
        str | None, Query(min_length=1, max_length=200, description="Only this task's runs.")
    ] = None,
) -> dict[str, Any]:
    """The runs that finished in the last `window`, per bucket and status and per task
    (with duration percentiles), and the runs pending and running now."""
    return stats_out(window, await engine.stats(window, task=task))
