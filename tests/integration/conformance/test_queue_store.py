"""The `QueueStore` contract, on every backend: memory, a SQLite file and PostgreSQL.

Claims, fences, leases and the reaper; workers, their liveness and their records; the
takeover of orphaned runs; cancel requests; the feed of other processes' commits.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from conformance.records import T0, SpawnWorker, add_runs, make_run
from taskloom.exceptions import StoreError
from taskloom.runs import Attempt, LogLine, Run, RunStatus, new_run_id
from taskloom.store import QueueStore, WriteBatch
from taskloom.store.base import ClaimRequest

if TYPE_CHECKING:
    from conftest import Backend

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def store(backend: Backend) -> QueueStore:
    """The backend's store, as a `QueueStore`."""
    return backend.open()


def unclaimed(task: str = "demo.add", **fields: Any) -> Run:
    values: dict[str, Any] = {"created_at": time.time(), "inputs": {}}
    values.update(fields)
    return Run(id=new_run_id(), task=task, **values)


def claim(store: QueueStore, worker: str, limit: int = 10, **fields: Any) -> list[Run]:
    request = ClaimRequest(
        worker_id=worker,
        tasks=fields.pop("tasks", ["demo.add"]),
        queues=fields.pop("queues", ["default"]),
        limit=limit,
        now=fields.pop("now", time.time()),
        limits=fields.pop("limits", {}),
        start=fields.pop("start", {}),
    )
    return store.write(WriteBatch(claim=request)).claimed


# --- claims and fences --------------------------------------------------------------------


def test_a_claim_takes_higher_priority_first_then_older(store: QueueStore) -> None:
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


def test_a_claim_takes_only_its_tasks_queues_and_due_runs(store: QueueStore) -> None:
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


@pytest.mark.parametrize("mode", ["one task", "with a task not started", "two executors"])
def test_a_claim_starts_the_runs_of_the_tasks_it_is_told_to(store: QueueStore, mode: str) -> None:
    now = time.time()
    first = unclaimed(created_at=now - 3)
    retried = unclaimed(created_at=now - 2, attempts=1, started_at=now - 100, scheduled_at=now - 1)
    other = unclaimed(task="demo.mul", created_at=now - 1)
    store.write(
        WriteBatch(
            new_runs=[first, retried, other],
            new_attempts=[Attempt(retried.id, 1, now - 100, now - 99, "failed")],
        )
    )
    mixed = mode != "one task"
    tasks = ["demo.add", "demo.mul"] if mixed else ["demo.add"]
    start = {"demo.add": "loop"}
    if mode == "two executors":
        start["demo.mul"] = "inline"
    got = claim(store, "w1", tasks=tasks, now=now, start=start)
    assert [r.id for r in got] == [first.id, retried.id, *([other.id] if mixed else [])]
    by_id = {r.id: r for r in got}
    for run, attempts, started_at in ((first, 1, now), (retried, 2, now - 100)):
        claimed = by_id[run.id]
        assert (claimed.status, claimed.attempts, claimed.worker_id) == ("running", attempts, "w1")
        assert claimed.started_at == pytest.approx(started_at)
        assert claimed.scheduled_at is None
        stored = store.get_run(run.id)
        assert stored is not None
        assert stored.status is RunStatus.RUNNING
        opened = store.get_attempts(run.id)[-1]
        assert (opened.number, opened.status, opened.worker_id) == (attempts, "running", "w1")
        assert (opened.executor, opened.finished_at) == ("loop", None)
        assert opened.started_at == pytest.approx(now)
    if mode == "with a task not started":  # claimed as it was, to be started by the worker
        assert (by_id[other.id].status, by_id[other.id].attempts) == ("pending", 0)
        assert store.get_attempts(other.id) == []
    elif mode == "two executors":
        assert (by_id[other.id].status, by_id[other.id].attempts) == ("running", 1)
        assert [(a.number, a.executor) for a in store.get_attempts(other.id)] == [(1, "inline")]
    assert len(store.get_attempts(retried.id)) == 2


