"""An engine killed with SIGKILL loses no run: the next engine on the database finishes them.

A child process runs an engine over `tasks_for_tests.recovery_tasks`, submits hundreds of
runs and is killed while some execute. A new engine registering the same tasks takes
over: every accepted run ends, runs that were executing get a new attempt when they have
retries left and fail with `WorkerLostError` when they do not. An engine whose process is
alive keeps its runs.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from tasks_for_tests import recovery_tasks

from support import killed_sessions_ended, until
from taskloom import Engine, Run
from taskloom.store import open_store

INTEGRATION = Path(__file__).resolve().parent
CHILD = INTEGRATION / "tasks_for_tests" / "recovery_child.py"

pytestmark = pytest.mark.timeout(60)


class Child:
    """The engine process: its worker id and how many runs it accepted."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.worker_id = ""
        self.accepted = 0

    async def ready(self, timeout: float = 30) -> None:
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                line = (await self.process.stdout.readline()).decode().strip()
                if not line:
                    await self.process.wait()
                    assert self.process.stderr is not None
                    err = (await self.process.stderr.read()).decode()
                    pytest.fail(f"the engine process ended before READY:\n{err}")
                word, _, value = line.partition(" ")
                if word == "WORKER":
                    self.worker_id = value
                elif word == "READY":
                    self.accepted = int(value)
                    return

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()  # SIGKILL: no chance to clean up
        await self.process.wait()


@asynccontextmanager
async def engine_process(url: str, count: int, concurrency: int) -> AsyncIterator[Child]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(INTEGRATION), env.get("PYTHONPATH")) if p)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHILD),
        url,
        str(count),
        str(concurrency),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    child = Child(process)
    try:
        await child.ready()
        yield child
    finally:
        await child.kill()


def snapshot(url: str) -> dict[str, Run]:
    """Every run in the database, read by a store of its own."""
    store = open_store(url)
    try:
        return {run.id: run for run in store.list_runs(limit=10_000)}
    finally:
        store.close()


async def test_runs_of_a_killed_engine_are_finished_by_the_next(database_url: str) -> None:
    async with engine_process(database_url, count=300, concurrency=60) as child:
        await child.kill()
    await killed_sessions_ended(database_url)
    left = await asyncio.to_thread(snapshot, database_url)
    assert len(left) == child.accepted == 300
    was_running = {rid for rid, run in left.items() if run.status == "running"}
    was_pending = {rid for rid, run in left.items() if run.status == "pending"}
    was_done = {rid for rid, run in left.items() if run.is_finished}
    assert was_running, "the child was killed before any run executed"
    assert was_pending, "every run started before the kill: nothing was queued"
    assert was_running | was_pending | was_done == set(left)
    # What it executed it held; what it could not start yet waited unclaimed, or held.
    assert {left[rid].worker_id for rid in was_running} == {child.worker_id}
    assert {left[rid].worker_id for rid in was_pending} <= {child.worker_id, None}
    running_tasks = {left[rid].task for rid in was_running}
    assert set(recovery_tasks.WITH_RETRIES) & running_tasks
    assert "sleepy_without_retry" in running_tasks

    async with Engine(database_url, shutdown_grace=1.0) as engine:
        engine.register(recovery_tasks)

        async def all_finished() -> bool:
            unfinished = await engine.list_runs(status=["pending", "running"], limit=1)
            return not unfinished

        await until(all_finished, timeout=25)
        after = {run.id: run for run in await engine.list_runs(limit=10_000)}
        attempts = {rid: await engine.get_attempts(rid) for rid in was_running}

    assert set(after) == set(left)  # none lost, none made up
    assert all(run.is_finished for run in after.values())
    for rid in was_running:
        run = after[rid]
        first = attempts[rid][0]
        assert first.number == 1
        assert first.status == "failed"
        assert first.error is not None
        assert first.error.type == "WorkerLostError"
        assert first.worker_id == child.worker_id
        if run.task in recovery_tasks.WITH_RETRIES:
            assert run.status == "completed", (run.task, run.error)
            assert run.attempts >= 2
            assert run.result == run.inputs["index"]
            assert attempts[rid][-1].status == "completed"
            assert attempts[rid][-1].worker_id == engine.worker_id
        else:
            assert run.status == "failed", run.task
            assert run.attempts == 1
            assert run.error is not None
            assert run.error.type == "WorkerLostError"
            assert rid in run.error.message
    for rid in was_pending:
        run = after[rid]
        assert run.status == "completed", (run.task, run.error)
        assert run.attempts == 1
        assert run.result == run.inputs["index"]
    for rid in was_done:
        assert after[rid].status == left[rid].status
        assert after[rid].attempts == left[rid].attempts
        assert after[rid].finished_at == pytest.approx(left[rid].finished_at)


