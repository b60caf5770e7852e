"""The run queue's contract, on every store: claims, fences, leases and the reaper.

The same tests run on the in-memory store, a SQLite file and PostgreSQL.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest

from taskloom.runs import Attempt, LogLine, Run, RunStatus, new_run_id
from taskloom.store import Store, WriteBatch
from taskloom.store.base import ClaimRequest

if TYPE_CHECKING:
    from conftest import Backend

pytestmark = pytest.mark.timeout(60)


def unclaimed(task: str = "demo.add", **fields: Any) -> Run:
    values: dict[str, Any] = {"created_at": time.time(), "inputs": {}}
    values.update(fields)
    return Run(id=new_run_id(), task=task, **values)


def claim(store: Store, worker: str, limit: int = 10, **fields: Any) -> list[Run]:
    request = ClaimRequest(
        worker_id=worker,
        tasks=fields.pop("tasks", ["demo.add"]),
        queues=fields.pop("queues", ["default"]),
        limit=limit,
        now=fields.pop("now", time.time()),
        limits=fields.pop("limits", {}),
    )
    return store.write(WriteBatch(claim=request)).claimed


def test_a_claim_takes_higher_priority_first_then_older(store: Store) -> None:
    now = time.time()
    runs = [
        unclaimed(priority=0, created_at=now - 3),
        unclaimed(priority=5, created_at=now - 1),
        unclaimed(priority=0, created_at=now - 5),
        unclaimed(priority=-1, created_at=now - 9),
        unclaimed(priority=5, created_at=now - 2),
    ]
    store.write(WriteBatch(new_runs=runs))
    first = claim(store, "w1", limit=3)
    assert [r.id for r in first] == [runs[4].id, runs[1].id, runs[2].id]
    assert all(r.worker_id == "w1" and r.lease == 1 for r in first)
    rest = claim(store, "w2", limit=10)
    assert [r.id for r in rest] == [runs[0].id, runs[3].id]
    assert claim(store, "w3") == []
    held = {r.id: r for r in store.list_runs(limit=10)}
    assert {held[r.id].worker_id for r in first} == {"w1"}
    assert {held[r.id].worker_id for r in rest} == {"w2"}


def test_a_claim_takes_only_its_tasks_queues_and_due_runs(store: Store) -> None:
    now = time.time()
    other_task = unclaimed(task="demo.mul")
    other_queue = unclaimed(queue="gpu")
    later = unclaimed(scheduled_at=now + 60)
    held = unclaimed(worker_id="someone", lease=1)
    running = unclaimed(status=RunStatus.RUNNING)
    wanted = unclaimed()
    store.write(WriteBatch(new_runs=[other_task, other_queue, later, held, running, wanted]))
    assert [r.id for r in claim(store, "w1", now=now)] == [wanted.id]
    assert [r.id for r in claim(store, "w1", queues=["gpu"], now=now)] == [other_queue.id]
    assert [r.id for r in claim(store, "w1", now=now + 61)] == [later.id]


def test_a_claim_that_finds_none_due_says_when_the_next_is(store: Store) -> None:
    now = time.time()
    store.write(WriteBatch(new_runs=[unclaimed(scheduled_at=now + 30)]))
    request = ClaimRequest(worker_id="w", tasks=["demo.add"], queues=["default"], limit=5, now=now)
    result = store.write(WriteBatch(claim=request))
    assert result.claimed == []
    assert result.next_due == pytest.approx(now + 30)


def test_a_task_limit_counts_the_runs_every_worker_holds(store: Store) -> None:
    store.write(WriteBatch(new_runs=[unclaimed() for _ in range(5)]))
    limits = {"demo.add": 2}
    assert len(claim(store, "w1", limits=limits)) == 2
    assert claim(store, "w2", limits=limits) == []
    held = [r for r in store.list_runs(limit=10) if r.worker_id == "w1"]
    store.write(
        WriteBatch(run_updates={held[0].id: {"status": RunStatus.COMPLETED, "finished_at": 1.0}})
    )
    assert len(claim(store, "w2", limits=limits)) == 1


def test_a_fence_refuses_the_changes_of_a_run_held_under_another_lease(store: Store) -> None:
    store.write(WriteBatch(new_runs=[unclaimed(), unclaimed()]))
    mine, lost = claim(store, "w1")
    # A reaper gave `lost` back and another worker claimed it (lease 2).
    store.write(WriteBatch(run_updates={lost.id: {"worker_id": None}}))
    [again] = claim(store, "w2")
    assert again.id == lost.id
    assert again.lease == 2
    batch = WriteBatch(
        run_updates={
            mine.id: {"status": RunStatus.RUNNING, "attempts": 1},
            lost.id: {"status": RunStatus.COMPLETED, "result": 1},
        },
        new_attempts=[Attempt(mine.id, 1, 1.0, worker_id="w1"), Attempt(lost.id, 1, 1.0)],
        logs=[LogLine(lost.id, 1, 1.0, "INFO", "late")],
        fences={mine.id: ("w1", 1), lost.id: ("w1", 1)},
    )
    result = store.write(batch)
    assert result.rejected == {lost.id}
    got = {r.id: r for r in store.list_runs(limit=10)}
    assert got[mine.id].status == RunStatus.RUNNING
    assert got[lost.id].status == RunStatus.PENDING
    assert got[lost.id].worker_id == "w2"
    assert [a.number for a in store.get_attempts(mine.id)] == [1]
    assert store.get_attempts(lost.id) == []
    assert store.get_logs(lost.id) == []


def test_a_fenced_run_inserted_by_the_same_batch_is_held(store: Store) -> None:
    run = unclaimed(worker_id="w1", lease=1)
    result = store.write(
        WriteBatch(
            new_runs=[run],
            run_updates={run.id: {"status": RunStatus.RUNNING}},
            fences={run.id: ("w1", 1)},
        )
    )
    assert result.rejected == frozenset()
    got = store.get_run(run.id)
    assert got is not None
    assert got.status == RunStatus.RUNNING


def test_the_reaper_gives_back_the_runs_of_a_worker_whose_lease_ran_out(store: Store) -> None:
    store.register_worker("paused", hostname="h", pid=1, ttl=0.2)
    store.register_worker("reaper", hostname="h", pid=2)
    waiting, executing, last_try = unclaimed(), unclaimed(max_attempts=2), unclaimed()
    store.write(WriteBatch(new_runs=[waiting, executing, last_try]))
    assert len(claim(store, "paused")) == 3
    store.write(
        WriteBatch(
            run_updates={
                r.id: {"status": RunStatus.RUNNING, "attempts": 1} for r in (executing, last_try)
            },
            new_attempts=[Attempt(r.id, 1, 1.0, worker_id="paused") for r in (executing, last_try)],
        )
    )
    assert store.reap("reaper") == 0  # the lease still holds
    time.sleep(0.3)
    assert store.reap("reaper") == 3
    got = {r.id: r for r in store.list_runs(limit=10)}
    assert got[waiting.id].status == RunStatus.PENDING
    assert got[waiting.id].worker_id is None
    assert got[executing.id].status == RunStatus.PENDING
    assert got[executing.id].worker_id is None
    assert got[executing.id].error is not None
    assert got[executing.id].error.type == "WorkerLostError"
    assert got[last_try.id].status == RunStatus.FAILED
    assert got[last_try.id].error is not None
    assert last_try.id in got[last_try.id].error.message
    for run in (executing, last_try):
        [attempt] = store.get_attempts(run.id)
        assert attempt.status == "failed"
        assert attempt.error is not None
        assert attempt.error.type == "WorkerLostError"
    # Found lost, the worker cannot renew its lease: it must register again.
    assert store.heartbeat("paused") is False
    assert store.heartbeat("reaper") is True
    assert not store.is_worker_alive("paused")
    assert store.reap("reaper") == 0


def test_a_lease_that_ran_out_with_no_reaper_about_is_renewed(store: Store) -> None:
    store.register_worker("slow", hostname="h", pid=1, ttl=0.1)
    time.sleep(0.2)
    assert store.heartbeat("slow", ttl=5.0) is True
    assert store.is_worker_alive("slow")


def test_the_reaper_leaves_workflow_runs_and_gives_back_their_steps(store: Store) -> None:
    store.register_worker("gone", hostname="h", pid=1, ttl=0.1)
    workflow = unclaimed(task="workflow:demo", status=RunStatus.RUNNING, worker_id="gone")
    step = unclaimed(parent_id=workflow.id, worker_id="gone", lease=0)
    plain = unclaimed(worker_id="gone", lease=1)
    store.write(WriteBatch(new_runs=[workflow, step, plain]))
    time.sleep(0.2)
    assert store.reap("me") == 2
    got = {r.id: r for r in store.list_runs(limit=10)}
    assert got[workflow.id].worker_id == "gone"  # workflow recovery resumes it
    assert got[step.id].worker_id is None
    assert got[plain.id].worker_id is None


def test_a_killed_workers_runs_are_given_back_by_its_lock(shared_backend: Backend) -> None:
    store = shared_backend.open()
    other = shared_backend.open()
    other.register_worker("killed", hostname="h", pid=1)
    store.write(WriteBatch(new_runs=[unclaimed()]))
    [run] = claim(other, "killed")
    assert store.reap("me") == 0
    other.close()  # its lock goes, as when its process dies; its lease has not run out
    assert store.reap("me") == 1
    got = store.get_run(run.id)
    assert got is not None
    assert got.worker_id is None