def test_a_claim_that_finds_none_due_says_when_the_next_is(store: QueueStore) -> None:
    now = time.time()
    store.write(WriteBatch(new_runs=[unclaimed(scheduled_at=now + 30)]))
    request = ClaimRequest(worker_id="w", tasks=["demo.add"], queues=["default"], limit=5, now=now)
    result = store.write(WriteBatch(claim=request))
    assert result.claimed == []
    assert result.next_due == pytest.approx(now + 30)


def test_a_task_limit_counts_the_runs_every_worker_holds(store: QueueStore) -> None:
    store.write(WriteBatch(new_runs=[unclaimed() for _ in range(5)]))
    limits = {"demo.add": 2}
    assert len(claim(store, "w1", limits=limits)) == 2
    assert claim(store, "w2", limits=limits) == []
    held = [r for r in store.list_runs(limit=10) if r.worker_id == "w1"]
    store.write(
        WriteBatch(run_updates={held[0].id: {"status": RunStatus.COMPLETED, "finished_at": 1.0}})
    )
    assert len(claim(store, "w2", limits=limits)) == 1


def test_a_fence_refuses_the_changes_of_a_run_held_under_another_lease(store: QueueStore) -> None:
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


def test_a_fenced_run_inserted_by_the_same_batch_is_held(store: QueueStore) -> None:
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


# --- leases and the reaper ----------------------------------------------------------------


def test_the_reaper_gives_back_the_runs_of_a_worker_whose_lease_ran_out(store: QueueStore) -> None:
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
    lost = got[executing.id].error
    assert lost is not None
    assert lost.type == "WorkerLostError"
    assert got[last_try.id].status == RunStatus.FAILED
    last_error = got[last_try.id].error
    assert last_error is not None
    assert last_try.id in last_error.message
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


def test_a_lease_that_ran_out_with_no_reaper_about_is_renewed(store: QueueStore) -> None:
    store.register_worker("slow", hostname="h", pid=1, ttl=0.1)
    time.sleep(0.2)
    assert store.heartbeat("slow", ttl=5.0) is True
    assert store.is_worker_alive("slow")


def test_the_reaper_leaves_workflow_runs_and_gives_back_their_steps(store: QueueStore) -> None:
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
    store: QueueStore = shared_backend.open()
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


# --- workers ------------------------------------------------------------------------------


def test_worker_is_alive_while_registered(store: QueueStore) -> None:
    assert not store.is_worker_alive("w1")
    store.register_worker("w1", hostname="host", pid=os.getpid())
    assert store.is_worker_alive("w1")
    store.heartbeat("w1")
    store.heartbeat("never-registered")
    store.unregister_worker("w1")
    assert not store.is_worker_alive("w1")
    store.unregister_worker("w1")  # twice is fine


def test_odd_worker_ids(store: QueueStore) -> None:
    for worker_id in ("../../etc/passwd", "host name/with:odd*chars", "é" * 40):
        store.register_worker(worker_id, hostname="h", pid=1)
        assert store.is_worker_alive(worker_id)
        store.unregister_worker(worker_id)
        assert not store.is_worker_alive(worker_id)


def test_another_store_sees_the_worker(shared_backend: Backend) -> None:
    mine, theirs = shared_backend.open(), shared_backend.open()
    mine.register_worker("w1", hostname="host", pid=os.getpid())
    assert theirs.is_worker_alive("w1")
    with pytest.raises(StoreError, match="already running"):
        theirs.register_worker("w1", hostname="host", pid=os.getpid())
    mine.close()  # closing releases the locks the store holds
    assert not theirs.is_worker_alive("w1")
    theirs.register_worker("w1", hostname="host", pid=os.getpid())
    assert theirs.is_worker_alive("w1")


def test_killed_worker_process_is_dead_at_once(
    shared_backend: Backend, spawn_worker: SpawnWorker
) -> None:
    store: QueueStore = shared_backend.open()
    with spawn_worker(shared_backend.url, "child-worker") as proc:
        assert store.is_worker_alive("child-worker")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert reported_dead(shared_backend, store, "child-worker")


