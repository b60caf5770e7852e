"""Waiting for a run another process executes: the wait ends when the run does, however
long after its end the wait begins."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import taskloom
from taskloom import Engine, RunStatus

pytestmark = pytest.mark.timeout(60)


@taskloom.task
async def quick(n: int) -> int:
    return n


async def test_a_wait_begun_after_the_run_ended_elsewhere_returns_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    async with (
        Engine(url, worker=False, tasks=[quick]) as server,
        Engine(url, tasks=[quick]) as worker,
    ):
        runs = [await server.submit("quick", {"n": n}) for n in range(12)]
        # Every one ended on the worker before the server waits for it.
        ended = [await worker.wait(run.id, timeout=30) for run in runs]
        assert {run.status for run in ended} == {RunStatus.COMPLETED}
        started = time.monotonic()
        waited = [await server.wait(run.id, timeout=30) for run in runs]
        took = time.monotonic() - started
    assert [run.result for run in waited] == list(range(12))
    # Twelve waits one after another: each ends on a look at the store, not at the
    # next one-second poll of the runs waited for (twelve of those took 7 s or more).
    assert took < 3.0, took
