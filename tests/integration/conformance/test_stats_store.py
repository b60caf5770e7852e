"""The `StatsStore` contract, on every backend: memory, a SQLite file and PostgreSQL."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from conformance.records import T0, add_runs, make_run
from taskloom.runs import RunStatus
from taskloom.store import ActiveCounts, StatsStore, Store

if TYPE_CHECKING:
    from conftest import Backend


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.open()


def test_active_counts_are_pending_runs_by_queue_and_running_runs_by_task(store: Store) -> None:
    stats: StatsStore = store
    assert stats.active_counts() == ActiveCounts(pending={}, running={})
    pending = RunStatus.PENDING
    add_runs(
        store,
        *(make_run(task="a", queue="default", created_at=T0 + i) for i in range(3)),
        make_run(task="b", queue="gpu"),
        # Claimed but not started: pending all the same, out of the claimable index.
        make_run(task="a", queue="gpu", worker_id="w1", status=pending),
        make_run(task="a", status=RunStatus.RUNNING, worker_id="w1", started_at=T0),
        make_run(task="b", status=RunStatus.RUNNING, worker_id="w2", started_at=T0),
        make_run(task="b", status=RunStatus.RUNNING, worker_id="w2", started_at=T0),
        # Running with no holder (recorded before runs were held).
        make_run(task="c", status=RunStatus.RUNNING, started_at=T0),
        # Finished runs are not active, held or not.
        make_run(task="a", status=RunStatus.COMPLETED, worker_id="w1", finished_at=T0),
        make_run(task="a", status=RunStatus.FAILED, finished_at=T0),
        make_run(task="b", status=RunStatus.CANCELLED, queue="gpu", finished_at=T0),
    )
    assert stats.active_counts() == ActiveCounts(
        pending={"default": 3, "gpu": 2}, running={"a": 1, "b": 2, "c": 1}
    )