def reported_dead(backend: Backend, store: QueueStore, worker_id: str) -> bool:
    """Whether the store reports a killed worker dead: at once, on SQLite.

    The kernel drops a process's flock as it dies, before `wait()` returns. A PostgreSQL
    advisory lock goes when the server ends the session, which it does on reading the
    closed socket: some milliseconds later, so that case gets a short grace.
    """
    deadline = time.monotonic() + (5.0 if backend.name == "postgresql" else 0.0)
    while store.is_worker_alive(worker_id):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.002)
    return True


def test_a_worker_updates_the_queues_it_serves(store: QueueStore) -> None:
    store.register_worker("w1", hostname="h", pid=1, queues=["default"], concurrency=4)
    store.update_worker("w1", queues=["gpu", "default", "gpu"])
    (listed,) = store.list_workers()
    assert listed.queues == ["default", "gpu"]
    assert listed.concurrency == 4
    store.update_worker("w1", queues=None)
    assert store.list_workers()[0].queues is None
    store.update_worker("nobody", queues=["x"])  # an unknown worker: nothing to change
    assert [w.id for w in store.list_workers()] == ["w1"]


def test_peer_queues_are_those_of_the_other_live_workers_that_execute_runs(
    store: QueueStore,
) -> None:
    store.register_worker("me", hostname="h", pid=1, queues=["default"], concurrency=4)
    store.register_worker("peer", hostname="h", pid=2, queues=["gpu", "default"], concurrency=2)
    store.register_worker("submitter", hostname="h", pid=3, queues=["reports"])  # executes none
    store.register_worker("retired", hostname="h", pid=4, queues=["slow"], concurrency=1)
    store.retire_worker("retired")
    assert store.peer_queues("me") == {"default", "gpu"}
    assert store.peer_queues("peer") == {"default"}
    store.update_worker("peer", queues=["gpu"])
    assert store.peer_queues("me") == {"gpu"}
    store.unregister_worker("peer")
    assert store.peer_queues("me") == frozenset()


def test_a_retired_worker_is_dead_and_its_runs_are_given_back(store: QueueStore) -> None:
    store.register_worker("old", hostname="h", pid=1)
    store.register_worker("reaper", hostname="h", pid=2)
    (run,) = add_runs(store, make_run(worker_id="old"))
    assert store.is_worker_alive("old")
    store.retire_worker("old")
    assert not store.is_worker_alive("old")
    assert store.reap("reaper") == 1
    got = store.get_run(run.id)
    assert got is not None
    assert got.worker_id is None
    assert {w.id: w.state for w in store.list_workers()} == {"old": "lost", "reaper": "alive"}
    assert store.heartbeat("old") is False  # it registers again under a new id


# --- orphaned runs ------------------------------------------------------------------------


def test_claims_only_orphans_of_listed_tasks(backend: Backend) -> None:
    store: QueueStore = backend.open()
    store.register_worker("me", hostname="h", pid=1)
    store.register_worker("alive", hostname="h", pid=2)
    if backend.shared:  # a worker of another store is alive too
        backend.open().register_worker("elsewhere", hostname="h", pid=3)
    running = {"status": RunStatus.RUNNING, "attempts": 1, "started_at": T0 + 1}
    runs = {
        "dead-running": make_run(worker_id="ghost", created_at=T0 + 1, **running),
        "dead-pending": make_run(worker_id="ghost", created_at=T0 + 2),
        "unowned": make_run(created_at=T0 + 3),
        "alive": make_run(worker_id="alive", **running),
        "mine": make_run(worker_id="me", **running),
        "dead-finished": make_run(worker_id="ghost", status=RunStatus.COMPLETED),
        "other-task": make_run(task="demo.other", worker_id="ghost"),
        "second-ghost": make_run(task="demo.mul", worker_id="ghost-2", created_at=T0 + 4),
    }
    if backend.shared:
        runs["elsewhere"] = make_run(worker_id="elsewhere")
    add_runs(store, *runs.values())

    claimed = store.claim_orphaned_runs("me", ["demo.add", "demo.mul"])
    names = ["dead-running", "dead-pending", "unowned", "second-ghost"]
    assert [r.id for r in claimed] == [runs[n].id for n in names]
    assert claimed[0].status is RunStatus.RUNNING
    assert claimed[0].attempts == 1
    for got, name in zip(claimed, names, strict=True):
        before = runs[name]
        before.worker_id = "me"
        assert got == before
        assert store.get_run(got.id) == before
    assert store.claim_orphaned_runs("me", ["demo.add", "demo.mul"]) == []
    assert store.claim_orphaned_runs("me", []) == []
    alive = store.get_run(runs["alive"].id)
    assert alive is not None
    assert alive.worker_id == "alive"


