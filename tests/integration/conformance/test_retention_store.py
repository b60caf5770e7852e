"""The `RetentionStore` contract, on every backend: memory, a SQLite file and PostgreSQL.

Old finished runs go in batches with their attempts and log lines; pending and running
runs, recent runs, and every run of a family (a workflow and its steps, a run and the
children it started) that still holds such a run stay.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import pytest

from conformance.records import T0, make_run
from taskloom.observability.retention import PruneReport, RetentionPolicy, prune
from taskloom.runs import Attempt, LogLine, Run, RunStatus
from taskloom.store import PruneBatch, Store, WriteBatch

if TYPE_CHECKING:
    from conftest import Backend

DAY = 86400.0
#: "Now" for every prune here: runs that finished at T0 are 100 days old.
NOW = T0 + 100 * DAY
MONTH = RetentionPolicy(older_than=30 * DAY)


def finished(status: RunStatus = RunStatus.COMPLETED, *, at: float = T0, **fields: Any) -> Run:
    return make_run(status=status, created_at=at - 1, started_at=at - 1, finished_at=at, **fields)


def write(store: Store, *runs: Run, lines: int = 0) -> None:
    """Insert runs, each finished one with an attempt, and `lines` log lines each."""
    store.write(
        WriteBatch(
            new_runs=list(runs),
            new_attempts=[
                Attempt(r.id, 1, r.created_at, r.finished_at, "completed")
                for r in runs
                if r.finished_at is not None
            ],
            logs=[
                LogLine(r.id, 1, r.created_at, "INFO", f"line {n}")
                for r in runs
                for n in range(lines)
            ],
        )
    )


def ids(store: Store) -> set[str]:
    return {r.id for r in store.list_runs(limit=10_000)}


def run_prune(store: Store, policy: RetentionPolicy = MONTH, **options: Any) -> PruneReport:
    return prune(store, policy, now=NOW, **options)


def test_old_finished_runs_go_with_their_attempts_and_log_lines(backend: Backend) -> None:
    store = backend.open()
    old = [finished(s) for s in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)]
    recent = finished(at=NOW - DAY)
    pending = make_run(created_at=T0)  # old, but waiting
    running = make_run(status=RunStatus.RUNNING, created_at=T0, started_at=T0)
    write(store, *old, recent, pending, running, lines=3)

    report = run_prune(store)

    assert (report.runs, report.attempts, report.log_lines) == (3, 3, 9)
    assert report.by_status == {"completed": 1, "failed": 1, "cancelled": 1}
    assert ids(store) == {recent.id, pending.id, running.id}
    for run in old:
        assert store.get_run(run.id) is None
        assert store.get_attempts(run.id) == []
        assert store.get_logs(run.id) == []
    assert len(store.get_logs(recent.id)) == 3
    assert [a.number for a in store.get_attempts(recent.id)] == [1]
    assert store.database_stats().runs_by_status == {
        "completed": 1,
        "pending": 1,
        "running": 1,
    }


def test_a_workflow_goes_with_all_its_steps_or_not_at_all(backend: Backend) -> None:
    store = backend.open()
    done = finished(task="workflow:done")
    done_steps = [
        finished(RunStatus.COMPLETED, parent_id=done.id),
        finished(RunStatus.SKIPPED, parent_id=done.id),
    ]
    waiting = finished(RunStatus.CANCELLED, task="workflow:waiting")
    # The workflow was cancelled, but one of its steps still runs.
    waiting_steps = [
        finished(parent_id=waiting.id),
        make_run(status=RunStatus.RUNNING, created_at=T0, parent_id=waiting.id),
    ]
    write(store, done, *done_steps, waiting, *waiting_steps, lines=1)

    report = run_prune(store)

    assert report.runs == 3
    assert report.kept == 1
    assert ids(store) == {waiting.id, *(s.id for s in waiting_steps)}
    assert [line.message for line in store.get_logs(waiting_steps[0].id)] == ["line 0"]


def test_a_family_with_one_unfinished_or_recent_member_stays_whole(backend: Backend) -> None:
    store = backend.open()
    # A workflow, one of whose steps is a Fractal parallel task with child runs.
    unfinished = finished(task="workflow:a")
    step = finished(parent_id=unfinished.id)
    children = [finished(parent_id=step.id), make_run(created_at=T0, parent_id=step.id)]
    recent = finished(task="workflow:b")
    recent_step = finished(parent_id=recent.id)
    late_child = finished(parent_id=recent_step.id, at=NOW - DAY)  # finished yesterday
    gone = finished(task="workflow:c")
    gone_step = finished(parent_id=gone.id)
    gone_child = finished(RunStatus.FAILED, parent_id=gone_step.id)
    write(store, unfinished, step, *children, recent, recent_step, late_child)
    write(store, gone, gone_step, gone_child)

    report = run_prune(store)

    assert (report.runs, report.kept) == (3, 2)
    assert ids(store) == {
        unfinished.id,
        step.id,
        *(c.id for c in children),
        recent.id,
        recent_step.id,
        late_child.id,
    }


def test_the_status_chosen_is_the_status_of_the_family_s_first_run(backend: Backend) -> None:
    store = backend.open()
    failed = finished(RunStatus.FAILED, task="workflow:f")
    failed_steps = [finished(parent_id=failed.id), finished(RunStatus.FAILED, parent_id=failed.id)]
    completed = finished(task="workflow:c")
    failed_step = finished(RunStatus.FAILED, parent_id=completed.id)
    write(store, failed, *failed_steps, completed, failed_step)

    report = run_prune(store, RetentionPolicy(older_than=30 * DAY, statuses=("failed",)))

    assert report.runs == 3
    assert report.by_status == {"failed": 3}
    # A failed step of a completed workflow is not removed without its workflow.
    assert ids(store) == {completed.id, failed_step.id}


def test_a_run_whose_parent_is_gone_heads_its_own_family(backend: Backend) -> None:
    store = backend.open()
    orphan = finished(parent_id="0190aaaa-0000-7000-8000-000000000000")
    child = finished(parent_id=orphan.id)
    write(store, orphan, child)

    assert run_prune(store).runs == 2
    assert ids(store) == set()


def test_a_prune_is_made_of_batches_each_committed_on_its_own(backend: Backend) -> None:
    store = backend.open()
    other = backend.open()  # another connection: it sees only what is committed
    write(store, *(finished(at=T0 + i) for i in range(25)), lines=2)
    seen: list[tuple[int, int]] = []

    def after_batch(status: str, batch: PruneBatch) -> None:
        seen.append((batch.runs, len(ids(other))))

    report = run_prune(
        store, RetentionPolicy(older_than=30 * DAY, batch_size=10), on_batch=after_batch
    )

    assert report.batches == 3
    assert (report.runs, report.attempts, report.log_lines) == (25, 25, 50)
    # The three batches of `completed`, then one look at each other status.
    assert seen == [(10, 15), (10, 5), (5, 0), (0, 0), (0, 0), (0, 0)]


def test_a_family_larger_than_a_batch_goes_whole_in_one(backend: Backend) -> None:
    store = backend.open()
    lone = finished(at=T0 - 10)
    workflow = finished(task="workflow:big")
    steps = [finished(parent_id=workflow.id) for _ in range(12)]
    after = finished(at=T0 + 10)
    write(store, lone, workflow, *steps, after)
    sizes: list[int] = []

    report = run_prune(
        store,
        RetentionPolicy(older_than=30 * DAY, batch_size=5),
        on_batch=lambda _status, batch: sizes.append(batch.runs),
    )

    assert report.runs == 15
    # The lone run, then the workflow with its 12 steps alone, then the last run.
    assert sizes[:3] == [1, 13, 1]
    assert ids(store) == set()


def test_a_dry_run_removes_nothing_and_says_what_a_prune_would(backend: Backend) -> None:
    store = backend.open()
    workflow = finished(task="workflow:w")
    write(store, workflow, finished(parent_id=workflow.id), finished(RunStatus.FAILED), lines=2)
    write(store, make_run(created_at=T0), finished(at=NOW))
    before = ids(store)

    would = run_prune(store, RetentionPolicy(older_than=30 * DAY, batch_size=2), dry_run=True)

    assert ids(store) == before
    assert (would.dry_run, would.runs, would.attempts, would.log_lines) == (True, 3, 3, 6)
    did = run_prune(store, RetentionPolicy(older_than=30 * DAY, batch_size=2))
    assert (did.runs, did.attempts, did.log_lines, did.batches) == (3, 3, 6, would.batches)
    assert len(ids(store)) == 2


def test_two_prunes_at_once_remove_each_run_once(backend: Backend) -> None:
    write(backend.open(), *(finished(at=T0 + i) for i in range(300)), lines=1)
    stores = [backend.open(), backend.open()]
    reports: list[PruneReport] = []
    start = threading.Barrier(2)

    def one(store: Store) -> None:
        start.wait(timeout=10)
        reports.append(run_prune(store, RetentionPolicy(older_than=30 * DAY, batch_size=20)))

    threads = [threading.Thread(target=one, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(reports) == 2
    assert sum(r.runs for r in reports) == 300
    assert sum(r.log_lines for r in reports) == 300
    assert ids(stores[0]) == set()


def test_database_stats_count_rows_and_say_the_oldest_runs(backend: Backend) -> None:
    store = backend.open()
    assert store.database_stats().oldest_run_at is None
    write(store, make_run(created_at=T0 - 50), finished(at=T0), finished(at=T0 + 5), lines=2)

    stats = store.database_stats()

    rows = {t.name: t.rows for t in stats.tables}
    assert (rows["runs"], rows["attempts"], rows["log_lines"]) == (3, 2, 6)
    assert stats.runs_by_status == {"pending": 1, "completed": 2}
    assert stats.oldest_run_at == T0 - 50
    assert stats.oldest_finished_at == T0
    if backend.shared:
        assert (stats.size_bytes or 0) > 0
        sizes = {t.name: t.bytes for t in stats.tables}
        assert (sizes["runs"] or 0) > 0
        assert "alembic_version" in rows


@pytest.mark.parametrize("status", ["pending", "running"])
def test_the_store_never_removes_an_unfinished_run_even_when_asked(
    backend: Backend, status: str
) -> None:
    store = backend.open()
    run = make_run(status=status, created_at=T0)
    write(store, run)
    # Even with a finished time (as no engine writes one), the status keeps it.
    store.write(WriteBatch(run_updates={run.id: {"finished_at": T0}}))

    with pytest.raises(ValueError, match=f"{status} runs are never pruned"):
        store.prune_runs(status=status, finished_before=NOW)
    with pytest.raises(ValueError, match=f"{status} runs are never pruned"):
        store.prune_runs(status=status, finished_before=NOW, dry_run=True)
    assert ids(store) == {run.id}
