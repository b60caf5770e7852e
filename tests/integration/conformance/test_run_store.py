"""The `RunStore` contract, on every backend: memory, a SQLite file and PostgreSQL.

Runs, their attempts and their log lines, written in batches and read back by id, by page
and by log id; inserts made idempotent by a key.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import TYPE_CHECKING, Any

import pytest

from conformance.records import T0, Point, add_runs, make_run
from taskloom.exceptions import StoreError
from taskloom.runs import Attempt, ErrorInfo, LogLine, Run, RunStatus, new_run_id
from taskloom.store import RunStore, WriteBatch

if TYPE_CHECKING:
    from conftest import Backend


@pytest.fixture
def store(backend: Backend) -> RunStore:
    """The backend's store, as a `RunStore`."""
    return backend.open()


# --- writing and reading ------------------------------------------------------------------


def test_every_field_round_trips(store: RunStore) -> None:
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


def test_defaults_round_trip(store: RunStore) -> None:
    run = make_run(inputs={})
    add_runs(store, run)
    got = store.get_run(run.id)
    assert got == run
    assert got is not None
    assert got.status is RunStatus.PENDING
    assert got.error is None


def test_unknown_run_is_none(store: RunStore) -> None:
    assert store.get_run(new_run_id()) is None
    assert store.get_attempts(new_run_id()) == []
    assert store.get_logs(new_run_id()) == []


def test_values_are_stored_as_json(store: RunStore) -> None:
    when = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    run = make_run(inputs={"pair": (1, 2), "when": when, "point": Point(x=1, y=2)})
    add_runs(store, run)
    got = store.get_run(run.id)
    assert got is not None
    assert got.inputs == {"pair": [1, 2], "when": "2024-05-06T07:08:09Z", "point": {"x": 1, "y": 2}}


def test_value_that_is_not_json_is_a_store_error(store: RunStore) -> None:
    run = make_run(inputs={"thing": object()})
    with pytest.raises(StoreError, match="not JSON"):
        add_runs(store, run)
    assert store.get_run(run.id) is None


def test_empty_batch_is_a_no_op(store: RunStore) -> None:
    (run,) = add_runs(store, make_run())
    store.write(WriteBatch())
    assert store.list_runs() == [run]
    assert store.get_attempts(run.id) == []
    assert store.get_logs(run.id) == []


def test_failing_batch_leaves_nothing(store: RunStore) -> None:
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


def test_failing_attempt_insert_rolls_back_the_runs(store: RunStore) -> None:
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


def test_a_batch_written_again_changes_nothing_more(store: RunStore) -> None:
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


def test_unknown_update_column_is_rejected(store: RunStore) -> None:
    (run,) = add_runs(store, make_run())
    with pytest.raises(ValueError, match="task"):
        store.write(WriteBatch(run_updates={run.id: {"status": "running", "task": "other"}}))
    with pytest.raises(ValueError, match="number"):
        store.write(WriteBatch(attempt_updates={(run.id, 1): {"number": 2}}))
    assert store.get_run(run.id) == run


def test_unknown_status_is_rejected(store: RunStore) -> None:
    (run,) = add_runs(store, make_run())
    with pytest.raises(ValueError, match="bogus"):
        store.write(WriteBatch(run_updates={run.id: {"status": "bogus"}}))
    with pytest.raises(ValueError, match="bogus"):
        add_runs(store, make_run(status="bogus"))
    assert store.list_runs() == [run]


def test_run_updates_with_different_column_sets(store: RunStore) -> None:
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


#: Values a many-row update must store exactly (on PostgreSQL it is one statement over a
#: JSON document): quotes, backslashes, escapes, other scripts, an emoji, control
#: characters, the widest floats and integers.
AWKWARD: list[Any] = [
    'say "hi"',
    "back\\slash \\u0041 \\n",
    "ünïcødé 漢字 🎉",
    "tab\tnew\nline\rreturn \x01\x1f",
    {"nested": ["[1, 2]", "{}", None, True, -0.0, 1e308, 5e-324, 2**62]},
    "x" * 20_000,
]


@pytest.mark.parametrize("fenced", [False, True], ids=["plain", "fenced"])
def test_updates_of_many_runs_store_every_value_exactly(store: RunStore, fenced: bool) -> None:
    held = {"worker_id": "w1", "lease": 3} if fenced else {}
    runs = add_runs(store, *(make_run(created_at=T0 + i, **held) for i in range(len(AWKWARD))))
    ends = {
        run.id: {
            "status": RunStatus.COMPLETED,
            "result": value,
            "error": ErrorInfo("E", str(value)[:100]),
            "finished_at": T0 + 100 + i / 7,
        }
        for i, (run, value) in enumerate(zip(runs, AWKWARD, strict=True))
    }
    for i, run in enumerate(runs):
        store.write(WriteBatch(new_attempts=[Attempt(run.id, 1, T0 + i)]))
    attempt_ends = {
        (run.id, 1): {"status": "completed", "finished_at": T0 + 200 + i / 3}
        for i, run in enumerate(runs)
    }
    fences = {run.id: ("w1", 3) for run in runs} if fenced else {}
    result = store.write(WriteBatch(run_updates=ends, attempt_updates=attempt_ends, fences=fences))
    assert not result.rejected
    for i, (run, value) in enumerate(zip(runs, AWKWARD, strict=True)):
        got = store.get_run(run.id)
        assert got is not None
        assert (got.status, got.result) == (RunStatus.COMPLETED, value)
        assert got.error == ErrorInfo("E", str(value)[:100])
        assert got.finished_at == T0 + 100 + i / 7
        (attempt,) = store.get_attempts(run.id)
        assert (attempt.status, attempt.finished_at) == ("completed", T0 + 200 + i / 3)


