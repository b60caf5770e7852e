"""Runs a worker claims for calls made on its loop are started by the claim itself: their
attempt is opened in the claim's transaction, and the call begins once that is committed.

A worker engine takes the runs an engine that executes nothing submitted, on a SQLite
file and on PostgreSQL: each run has one attempt, recorded with the executor that made its
call; a run whose stored inputs the worker refuses ends `failed` with its attempt closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import taskloom
from support import until
from taskloom import Engine, RunStatus
from taskloom.store.base import WriteBatch, WriteResult

pytestmark = pytest.mark.timeout(90)


@taskloom.task(name="claims.echo")
async def echo(n: int) -> int:
    await asyncio.sleep(0)
    return n


@taskloom.task(name="claims.double", thread_safe=True)
def double(n: int) -> int:
    return 2 * n


#: What `held` runs wait for (made on the test's loop).
_release: asyncio.Event | None = None


@taskloom.task(name="claims.held")
async def held(n: int) -> int:
    assert _release is not None
    await _release.wait()
    return n


@taskloom.task(name="claims.strict")
async def strict(n: int) -> int:
    return n


@taskloom.task(name="claims.strict")
async def loose(n: str) -> str:  # the submitter's idea of the same task
    return n


async def test_claimed_runs_are_started_by_their_claim(database_url: str) -> None:
    heard: list[tuple[str, str]] = []
    async with Engine(database_url, worker=False, tasks=[echo, double]) as submitter:
        echoes = await submitter.submit_many("claims.echo", [{"n": n} for n in range(60)])
        doubles = await submitter.submit_many("claims.double", [{"n": n} for n in range(20)])
        worker = Engine(database_url, tasks=[echo, double], concurrency=16)
        worker.add_listener(lambda e: heard.append((e.kind, e.run.id)))
        async with worker:
            ended = [await submitter.wait(run.id, timeout=30) for run in [*echoes, *doubles]]
        assert [run.status for run in ended] == [RunStatus.COMPLETED] * 80
        assert [run.result for run in ended] == [*range(60), *(2 * n for n in range(20))]
        for runs, executor in ((echoes, "loop"), (doubles, "thread")):
            for run in runs:
                attempts = await submitter.get_attempts(run.id)
                assert [(a.number, a.status, a.executor) for a in attempts] == [
                    (1, "completed", executor)
                ]
                assert attempts[0].worker_id == worker.worker_id
                kinds = [kind for kind, rid in heard if rid == run.id]
                assert kinds.count("started") == 1, kinds
                assert kinds.index("started") < kinds.index("finished"), kinds


async def test_a_run_started_by_its_claim_with_inputs_refused_ends_failed(
    database_url: str,
) -> None:
    async with Engine(database_url, worker=False, tasks=[loose]) as submitter:
        refused = await submitter.submit("claims.strict", {"n": "not a number"})
        async with Engine(database_url, tasks=[strict]):
            run = await submitter.wait(refused.id, timeout=30)
        assert run.status is RunStatus.FAILED
        assert run.error is not None
        assert run.error.message == (
            "task 'claims.strict': input 'n': expected an integer, got 'not a number'"
        )
        attempts = await submitter.get_attempts(run.id)
        assert [(a.number, a.status) for a in attempts] == [(1, "failed")]
        assert attempts[0].finished_at is not None


async def test_a_closing_worker_leaves_no_run_started_and_unheld(database_url: str) -> None:
    """A worker closed in the middle of a drain, claims going on: every run it started
    is finished or given back pending, none is left `running` with no holder."""
    async with Engine(database_url, worker=False, tasks=[echo]) as submitter:
        await submitter.submit_many("claims.echo", [{"n": n} for n in range(2000)])
        worker = Engine(database_url, tasks=[echo], concurrency=50)
        await worker.start()

        async def some_ended() -> bool:
            return bool(await submitter.list_runs(status=RunStatus.COMPLETED, limit=1))

        await until(some_ended, timeout=30)
        await worker.close()
        left: dict[str, Any] = {}
        for status in (RunStatus.RUNNING, RunStatus.PENDING):
            runs = await submitter.list_runs(status=status, limit=2000)
            left[status.value] = [(r.worker_id, r.attempts) for r in runs]
        assert left["running"] == []
        assert all(worker_id is None for worker_id, _ in left["pending"]), left["pending"][:5]


async def test_the_claim_for_the_slots_ends_free_is_committed_with_those_ends(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slot is free once its run's end is queued to the writer: the claim that fills it
    is sent at once and committed with that end (one commit a round, where waiting for the
    end's commit made an end's commit and then a claim's)."""
    global _release
    _release = asyncio.Event()
    async with Engine(database_url, worker=False, tasks=[held]) as submitter:
        runs = await submitter.submit_many("claims.held", [{"n": n} for n in range(4)])
        worker = Engine(database_url, tasks=[held], concurrency=2)
        async with worker:
            store, writer = worker.store, worker._writer
            assert store is not None
            assert writer is not None
            batches: list[tuple[set[str], list[str] | None]] = []
            write = store.write

            def recording(batch: WriteBatch, **options: Any) -> WriteResult:
                result = write(batch, **options)
                ends = {i for i, f in batch.run_updates.items() if f.get("status") == "completed"}
                claimed = None if batch.claim is None else [r.id for r in result.claimed]
                batches.append((ends, claimed))
                return result

            monkeypatch.setattr(store, "write", recording)

            async def two_running() -> bool:
                return len(await submitter.list_runs(status=RunStatus.RUNNING)) == 2

            await until(two_running)
            first = {r.id for r in await submitter.list_runs(status=RunStatus.RUNNING)}
            # The writer is kept from committing while the two runs end.
            await asyncio.to_thread(writer._write_lock.acquire)
            try:
                _release.set()

                async def claim_sent() -> bool:
                    return worker._claiming == 2

                await until(claim_sent)  # before either end is committed
            finally:
                writer._write_lock.release()
            ended = [await submitter.wait(run.id, timeout=30) for run in runs]
    assert [run.status for run in ended] == [RunStatus.COMPLETED] * 4
    [(ends, claimed)] = [(e, c) for e, c in batches if e & first]
    assert ends == first
    assert claimed is not None
    assert sorted(claimed) == sorted({run.id for run in runs} - first)