def test_two_stores_never_claim_the_same_run(shared_backend: Backend) -> None:
    stores: list[QueueStore] = [shared_backend.open(), shared_backend.open()]
    for i, s in enumerate(stores):
        s.register_worker(f"claimer-{i}", hostname="h", pid=i)
    orphans = add_runs(
        stores[0],
        *(
            make_run(worker_id=None if i % 3 == 0 else "ghost", created_at=T0 + i)
            for i in range(300)
        ),
    )
    barrier = threading.Barrier(2)
    claims: list[list[Run]] = [[], []]

    def claim(i: int) -> None:
        barrier.wait()
        claims[i] = stores[i].claim_orphaned_runs(f"claimer-{i}", ["demo.add"])

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    first, second = ({r.id for r in c} for c in claims)
    assert not first & second
    assert first | second == {r.id for r in orphans}
    owners = {r.id: r.worker_id for r in stores[1].list_runs(limit=1000)}
    assert all(owners[run_id] == "claimer-0" for run_id in first)
    assert all(owners[run_id] == "claimer-1" for run_id in second)


def test_runs_of_a_killed_worker_process_are_claimable(
    shared_backend: Backend, spawn_worker: SpawnWorker
) -> None:
    store: QueueStore = shared_backend.open()
    store.register_worker("me", hostname="h", pid=1)
    (run,) = add_runs(store, make_run(worker_id="child", status=RunStatus.RUNNING))
    with spawn_worker(shared_backend.url, "child") as proc:
        assert store.claim_orphaned_runs("me", ["demo.add"]) == []
        proc.kill()
        proc.wait()
        assert reported_dead(shared_backend, store, "child")
        assert [r.id for r in store.claim_orphaned_runs("me", ["demo.add"])] == [run.id]


def test_workers_are_listed_with_what_they_hold(store: QueueStore) -> None:
    store.register_worker("w1", hostname="host-a", pid=11)
    store.register_worker("w2", hostname="host-b", pid=22)
    add_runs(
        store,
        make_run(worker_id="w1", status=RunStatus.RUNNING),
        make_run(worker_id="w1"),
        make_run(worker_id="w1", status=RunStatus.COMPLETED),
    )
    listed = {w.id: w for w in store.list_workers()}
    assert set(listed) == {"w1", "w2"}
    assert (listed["w1"].hostname, listed["w1"].pid, listed["w1"].holds) == ("host-a", 11, 2)
    assert (listed["w2"].state, listed["w2"].holds) == ("alive", 0)
    # Alive workers are never pruned, however old their heartbeat.
    assert store.prune_workers(lost_before=time.time() + 3600) == 0
    store.unregister_worker("w2")
    assert [w.id for w in store.list_workers()] == ["w1"]


def test_a_lost_worker_is_listed_lost_and_pruned_after_the_retention(
    shared_backend: Backend, spawn_worker: SpawnWorker
) -> None:
    store: QueueStore = shared_backend.open()
    store.register_worker("me", hostname="h", pid=1)
    with (
        spawn_worker(shared_backend.url, "gone") as proc,
        spawn_worker(shared_backend.url, "holder") as holder,
    ):
        add_runs(store, make_run(worker_id="holder", status=RunStatus.RUNNING))
        for process in (proc, holder):
            process.kill()
            process.wait()
        assert reported_dead(shared_backend, store, "gone")
        assert reported_dead(shared_backend, store, "holder")
        states = {w.id: w.state for w in store.list_workers()}
        assert states == {"me": "alive", "gone": "lost", "holder": "lost"}
        # Within the retention nothing goes; after it, the lost worker that holds no run.
        assert store.prune_workers(lost_before=time.time() - 3600) == 0
        assert store.prune_workers(lost_before=time.time() + 1) == 1
        assert {w.id for w in store.list_workers()} == {"me", "holder"}