def test_an_update_of_many_runs_under_a_stale_fence_is_refused_for_those_runs_alone(
    store: RunStore,
) -> None:
    held = [make_run(created_at=T0 + i, worker_id="w1", lease=1) for i in range(8)]
    runs = add_runs(store, *held)
    fences = {run.id: ("w1", 1 if i % 3 else 2) for i, run in enumerate(runs)}
    ends = {run.id: {"status": RunStatus.COMPLETED, "finished_at": T0 + 9} for run in runs}
    result = store.write(WriteBatch(run_updates=ends, fences=fences))
    stale = {run.id for i, run in enumerate(runs) if i % 3 == 0}
    assert result.rejected == stale
    for run in runs:
        got = store.get_run(run.id)
        assert got is not None
        assert got.status is (RunStatus.PENDING if run.id in stale else RunStatus.COMPLETED)


def test_updates_apply_after_the_new_runs_of_their_batch(store: RunStore) -> None:
    run = make_run()
    store.write(WriteBatch(new_runs=[run], run_updates={run.id: {"status": "running"}}))
    got = store.get_run(run.id)
    assert got is not None
    assert got.status is RunStatus.RUNNING


def test_update_of_an_unknown_run_is_ignored(store: RunStore) -> None:
    (run,) = add_runs(store, make_run())
    unknown = new_run_id()
    store.write(WriteBatch(run_updates={unknown: {"status": "running"}}))
    assert store.get_run(unknown) is None
    assert store.list_runs() == [run]


def test_attempts_and_their_updates(store: RunStore) -> None:
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


def test_an_attempts_executor_and_dashboard_stay_through_its_end(store: RunStore) -> None:
    (run,) = add_runs(store, make_run())
    board = "http://127.0.0.1:8787/status"
    on_dask = Attempt(run.id, 1, T0 + 1, executor="dask tcp://127.0.0.1:8786", dashboard=board)
    in_thread = Attempt(run.id, 2, T0 + 3, executor="serial")
    store.write(WriteBatch(new_attempts=[on_dask]))
    store.write(
        WriteBatch(
            new_attempts=[in_thread],
            attempt_updates={(run.id, 1): {"status": "failed", "finished_at": T0 + 2}},
        )
    )
    assert [(a.status, a.executor, a.dashboard) for a in store.get_attempts(run.id)] == [
        ("failed", "dask tcp://127.0.0.1:8786", board),
        ("running", "serial", None),
    ]


def test_logs_are_paged_by_id(store: RunStore) -> None:
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


def test_inline_writes_are_declared_and_a_write_that_may_not_wait_commits(
    backend: Backend, store: RunStore
) -> None:
    # Only a SQLite file commits quickly enough for the engine to commit on its own thread.
    assert store.inline_writes is (backend.name == "sqlite")
    run = make_run()
    store.write(WriteBatch(new_runs=[run]), wait=False)
    assert store.get_run(run.id) == run


# --- reading by ids and by log id ---------------------------------------------------------


def test_runs_are_read_by_their_ids(store: RunStore) -> None:
    runs = add_runs(store, *(make_run(created_at=T0 + i) for i in range(1200)))
    asked = [runs[0].id, runs[-1].id, new_run_id(), runs[0].id]
    assert sorted(store.get_runs(asked), key=lambda r: r.id) == sorted(
        [runs[0], runs[-1]], key=lambda r: r.id
    )
    # 1,200 ids: more than the SQL store asks for in one query.
    assert {r.id for r in store.get_runs([r.id for r in runs])} == {r.id for r in runs}
    assert store.get_runs([]) == []


def test_finished_among_gives_the_runs_that_have_ended(store: RunStore) -> None:
    runs = add_runs(
        store, *(make_run(status=status, created_at=T0 + i) for i, status in enumerate(RunStatus))
    )
    ended = store.finished_among([r.id for r in runs] + [new_run_id()])
    assert sorted(r.status for r in ended) == ["cancelled", "completed", "failed", "skipped"]
    assert all(r == next(s for s in runs if s.id == r.id) for r in ended)

    pending = next(r for r in runs if r.status is RunStatus.PENDING)
    assert store.finished_among([pending.id]) == []
    store.write(
        WriteBatch(run_updates={pending.id: {"status": "completed", "finished_at": T0 + 9}})
    )
    (done,) = store.finished_among([pending.id])
    assert (done.status, done.finished_at) == (RunStatus.COMPLETED, T0 + 9)
    assert store.finished_among([]) == []


