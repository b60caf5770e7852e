"""`executor="dask"`: the calls made on a Dask cluster of real processes.

A `dask scheduler` and `dask worker` processes started here; the engine records every
run as for any other. A Dask worker killed with SIGKILL loses only attempts, which are
retried; a timeout or a cancel ends the run at once and cancels its future; what a call
logs reaches the run's records while it runs; a scheduler that is away is a clear error
at start and, lost later, fails the held attempts as retryable.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from dask_support import DaskCluster, running_cluster
from support import load_helper, until
from taskloom import Engine, RunStatus, Workflow, task
from taskloom.exceptions import ExecutorUnavailableError, TaskDefinitionError

pytestmark = pytest.mark.timeout(240)

dask_tasks = load_helper("dask_tasks")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[DaskCluster]:
    """A scheduler and two workers of four threads each."""
    with running_cluster(tmp_path) as cluster:
        yield cluster


def engine_on(tmp_path: Path, address: str) -> Engine:
    return Engine(f"sqlite:///{tmp_path / 'runs.db'}", tasks=[dask_tasks], dask=address)


async def test_a_thousand_runs_complete_on_two_dask_workers_while_one_is_killed(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    async with engine_on(tmp_path, cluster.address) as engine:
        runs = await engine.submit_many("tick", [{"index": i} for i in range(1000)])

        async def half_done() -> bool:
            done = await engine.list_runs(status="completed", limit=1000)
            return len(done) >= 500

        await until(half_done, timeout=120)
        killed = cluster.workers[0]
        os.kill(killed.pid, signal.SIGKILL)
        ended = [await engine.wait(run.id, timeout=120) for run in runs]
        attempts = {run.id: await engine.get_attempts(run.id) for run in runs}

    assert Counter(run.status for run in ended) == {RunStatus.COMPLETED: 1000}
    assert [run.result["index"] for run in ended] == list(range(1000))
    # Every call was made in a Dask worker process, on both of them.
    pids = Counter(run.result["pid"] for run in ended)
    assert set(pids) <= {w.pid for w in cluster.workers}
    assert set(pids) == {w.pid for w in cluster.workers}
    assert os.getpid() not in pids
    # Recorded once each: one completed attempt per run.
    for tries in attempts.values():
        assert [a.status for a in tries].count("completed") == 1
        assert tries[-1].status == "completed"
    # The calls the killed worker held failed as lost, and were retried on the other.
    lost = {rid: tries for rid, tries in attempts.items() if len(tries) > 1}
    assert lost, "the killed worker held no call"
    for tries in lost.values():
        assert all(a.status == "failed" for a in tries[:-1])
        assert tries[0].error is not None
        assert tries[0].error.type == "WorkerLostError"
        assert tries[0].error.retryable
    survivor = cluster.workers[1].pid
    assert {run.result["pid"] for run in ended if run.id in lost} == {survivor}


async def test_a_map_of_five_hundred_items_runs_on_both_workers_in_item_order(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    async with engine_on(tmp_path, cluster.address) as engine:
        wf = Workflow("squares")
        wf.map(dask_tasks.square, x=list(range(500)), name="items", concurrency=64)
        done = await engine.wait((await engine.submit(wf)).id, timeout=120)

        failing = Workflow("some-negative")
        failing.map(dask_tasks.square, x=[1, -2, 3, -4], name="items", on_failure="continue")
        partial = await engine.wait((await engine.submit(failing)).id, timeout=60)

        strict = Workflow("strict")
        strict.map(dask_tasks.square, x=[1, -2, 3], name="items")
        refused = await engine.wait((await engine.submit(strict)).id, timeout=60)

    assert done.status == "completed", done.error
    items = done.result["outputs"]["items"]
    assert [item["square"] for item in items] == [x * x for x in range(500)]
    assert {item["pid"] for item in items} == {w.pid for w in cluster.workers}

    assert partial.status == "completed"
    assert [f["index"] for f in partial.result["failures"]["items"]] == [1, 3]
    assert "x must not be negative, got -2" in partial.result["failures"]["items"][0]["error"]
    assert [item["square"] for item in partial.result["outputs"]["items"]] == [1, 9]

    assert refused.status == "failed"
    assert refused.error is not None
    assert "1 of 3 items failed" in refused.error.message


async def scheduler_tasks(address: str) -> int:
    """How many keys the scheduler holds (a client of the test's own)."""
    from distributed import Client

    async with Client(address, asynchronous=True) as client:  # type: ignore[no-untyped-call]

        def count(dask_scheduler: object) -> int:
            return len(dask_scheduler.tasks)  # type: ignore[attr-defined]

        return int(await client.run_on_scheduler(count))


async def test_a_timeout_and_a_cancel_end_the_run_at_once_and_cancel_the_future(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    async with engine_on(tmp_path, cluster.address) as engine:
        started = time.monotonic()
        timed = await engine.wait((await engine.submit("sleepy", {"seconds": 30})).id, timeout=30)
        took = time.monotonic() - started
        assert timed.status == RunStatus.FAILED
        assert timed.error is not None
        assert timed.error.type == "TaskTimeoutError"
        assert took < 10, took  # not the 30 s the call sleeps

        waiting = await engine.submit("wait_for", {"path": str(release)})

        async def running() -> bool:
            return (await engine.get_run(waiting.id)).status == RunStatus.RUNNING

        await until(running, timeout=60)
        cancelled = await engine.cancel(waiting.id)
        ended = await engine.wait(cancelled.id, timeout=10)
        assert ended.status == RunStatus.CANCELLED

        # Both futures are let go by the scheduler (their calls cannot be stopped in the
        # worker's thread, but nothing holds their keys).
        async def forgotten() -> bool:
            return await scheduler_tasks(cluster.address) == 0

        await until(forgotten, timeout=60)
        release.touch()


async def test_lines_and_progress_reach_the_run_while_it_runs(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    async with engine_on(tmp_path, cluster.address) as engine:
        run = await engine.submit("chatty", {"release": str(release)})

        async def reported() -> bool:
            lines = await engine.get_logs(run.id)
            now = await engine.get_run(run.id)
            return len(lines) >= 2 and now.progress == 0.5

        await until(reported, timeout=60)
        during = await engine.get_run(run.id)
        assert during.status == RunStatus.RUNNING
        assert during.progress_message == "half way"
        lines = await engine.get_logs(run.id)
        worker_pids = {w.pid for w in cluster.workers}
        assert any(
            line.message in {f"started on process {pid}" for pid in worker_pids} for line in lines
        ), lines
        assert any(line.message == "a line through the logging module" for line in lines)
        assert {line.level for line in lines} >= {"INFO", "WARNING"}
        release.touch()
        done = await engine.wait(run.id, timeout=60)
        assert done.status == RunStatus.COMPLETED
        assert done.result == "released"


async def test_an_unreachable_scheduler_stops_the_start_with_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import taskloom.executors.dask as dask_executor

    monkeypatch.setattr(dask_executor, "CONNECT_TIMEOUT", 2.0)
    nobody = DaskCluster(tmp_path)  # a free port, and no scheduler on it
    engine = Engine(f"sqlite:///{tmp_path / 'runs.db'}", tasks=[dask_tasks], dask=nobody.address)
    started = time.monotonic()
    with pytest.raises(ExecutorUnavailableError, match="cannot reach the Dask scheduler at"):
        await engine.start()
    assert time.monotonic() - started < 30
    assert not (tmp_path / "runs.db").exists()  # stopped before anything was made


async def test_a_lost_scheduler_fails_the_held_attempts_as_retryable_and_they_run_again(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    async with engine_on(tmp_path, cluster.address) as engine:
        runs = await engine.submit_many("tick", [{"index": i, "pause": 0.5} for i in range(8)])

        async def running() -> bool:
            held = await engine.list_runs(status="running", limit=100)
            return len(held) >= 4

        await until(running, timeout=60)
        cluster.kill_scheduler()
        for worker in cluster.workers:
            worker.kill()
            worker.wait(10)
        # The scheduler back on its address, with a new worker.
        cluster.workers.clear()
        cluster.start_scheduler()
        cluster.start_worker()
        ended = [await engine.wait(run.id, timeout=120) for run in runs]
        attempts = [await engine.get_attempts(run.id) for run in runs]
    release.touch()
    assert Counter(run.status for run in ended) == {RunStatus.COMPLETED: 8}
    retried = [tries for tries in attempts if len(tries) > 1]
    assert retried
    for tries in retried:
        assert tries[0].status == "failed"
        assert tries[0].error is not None
        assert tries[0].error.type == "WorkerLostError"
        assert tries[0].error.retryable


async def test_a_task_that_cannot_be_sent_fails_at_submit_naming_it(tmp_path: Path) -> None:
    lock = threading.Lock()

    @task(executor="dask", name="holds_a_lock")
    def holds_a_lock() -> bool:
        return lock.locked()

    async with Engine(f"sqlite:///{tmp_path / 'runs.db'}", tasks=[holds_a_lock]) as engine:
        with pytest.raises(TaskDefinitionError, match="task 'holds_a_lock': its function cannot"):
            await engine.submit("holds_a_lock")
        assert await engine.list_runs(limit=10) == []


def test_an_unknown_executor_fails_at_definition_naming_the_task() -> None:
    with pytest.raises(TaskDefinitionError, match="task 'odd': option 'executor' must be one"):

        @task(executor="gpu-farm", name="odd")
        def odd() -> None: ...

    with pytest.raises(TaskDefinitionError, match="task 'slow': executor 'loop' is for async"):

        @task(executor="loop", name="slow")
        def slow() -> None: ...


async def test_without_a_scheduler_the_calls_are_made_in_this_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with Engine(f"sqlite:///{tmp_path / 'runs.db'}", tasks=[dask_tasks]) as engine:
        done = await engine.wait((await engine.submit("tick", {"index": 1})).id, timeout=10)
    assert done.status == RunStatus.COMPLETED
    assert done.result == {"index": 1, "pid": os.getpid()}
    assert "asks for executor 'dask', which this engine was not given" in caplog.text


def test_a_cluster_object_made_outside_the_engine_is_reached_through_its_scheduler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster made the plain way (a `LocalCluster` or a `dask_jobqueue` cluster, with
    its own thread's event loop) serves an engine running in another loop."""
    import dask
    from distributed import LocalCluster

    from support import HELPERS

    monkeypatch.syspath_prepend(str(HELPERS))  # the workers it spawns import dask_tasks
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=1, threads_per_worker=2, dashboard_address=":0"
        )
    try:

        async def use() -> list[dict[str, int]]:
            async with Engine(
                f"sqlite:///{tmp_path / 'runs.db'}", tasks=[dask_tasks], dask=cluster
            ) as engine:
                assert engine.dask is not None
                assert engine.dask.where == cluster.scheduler_address
                runs = await engine.submit_many("tick", [{"index": i} for i in range(20)])
                ended = [await engine.wait(run.id, timeout=60) for run in runs]
            assert {run.status for run in ended} == {RunStatus.COMPLETED}
            return [run.result for run in ended]

        import asyncio

        results = asyncio.run(use())
    finally:
        cluster.close()
    assert [r["index"] for r in results] == list(range(20))
    assert os.getpid() not in {r["pid"] for r in results}