# --- cancellation -------------------------------------------------------------------------


def test_request_cancel(store: QueueStore) -> None:
    pending, done = add_runs(store, make_run(), make_run(status=RunStatus.COMPLETED))
    got = store.request_cancel(pending.id)
    assert got is not None
    assert got.cancel_requested
    assert got.id == pending.id
    stored = store.get_run(pending.id)
    assert stored is not None
    assert stored.cancel_requested
    finished = store.request_cancel(done.id)
    assert finished is not None
    assert not finished.cancel_requested
    assert store.request_cancel(new_run_id()) is None


def test_cancel_requests_of_a_worker(store: QueueStore) -> None:
    runs = add_runs(
        store,
        make_run(worker_id="w1", status=RunStatus.RUNNING),
        make_run(worker_id="w1", status=RunStatus.RUNNING),
        make_run(worker_id="w1", status=RunStatus.RUNNING),
        make_run(worker_id="w2", status=RunStatus.RUNNING),
    )
    for run in (runs[0], runs[2], runs[3]):
        store.request_cancel(run.id)
    store.write(WriteBatch(run_updates={runs[2].id: {"status": "cancelled"}}))
    assert store.cancel_requests("w1") == [runs[0].id]
    assert store.cancel_requests("w2") == [runs[3].id]
    assert store.cancel_requests("nobody") == []


def test_cancel_orphaned_run(store: QueueStore) -> None:
    store.register_worker("alive", hostname="h", pid=1)
    running = {"status": RunStatus.RUNNING, "attempts": 1}
    owned, orphan, unowned, done = add_runs(
        store,
        make_run(worker_id="alive", **running),
        make_run(worker_id="ghost", **running),
        make_run(),
        make_run(worker_id="ghost", status=RunStatus.COMPLETED),
    )
    store.write(WriteBatch(new_attempts=[Attempt(orphan.id, 1, started_at=T0, worker_id="ghost")]))

    assert store.cancel_orphaned_run(owned.id, finished_at=T0 + 9) is False
    assert store.cancel_orphaned_run(orphan.id, finished_at=T0 + 9) is True
    assert store.cancel_orphaned_run(orphan.id, finished_at=T0 + 10) is False
    assert store.cancel_orphaned_run(unowned.id, finished_at=T0 + 9) is True
    assert store.cancel_orphaned_run(done.id, finished_at=T0 + 9) is False
    assert store.cancel_orphaned_run(new_run_id(), finished_at=T0 + 9) is False

    got = {r.id: r for r in store.list_runs()}
    assert got[owned.id].status is RunStatus.RUNNING
    assert (got[orphan.id].status, got[orphan.id].finished_at) == ("cancelled", T0 + 9)
    assert got[unowned.id].status is RunStatus.CANCELLED
    assert got[done.id].status is RunStatus.COMPLETED
    (attempt,) = store.get_attempts(orphan.id)
    assert (attempt.status, attempt.finished_at) == ("cancelled", T0 + 9)


# --- the change feed ----------------------------------------------------------------------


def test_only_a_store_other_processes_reach_has_a_feed(backend: Backend, store: QueueStore) -> None:
    feed = store.watch(lambda channel, payload: None)
    try:
        assert (feed is not None) is backend.shared
    finally:
        if feed is not None:
            feed.stop()


def test_a_feed_hears_the_commits_of_another_store(shared_backend: Backend) -> None:
    mine: QueueStore = shared_backend.open()
    theirs: QueueStore = shared_backend.open()
    heard = threading.Event()
    feed = mine.watch(lambda channel, payload: heard.set())
    assert feed is not None
    try:
        # The feed starts listening in a thread of its own: commit until it hears one.
        deadline = time.monotonic() + 10
        while not heard.wait(0.05):
            assert time.monotonic() < deadline, "the feed heard no commit of the other store"
            theirs.write(WriteBatch(new_runs=[make_run()]))
    finally:
        feed.stop()