async def test_an_engine_that_is_alive_keeps_its_runs(database_url: str) -> None:
    async with engine_process(database_url, count=40, concurrency=8) as child:
        before = await asyncio.to_thread(snapshot, database_url)
        # Alone on the database, the child holds all 40 runs (8 slots: the rest wait in
        # its memory); the runs executing are its own whatever comes.
        assert {run.worker_id for run in before.values()} == {child.worker_id}
        held = {rid for rid, run in before.items() if run.status == "running"}
        waiting = {rid for rid, run in before.items() if run.status == "pending"}
        assert held
        assert waiting
        # Registering the tasks in the constructor makes the new engine reap and claim
        # while it starts, before `start()` returns.
        async with Engine(database_url, tasks=[recovery_tasks], shutdown_grace=1.0) as engine:
            assert engine.store is not None
            assert await asyncio.to_thread(engine.store.is_worker_alive, child.worker_id)

            # Another worker serves the queue now: the child gives back what waits for a
            # slot, and the two share it.
            async def shared() -> bool:
                runs = [await engine.get_run(rid) for rid in waiting]
                return any(run.worker_id == engine.worker_id for run in runs)

            await until(shared, timeout=20)
            runs = {run.id: run for run in await engine.list_runs(limit=1_000)}
            assert len(runs) == 40
            # What the live child holds stays its own, attempts and all.
            for rid in held:
                assert runs[rid].worker_id == child.worker_id
                for attempt in await engine.get_attempts(rid):
                    assert attempt.worker_id == child.worker_id
        assert child.process.returncode is None


async def test_a_task_first_seen_at_submit_takes_over_its_orphaned_runs(
    database_url: str,
) -> None:
    async with engine_process(database_url, count=40, concurrency=8) as child:
        await child.kill()
    await killed_sessions_ended(database_url)
    left = await asyncio.to_thread(snapshot, database_url)
    orphans = {rid for rid, run in left.items() if not run.is_finished}
    mine = {rid for rid in orphans if left[rid].task == "sleepy_with_retry"}
    others = orphans - mine
    assert mine
    assert others

    async with Engine(database_url, shutdown_grace=1.0) as engine:
        # No register(): submitting a run of the task is what makes it known.
        fresh = await engine.run(recovery_tasks.sleepy_with_retry, {"index": -1})
        assert fresh.status == "completed"

        async def mine_finished() -> bool:
            runs = [await engine.get_run(rid) for rid in mine]
            return all(run.is_finished for run in runs)

        await until(mine_finished, timeout=20)
        for rid in mine:
            run = await engine.get_run(rid)
            assert run.status == "completed"
            assert run.worker_id == engine.worker_id
        # Runs of tasks this engine does not know were given back, for an engine that
        # knows them; none was executed here.
        for rid in others:
            run = await engine.get_run(rid)
            assert run.worker_id is None or run.is_finished, run
            assert run.status != "running"
            for attempt in await engine.get_attempts(rid):
                assert attempt.worker_id == child.worker_id
