"""The store contract, checked on every backend: memory, a SQLite file and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import signal
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from subprocess import Popen
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import BaseModel

from taskloom.exceptions import StoreError
from taskloom.runs import Attempt, ErrorInfo, LogLine, Run, RunStatus, new_run_id
from taskloom.store import (
    ApiTokenRecord,
    MemoryStore,
    ServiceLogLine,
    ServiceRecord,
    ServiceStartRecord,
    SqlStore,
    Store,
    WriteBatch,
    default_database_url,
    open_store,
    resolve_database_url,
)

if TYPE_CHECKING:
    from conftest import Backend

SpawnWorker = Callable[[str, str], AbstractContextManager[Popen[str]]]

T0 = 1_700_000_000.0


def make_run(**fields: Any) -> Run:
    fields.setdefault("id", new_run_id())
    fields.setdefault("task", "demo.add")
    fields.setdefault("inputs", {"a": 1, "b": 2})
    fields.setdefault("created_at", T0)
    return Run(**fields)


def add_runs(store: Store, *runs: Run) -> list[Run]:
    store.write(WriteBatch(new_runs=list(runs)))
    return list(runs)


class Point(BaseModel):
    x: int
    y: int


# --- writing and reading ------------------------------------------------------------------


def test_every_field_round_trips(store: Store) -> None:
    run = make_run(
        inputs={"text": "héllo", "n": 3, "nested": {"list": [1, 2.5, None, True]}},
        status=RunStatus.FAILED,
        priority=7,
        result={"total": 3, "items": ["a", "b"]},
        error=ErrorInfo("ValueError", "bad input", traceback="Traceback ...", retryable=True),
        attempts=2,
        max_attempts=5,
        parent_id=new_run_id(),
        idempotency_key="order-42",
        worker_id="host-1-abc",
        created_at=T0 + 0.123456,
        scheduled_at=T0 + 10.5,
        started_at=T0 + 11.25,
        finished_at=T0 + 12.75,
        progress=0.5,
        progress_message="halfway",
        cancel_requested=True,
        config={"timeout": 30.0, "retry": {"max_attempts": 5}},
    )
    add_runs(store, run)
    assert store.get_run(run.id) == run


def test_defaults_round_trip(store: Store) -> None:
    run = make_run(inputs={})
    add_runs(store, run)
    got = store.get_run(run.id)
    assert got == run
    assert got is not None
    assert got.status is RunStatus.PENDING
    assert got.error is None


def test_unknown_run_is_none(store: Store) -> None:
    assert store.get_run(new_run_id()) is None
    assert store.get_attempts(new_run_id()) == []
    assert store.get_logs(new_run_id()) == []


def test_values_are_stored_as_json(store: Store) -> None:
    when = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    run = make_run(inputs={"pair": (1, 2), "when": when, "point": Point(x=1, y=2)})
    add_runs(store, run)
    got = store.get_run(run.id)
    assert got is not None
    assert got.inputs == {"pair": [1, 2], "when": "2024-05-06T07:08:09Z", "point": {"x": 1, "y": 2}}


def test_value_that_is_not_json_is_a_store_error(store: Store) -> None:
    run = make_run(inputs={"thing": object()})
    with pytest.raises(StoreError, match="not JSON"):
        add_runs(store, run)
    assert store.get_run(run.id) is None


def test_empty_batch_is_a_no_op(store: Store) -> None:
    store.write(WriteBatch())


def test_failing_batch_leaves_nothing(store: Store) -> None:
    (existing,) = add_runs(store, make_run(idempotency_key="taken"))
    newcomer = make_run()
    batch = WriteBatch(
        new_runs=[newcomer, make_run(idempotency_key="taken")],  # the second one clashes
        run_updates={existing.id: {"status": RunStatus.RUNNING, "attempts": 1}},
        new_attempts=[Attempt(existing.id, 1, started_at=T0)],
        logs=[LogLine(existing.id, 1, T0, "INFO", "hello")],
    )
    with pytest.raises(StoreError):
        store.write(batch)
    assert store.get_run(newcomer.id) is None
    assert store.get_run(existing.id) == existing
    assert store.get_attempts(existing.id) == []
    assert store.get_logs(existing.id) == []


def test_failing_attempt_insert_rolls_back_the_runs(store: Store) -> None:
    add_runs(store, make_run(idempotency_key="taken"))
    (run,) = add_runs(store, make_run())
    newcomer = make_run()
    with pytest.raises(StoreError):
        store.write(
            WriteBatch(
                new_runs=[newcomer, make_run(idempotency_key="taken")],
                new_attempts=[Attempt(run.id, 1, started_at=T0)],
            )
        )
    assert store.get_run(newcomer.id) is None
    assert store.get_attempts(run.id) == []


def test_a_batch_written_again_changes_nothing_more(store: Store) -> None:
    # A commit cut off mid-way may have happened: the writer then writes the same batch
    # again, and the runs and attempts already there are left as they are.
    run = make_run()
    batch = WriteBatch(
        new_runs=[run],
        run_updates={run.id: {"status": RunStatus.RUNNING, "attempts": 1}},
        new_attempts=[Attempt(run.id, 1, started_at=T0)],
    )
    store.write(batch)
    store.write(batch)
    stored = store.get_run(run.id)
    assert stored is not None
    assert (stored.status, stored.attempts) == (RunStatus.RUNNING, 1)
    assert [a.number for a in store.get_attempts(run.id)] == [1]
    assert len(store.list_runs()) == 1


def test_unknown_update_column_is_rejected(store: Store) -> None:
    (run,) = add_runs(store, make_run())
    with pytest.raises(ValueError, match="task"):
        store.write(WriteBatch(run_updates={run.id: {"status": "running", "task": "other"}}))
    with pytest.raises(ValueError, match="number"):
        store.write(WriteBatch(attempt_updates={(run.id, 1): {"number": 2}}))
    assert store.get_run(run.id) == run


def test_unknown_status_is_rejected(store: Store) -> None:
    (run,) = add_runs(store, make_run())
    with pytest.raises(ValueError, match="bogus"):
        store.write(WriteBatch(run_updates={run.id: {"status": "bogus"}}))
    with pytest.raises(ValueError, match="bogus"):
        add_runs(store, make_run(status="bogus"))
    assert store.list_runs() == [run]


def test_run_updates_with_different_column_sets(store: Store) -> None:
    runs = add_runs(store, *(make_run(created_at=T0 + i) for i in range(6)))
    failure = ErrorInfo("KeyError", "'x'", retryable=False)
    updates: dict[str, dict[str, Any]] = {
        runs[0].id: {"status": RunStatus.RUNNING, "started_at": T0 + 1, "attempts": 1},
        runs[1].id: {"status": "running", "started_at": T0 + 2, "attempts": 1},
        runs[2].id: {"status": "completed", "finished_at": T0 + 3, "result": [1, 2]},
        runs[3].id: {"status": RunStatus.FAILED, "finished_at": T0 + 4, "error": failure},
        runs[4].id: {"progress": 0.25, "progress_message": "a quarter"},
        runs[5].id: {"cancel_requested": True, "worker_id": "w9", "scheduled_at": T0 + 60},
    }
    store.write(WriteBatch(run_updates=updates))
    got = [store.get_run(r.id) for r in runs]
    assert [g.status if g else None for g in got] == [
        "running",
        "running",
        "completed",
        "failed",
        "pending",
        "pending",
    ]
    assert got[0] is not None
    assert got[0].started_at == T0 + 1
    assert got[0].attempts == 1
    assert got[1] is not None
    assert got[1].status is RunStatus.RUNNING
    assert got[2] is not None
    assert got[2].result == [1, 2]
    assert got[2].finished_at == T0 + 3
    assert got[3] is not None
    assert got[3].error == failure
    assert got[4] is not None
    assert (got[4].progress, got[4].progress_message) == (0.25, "a quarter")
    assert got[5] is not None
    assert got[5].cancel_requested
    assert got[5].worker_id == "w9"
    assert got[5].scheduled_at == T0 + 60

    # Clearing values, and a second round with the same column sets (cached statements).
    store.write(WriteBatch(run_updates={runs[3].id: {"error": None, "result": None}}))
    store.write(WriteBatch(run_updates={runs[4].id: {"progress": 1.0, "progress_message": None}}))
    third, fourth = store.get_run(runs[3].id), store.get_run(runs[4].id)
    assert third is not None
    assert third.error is None
    assert third.result is None
    assert fourth is not None
    assert (fourth.progress, fourth.progress_message) == (1.0, None)


def test_updates_apply_after_the_new_runs_of_their_batch(store: Store) -> None:
    run = make_run()
    store.write(WriteBatch(new_runs=[run], run_updates={run.id: {"status": "running"}}))
    got = store.get_run(run.id)
    assert got is not None
    assert got.status is RunStatus.RUNNING


def test_update_of_an_unknown_run_is_ignored(store: Store) -> None:
    store.write(WriteBatch(run_updates={new_run_id(): {"status": "running"}}))


def test_attempts_and_their_updates(store: Store) -> None:
    (run,) = add_runs(store, make_run())
    first = Attempt(run.id, 1, started_at=T0 + 1, worker_id="w1")
    store.write(WriteBatch(new_attempts=[first]))
    assert store.get_attempts(run.id) == [first]

    boom = ErrorInfo("RuntimeError", "boom", traceback="tb", retryable=True)
    second = Attempt(run.id, 2, started_at=T0 + 3, worker_id="w2")
    store.write(
        WriteBatch(
            new_attempts=[second],
            attempt_updates={
                (run.id, 1): {"status": "failed", "finished_at": T0 + 2, "error": boom}
            },
        )
    )
    store.write(
        WriteBatch(attempt_updates={(run.id, 2): {"status": "completed", "finished_at": T0 + 4}})
    )
    assert store.get_attempts(run.id) == [
        Attempt(run.id, 1, T0 + 1, T0 + 2, "failed", boom, "w1"),
        Attempt(run.id, 2, T0 + 3, T0 + 4, "completed", None, "w2"),
    ]


def test_logs_are_paged_by_id(store: Store) -> None:
    run, other = add_runs(store, make_run(), make_run())
    lines = [LogLine(run.id, 1, T0 + i, "INFO", f"line {i}") for i in range(25)]
    interleaved = [LogLine(other.id, 1, T0, "WARNING", "elsewhere")] * 3
    store.write(WriteBatch(logs=lines[:10] + interleaved + lines[10:]))

    first = store.get_logs(run.id, limit=10)
    assert [g.message for g in first] == [f"line {i}" for i in range(10)]
    assert all(g.id is not None for g in first)
    ids = [g.id or 0 for g in first]
    assert ids == sorted(ids)
    assert len(set(ids)) == 10
    second = store.get_logs(run.id, after_id=ids[-1], limit=10)
    third = store.get_logs(run.id, after_id=second[-1].id or 0, limit=10)
    assert [g.message for g in second + third] == [f"line {i}" for i in range(10, 25)]
    assert store.get_logs(run.id, after_id=third[-1].id or 0) == []
    assert (third[0].run_id, third[0].attempt, third[0].level) == (run.id, 1, "INFO")
    assert third[0].created_at == T0 + 20
    assert len(store.get_logs(other.id)) == 3


# --- listing ------------------------------------------------------------------------------


def test_listing_is_newest_first_with_ties_broken_by_id(store: Store) -> None:
    runs = add_runs(store, *(make_run(created_at=T0 + i % 3) for i in range(9)))
    expected = sorted(runs, key=lambda r: (r.created_at, r.id), reverse=True)
    assert [r.id for r in store.list_runs()] == [r.id for r in expected]


def test_listing_filters(store: Store) -> None:
    parent = make_run(task="demo.parent", created_at=T0)
    runs = [
        parent,
        make_run(task="demo.add", status=RunStatus.COMPLETED, created_at=T0 + 1),
        make_run(task="demo.add", status=RunStatus.FAILED, created_at=T0 + 2),
        make_run(task="demo.mul", status=RunStatus.RUNNING, created_at=T0 + 3),
        make_run(task="demo.add", parent_id=parent.id, created_at=T0 + 4),
        make_run(task="demo.mul", parent_id=parent.id, status="failed", created_at=T0 + 5),
    ]
    runs[5].status = RunStatus.FAILED
    add_runs(store, *runs)

    def ids(found: list[Run]) -> list[int]:
        return [runs.index(next(r for r in runs if r.id == f.id)) for f in found]

    assert ids(store.list_runs(task="demo.add")) == [4, 2, 1]
    assert ids(store.list_runs(status="failed")) == [5, 2]
    assert ids(store.list_runs(status=RunStatus.RUNNING)) == [3]
    assert ids(store.list_runs(status=["pending", "running"])) == [4, 3, 0]
    assert ids(store.list_runs(status={RunStatus.COMPLETED, RunStatus.FAILED})) == [5, 2, 1]
    assert ids(store.list_runs(parent_id=parent.id)) == [5, 4]
    assert ids(store.list_runs(task="demo.mul", status="failed", parent_id=parent.id)) == [5]
    assert store.list_runs(status=[]) == []
    assert store.list_runs(task="nope") == []


def test_cursor_pagination_visits_every_run_once(store: Store) -> None:
    runs = add_runs(store, *(make_run(created_at=T0 + i // 4) for i in range(23)))
    seen: list[str] = []
    page = store.list_runs(limit=5)
    pages = 0
    while page:
        pages += 1
        seen += [r.id for r in page]
        page = store.list_runs(limit=5, before=page[-1].id)
    expected = sorted(runs, key=lambda r: (r.created_at, r.id), reverse=True)
    assert seen == [r.id for r in expected]
    assert pages == 5


def test_cursor_pagination_with_filters(store: Store) -> None:
    runs = add_runs(
        store, *(make_run(task="a" if i % 2 else "b", created_at=T0 + i) for i in range(10))
    )
    first = store.list_runs(task="a", limit=3)
    rest = store.list_runs(task="a", limit=3, before=first[-1].id)
    assert [r.id for r in first + rest] == [runs[i].id for i in (9, 7, 5, 3, 1)]


def test_listing_limits(store: Store) -> None:
    add_runs(store, *(make_run(created_at=T0 + i) for i in range(3)))
    assert len(store.list_runs(limit=2)) == 2
    assert len(store.list_runs(limit=1_000_000)) == 3  # capped, not an error
    assert store.list_runs(limit=0) == []
    assert store.list_runs(before=new_run_id()) == []  # an unknown cursor: an empty page


# --- idempotency --------------------------------------------------------------------------


def test_same_idempotency_key_twice_keeps_one_run(store: Store) -> None:
    first = make_run(idempotency_key="charge-1", inputs={"amount": 1})
    second = make_run(idempotency_key="charge-1", inputs={"amount": 2})
    assert store.insert_run_idempotent(first) == first
    kept = store.insert_run_idempotent(second)
    assert kept == first
    assert [r.id for r in store.list_runs()] == [first.id]
    assert store.get_run(second.id) is None


def test_idempotent_insert_without_a_key_inserts(store: Store) -> None:
    run = make_run()
    assert store.insert_run_idempotent(run) == run
    assert store.get_run(run.id) == run


def test_idempotency_key_is_unique_in_batches_too(store: Store) -> None:
    store.insert_run_idempotent(make_run(idempotency_key="k"))
    with pytest.raises(StoreError):
        add_runs(store, make_run(idempotency_key="k"))


def test_concurrent_idempotent_inserts_keep_one_run(backend: Backend) -> None:
    stores = [backend.open(), backend.open()]
    barrier = threading.Barrier(8)
    kept: list[str] = []

    def insert(i: int) -> None:
        barrier.wait()
        kept.append(stores[i % 2].insert_run_idempotent(make_run(idempotency_key="once")).id)

    threads = [threading.Thread(target=insert, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(kept) == 8
    assert len(set(kept)) == 1
    assert [r.id for r in stores[0].list_runs()] == kept[:1]


# --- workers ------------------------------------------------------------------------------


def test_worker_is_alive_while_registered(store: Store) -> None:
    assert not store.is_worker_alive("w1")
    store.register_worker("w1", hostname="host", pid=os.getpid())
    assert store.is_worker_alive("w1")
    store.heartbeat("w1")
    store.heartbeat("never-registered")
    store.unregister_worker("w1")
    assert not store.is_worker_alive("w1")
    store.unregister_worker("w1")  # twice is fine


def test_odd_worker_ids(store: Store) -> None:
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
    store = shared_backend.open()
    with spawn_worker(shared_backend.url, "child-worker") as proc:
        assert store.is_worker_alive("child-worker")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert reported_dead(shared_backend, store, "child-worker")


def reported_dead(backend: Backend, store: Store, worker_id: str) -> bool:
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


# --- orphaned runs ------------------------------------------------------------------------


def test_claims_only_orphans_of_listed_tasks(backend: Backend) -> None:
    store = backend.open()
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
    stores = [shared_backend.open(), shared_backend.open()]
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
    store = shared_backend.open()
    store.register_worker("me", hostname="h", pid=1)
    (run,) = add_runs(store, make_run(worker_id="child", status=RunStatus.RUNNING))
    with spawn_worker(shared_backend.url, "child") as proc:
        assert store.claim_orphaned_runs("me", ["demo.add"]) == []
        proc.kill()
        proc.wait()
        assert reported_dead(shared_backend, store, "child")
        assert [r.id for r in store.claim_orphaned_runs("me", ["demo.add"])] == [run.id]


def test_workers_are_listed_with_what_they_hold(store: Store) -> None:
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
    store = shared_backend.open()
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


def test_request_cancel(store: Store) -> None:
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


def test_cancel_requests_of_a_worker(store: Store) -> None:
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


def test_cancel_orphaned_run(store: Store) -> None:
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


# --- services -----------------------------------------------------------------------------


def make_service(**fields: Any) -> ServiceRecord:
    fields.setdefault("name", "sensor")
    fields.setdefault("state", "failed")
    fields.setdefault("since", T0 + 5.5)
    fields.setdefault("updated_at", T0 + 5.5)
    return ServiceRecord(**fields)


def test_service_record_round_trips(store: Store) -> None:
    record = make_service(
        starts=6,
        restarts=5,
        restart_times=[T0 + 1.0, T0 + 2.25],
        last_error=ErrorInfo("RuntimeError", "unplugged", traceback="Traceback ..."),
        stop_timed_out=True,
        config={"period": 0.5, "ports": [1, 2], "name": "héllo"},
    )
    store.save_service(record)
    assert store.get_service("sensor") == record
    minimal = make_service(name="idle", state="stopped")
    store.save_service(minimal)
    got = store.get_service("idle")
    assert got == minimal
    assert got is not None
    assert (got.starts, got.restart_times, got.last_error, got.config) == (0, [], None, None)


def test_saving_a_service_again_replaces_its_record(store: Store) -> None:
    store.save_service(make_service(state="running", starts=1, config={"a": 1}))
    later = make_service(state="stopped", starts=2, restarts=1, last_error=None, config=None)
    store.save_service(later)
    assert store.get_service("sensor") == later
    assert [r.name for r in store.list_services()] == ["sensor"]


def test_services_are_listed_by_name_and_unknown_is_none(store: Store) -> None:
    assert store.get_service("nothing") is None
    assert store.list_services() == []
    assert store.get_service_starts("nothing") == []
    for name in ("b", "c", "a"):
        store.save_service(make_service(name=name))
    assert [r.name for r in store.list_services()] == ["a", "b", "c"]


def test_service_config_is_stored_as_json(store: Store) -> None:
    store.save_service(make_service(config={"pair": (1, 2), "point": Point(x=1, y=2)}))
    got = store.get_service("sensor")
    assert got is not None
    assert got.config == {"pair": [1, 2], "point": {"x": 1, "y": 2}}
    with pytest.raises(StoreError, match="not JSON"):
        store.save_service(make_service(name="bad", config={"thing": object()}))
    assert store.get_service("bad") is None


def test_service_starts_are_upserted_and_read_newest_first(store: Store) -> None:
    error = ErrorInfo("RuntimeError", "boom", traceback="Traceback ...")
    first = ServiceStartRecord(number=1, started_at=T0)
    store.save_service_start("sensor", first)
    assert store.get_service_starts("sensor") == [first]
    ended = ServiceStartRecord(
        number=1, started_at=T0, finished_at=T0 + 0.5, exit_reason="failed", error=error
    )
    store.save_service_start("sensor", ended)
    second = ServiceStartRecord(number=2, started_at=T0 + 1.5, restart=True)
    store.save_service_start("sensor", second)
    store.save_service_start("other", ServiceStartRecord(number=1, started_at=T0 + 9))
    assert store.get_service_starts("sensor") == [second, ended]
    assert store.get_service_starts("sensor", limit=1) == [second]
    assert store.get_service_starts("sensor", limit=0) == []
    assert [s.started_at for s in store.get_service_starts("other")] == [T0 + 9]


def test_another_store_sees_the_services(shared_backend: Backend) -> None:
    writer = shared_backend.open()
    record = make_service(starts=3, restart_times=[T0])
    writer.save_service(record)
    start = ServiceStartRecord(number=3, started_at=T0, restart=True)
    writer.save_service_start("sensor", start)
    reader = shared_backend.open()
    assert reader.get_service("sensor") == record
    assert reader.get_service_starts("sensor") == [start]


# --- opening stores -----------------------------------------------------------------------


def test_resolve_database_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    default = f"sqlite:///{tmp_path / '.taskloom' / 'taskloom.db'}"
    assert default_database_url() == default
    assert not (tmp_path / ".taskloom").exists()  # created on open, not here
    assert resolve_database_url(None) == default
    assert resolve_database_url("runs.db") == f"sqlite:///{tmp_path / 'runs.db'}"
    assert resolve_database_url("/x/y.db") == "sqlite:////x/y.db"
    assert resolve_database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert resolve_database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert resolve_database_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert resolve_database_url("sqlite://") == "sqlite://"
    assert resolve_database_url("sqlite:///:memory:") == "sqlite:///:memory:"


def test_open_store_default_creates_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store()
    try:
        assert isinstance(store, SqlStore)
        assert (tmp_path / ".taskloom" / "taskloom.db").is_file()
    finally:
        store.close()
    memory = open_store("memory://")
    assert isinstance(memory, MemoryStore)
    memory.close()


def test_sqlite_file_settings(tmp_path: Path) -> None:
    store = SqlStore(str(tmp_path / "deep" / "er" / "runs.db"))
    store.open()
    try:
        engine = store._engine
        assert engine is not None
        with engine.connect() as conn:
            pragmas = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            }
        assert pragmas == {
            "journal_mode": "wal",
            "synchronous": 1,
            "busy_timeout": 30000,
            "foreign_keys": 0,
        }
    finally:
        store.close()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite_is_shared_by_threads(url: str) -> None:
    with SqlStore(url) as store:
        errors: list[BaseException] = []

        def work(i: int) -> None:
            try:
                run = make_run(created_at=T0 + i)
                store.write(WriteBatch(new_runs=[run]))
                assert store.get_run(run.id) == run
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(store.list_runs()) == 8
        store.register_worker("w", hostname="h", pid=1)
        assert store.is_worker_alive("w")
        assert not store.is_worker_alive("x")


def test_closed_store_raises_store_error(tmp_path: Path) -> None:
    store = SqlStore(str(tmp_path / "runs.db"))
    with pytest.raises(StoreError, match="not open"):
        store.get_run("x")
    store.open()
    store.close()
    with pytest.raises(StoreError, match="not open"):
        store.list_runs()


def test_killed_worker_lock_file_is_removed(tmp_path: Path, spawn_worker: SpawnWorker) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    with SqlStore(url) as store, spawn_worker(url, "child") as proc:
        lock = tmp_path / "runs.db.workers" / "child.lock"
        assert lock.read_text().strip() == str(proc.pid)
        proc.kill()
        proc.wait()
        assert lock.exists()
        assert not store.is_worker_alive("child")
        assert not lock.exists()


# service control ---------------------------------------------------------------------------
def test_service_requests_wait_until_finished(store: Store) -> None:
    first = store.add_service_request("sensor", "start", {"period": 0.5}, requested_at=T0)
    second = store.add_service_request("sensor", "stop")
    assert second > first
    pending = store.pending_service_requests()
    assert [(r.id, r.service, r.action) for r in pending] == [
        (first, "sensor", "start"),
        (second, "sensor", "stop"),
    ]
    assert pending[0].config == {"period": 0.5}
    assert pending[0].requested_at == T0
    assert pending[0].handled_at is None
    assert pending[0].outcome is None
    assert pending[1].config is None

    store.finish_service_request(first, {"ok": True, "state": "running"}, handled_at=T0 + 1)
    assert [r.id for r in store.pending_service_requests()] == [second]
    done = store.get_service_request(first)
    assert done is not None
    assert done.handled_at == T0 + 1
    assert done.outcome == {"ok": True, "state": "running"}
    assert store.get_service_request(10_000) is None


def test_only_an_unhandled_service_request_can_be_withdrawn(store: Store) -> None:
    waiting = store.add_service_request("sensor", "restart", [1, (2, 3)])
    handled = store.add_service_request("sensor", "stop")
    store.finish_service_request(handled, {"ok": True})
    request = store.get_service_request(waiting)
    assert request is not None
    assert request.config == [1, [2, 3]]
    assert store.cancel_service_request(waiting) is True
    assert store.get_service_request(waiting) is None
    assert store.cancel_service_request(waiting) is False
    assert store.cancel_service_request(handled) is False
    assert store.get_service_request(handled) is not None
    assert store.pending_service_requests() == []


def test_service_request_config_that_is_not_json_is_a_store_error(store: Store) -> None:
    with pytest.raises(StoreError):
        store.add_service_request("sensor", "start", {"x": object()})
    assert store.pending_service_requests() == []


def test_service_logs_are_kept_per_service_and_paged_by_id(store: Store) -> None:
    def line(service: str, i: int) -> ServiceLogLine:
        return ServiceLogLine(
            service=service, start_number=1 + i // 3, created_at=T0 + i, level="INFO",
            message=f"line {i}",
        )  # fmt: skip

    store.add_service_log_lines([])
    store.add_service_log_lines([line("a", i) for i in range(5)] + [line("b", 0)])
    store.add_service_log_lines([line("a", 5)])
    lines = store.get_service_logs("a")
    assert [g.message for g in lines] == [f"line {i}" for i in range(6)]
    assert [g.start_number for g in lines] == [1, 1, 1, 2, 2, 2]
    assert lines[0].created_at == T0
    assert lines[0].level == "INFO"
    ids = [g.id for g in lines]
    assert all(i is not None for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == 6
    after = store.get_service_logs("a", after_id=lines[1].id or 0, limit=2)
    assert [g.message for g in after] == ["line 2", "line 3"]
    assert store.get_service_logs("a", limit=0) == []
    assert [g.message for g in store.get_service_logs("b")] == ["line 0"]
    assert store.get_service_logs("nobody") == []


# --- API tokens ------------------------------------------------------------------------------


def test_api_tokens_are_found_by_hash_listed_and_revoked_once(store: Store) -> None:
    first = ApiTokenRecord(id="t1", name="ci", role="operator", token_hash="a" * 64, created_at=T0)
    second = ApiTokenRecord(
        id="t2", name="desk", role="viewer", token_hash="b" * 64, created_at=T0 + 1
    )
    store.add_api_token(second)
    store.add_api_token(first)
    assert store.find_api_token("a" * 64) == first
    assert store.find_api_token("c" * 64) is None
    assert [t.id for t in store.list_api_tokens()] == ["t1", "t2"]

    assert store.revoke_api_token("t1", revoked_at=T0 + 5) is True
    assert store.revoke_api_token("t1") is False  # revoked already
    assert store.revoke_api_token("missing") is False
    found = store.find_api_token("a" * 64)
    assert found is not None
    assert found.revoked_at == T0 + 5
    assert store.list_api_tokens()[1].revoked_at is None


def test_an_api_token_id_or_hash_is_never_taken_twice(store: Store) -> None:
    record = ApiTokenRecord(id="t1", name="a", role="admin", token_hash="a" * 64, created_at=T0)
    store.add_api_token(record)
    same_id = ApiTokenRecord(id="t1", name="b", role="admin", token_hash="b" * 64, created_at=T0)
    with pytest.raises(StoreError, match="exists already"):
        store.add_api_token(same_id)
    same_hash = ApiTokenRecord(id="t2", name="b", role="admin", token_hash="a" * 64, created_at=T0)
    with pytest.raises(StoreError):
        store.add_api_token(same_hash)
    assert [t.id for t in store.list_api_tokens()] == ["t1"]