def test_log_lines_of_every_run_are_read_after_an_id(store: RunStore) -> None:
    assert store.last_log_id() == 0
    assert store.logs_after(0) == []
    one, two = add_runs(store, make_run(), make_run())
    store.write(
        WriteBatch(
            logs=[LogLine(one.id, 1, T0, "INFO", "a"), LogLine(two.id, 1, T0 + 1, "INFO", "b")]
        )
    )
    store.write(WriteBatch(logs=[LogLine(one.id, 2, T0 + 2, "WARNING", "c")]))

    lines = store.logs_after(0)
    assert [(g.run_id, g.attempt, g.level, g.message) for g in lines] == [
        (one.id, 1, "INFO", "a"),
        (two.id, 1, "INFO", "b"),
        (one.id, 2, "WARNING", "c"),
    ]
    assert lines[2].created_at == T0 + 2
    ids = [g.id or 0 for g in lines]
    assert ids == sorted(ids)
    assert len(set(ids)) == 3
    assert store.last_log_id() == ids[-1]
    assert [g.message for g in store.logs_after(ids[0])] == ["b", "c"]
    assert [g.message for g in store.logs_after(ids[0], limit=1)] == ["b"]
    assert store.logs_after(ids[-1]) == []


# --- listing ------------------------------------------------------------------------------


def test_listing_is_newest_first_with_ties_broken_by_id(store: RunStore) -> None:
    runs = add_runs(store, *(make_run(created_at=T0 + i % 3) for i in range(9)))
    expected = sorted(runs, key=lambda r: (r.created_at, r.id), reverse=True)
    assert [r.id for r in store.list_runs()] == [r.id for r in expected]


def test_listing_filters(store: RunStore) -> None:
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


def test_cursor_pagination_visits_every_run_once(store: RunStore) -> None:
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


def test_cursor_pagination_with_filters(store: RunStore) -> None:
    runs = add_runs(
        store, *(make_run(task="a" if i % 2 else "b", created_at=T0 + i) for i in range(10))
    )
    first = store.list_runs(task="a", limit=3)
    rest = store.list_runs(task="a", limit=3, before=first[-1].id)
    assert [r.id for r in first + rest] == [runs[i].id for i in (9, 7, 5, 3, 1)]


def test_listing_limits(store: RunStore) -> None:
    add_runs(store, *(make_run(created_at=T0 + i) for i in range(3)))
    assert len(store.list_runs(limit=2)) == 2
    assert len(store.list_runs(limit=1_000_000)) == 3  # capped, not an error
    assert store.list_runs(limit=0) == []
    assert store.list_runs(before=new_run_id()) == []  # an unknown cursor: an empty page


# --- idempotency --------------------------------------------------------------------------


def test_same_idempotency_key_twice_keeps_one_run(store: RunStore) -> None:
    first = make_run(idempotency_key="charge-1", inputs={"amount": 1})
    second = make_run(idempotency_key="charge-1", inputs={"amount": 2})
    assert store.insert_run_idempotent(first) == first
    kept = store.insert_run_idempotent(second)
    assert kept == first
    assert [r.id for r in store.list_runs()] == [first.id]
    assert store.get_run(second.id) is None


def test_idempotent_insert_without_a_key_inserts(store: RunStore) -> None:
    run = make_run()
    assert store.insert_run_idempotent(run) == run
    assert store.get_run(run.id) == run


def test_idempotency_key_is_unique_in_batches_too(store: RunStore) -> None:
    store.insert_run_idempotent(make_run(idempotency_key="k"))
    with pytest.raises(StoreError):
        add_runs(store, make_run(idempotency_key="k"))


def test_concurrent_idempotent_inserts_keep_one_run(backend: Backend) -> None:
    stores: list[RunStore] = [backend.open(), backend.open()]
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


def test_runs_keyed_are_those_whose_key_starts_with_the_prefix_greatest_first(
    store: RunStore,
) -> None:
    keys = [
        "schedule:hourly@2027-01-01T01:00:00Z",
        "schedule:hourly@2027-01-01T03:00:00Z",
        "schedule:hourly@2027-01-01T02:00:00Z",
        "schedule:hourly@manual:2027-01-01T02:30:00Z",
        "schedule:hourly-2@2027-01-01T04:00:00Z",  # another schedule, a longer name
        "schedule:hourl@2027-01-01T05:00:00Z",
        "hook:ship@1",
    ]
    add_runs(store, *(make_run(idempotency_key=key) for key in keys), make_run())
    found = [r.idempotency_key for r in store.runs_keyed("schedule:hourly@")]
    assert found == [
        "schedule:hourly@manual:2027-01-01T02:30:00Z",
        "schedule:hourly@2027-01-01T03:00:00Z",
        "schedule:hourly@2027-01-01T02:00:00Z",
        "schedule:hourly@2027-01-01T01:00:00Z",
    ]
    assert len(store.runs_keyed("schedule:hourly@", limit=2)) == 2
    assert [r.idempotency_key for r in store.runs_keyed("hook:")] == ["hook:ship@1"]
    assert store.runs_keyed("nothing:") == []
