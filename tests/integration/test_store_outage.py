"""The database goes away while runs execute, and comes back: nothing accepted is lost.

The test's own PostgreSQL database stops taking connections (`ALLOW_CONNECTIONS false`)
and every session on it is ended, as when the server restarts. Runs that end meanwhile
wait in the writer, which tries again with backoff; submits are refused at once with
`StoreUnavailableError` (the HTTP API answers 503 with Retry-After); when the database
takes connections again every accepted run is committed as it ended, with its attempt.
"""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from sqlalchemy.engine import make_url

import taskloom
from support import until
from taskloom import Engine, RunStatus, StoreUnavailableError
from taskloom.store import SqlStore

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(90)]

release = asyncio.Event()


@taskloom.task
async def held(n: int) -> int:
    await release.wait()
    return n


@taskloom.task
async def quick(n: int) -> int:
    return n


def _admin(url: str) -> tuple[str, str]:
    parsed = make_url(url)
    admin = parsed.set(drivername="postgresql", database="postgres")
    return admin.render_as_string(hide_password=False), str(parsed.database)


def _cut(url: str, *, allow: bool) -> None:
    admin, name = _admin(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allow).lower()}')
        if not allow:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )


async def _first_refusal(engine: Engine) -> StoreUnavailableError:
    """Submit until one is refused: the writer learns of the outage on its next write."""
    for i in range(1_000):
        try:
            await engine.submit(quick, {"n": 100 + i})
        except StoreUnavailableError as exc:
            return exc
    pytest.fail("1,000 submits were accepted while the database was away")


async def test_runs_that_end_while_the_database_is_away_are_committed_when_it_is_back(
    postgres_database: str,
) -> None:
    global release
    release = asyncio.Event()  # of this test's event loop
    # Heartbeats come often, so some fall in the outage: the worker's lock (a session
    # advisory lock) ends with its session and must be taken again once it is back.
    async with Engine(postgres_database, heartbeat_interval=0.05) as engine:
        engine.register(held)
        engine.register(quick)
        before = [await engine.submit(quick, {"n": i}) for i in range(20)]
        await engine.wait_many([r.id for r in before], timeout=20)
        running = [await engine.submit(held, {"n": i}) for i in range(30)]

        async def all_running() -> bool:
            runs = [await engine.get_run(r.id) for r in running]
            return all(r.status == RunStatus.RUNNING for r in runs)

        await until(all_running)
        await engine.flush()  # their starts are committed

        await asyncio.to_thread(_cut, postgres_database, allow=False)
        try:
            release.set()  # the held runs end now; their ends cannot be committed
            waits = asyncio.ensure_future(engine.wait_many([r.id for r in running]))
            refused = await _first_refusal(engine)
            assert refused.retry_after >= 1
            assert str(refused).startswith(
                "task 'quick': the run was not accepted: the store is unavailable"
            )
            # A refusal comes at once while the database is away, and the ends wait.
            with pytest.raises(StoreUnavailableError):
                await asyncio.wait_for(engine.submit(quick, {"n": -1}), 1)
            assert not waits.done()
            # Keep the database away for some heartbeats (each one fails to retake the
            # worker's lock), then let it come back.
            await asyncio.sleep(0.5)
            assert not waits.done()
        finally:
            await asyncio.to_thread(_cut, postgres_database, allow=True)

        ended = await asyncio.wait_for(waits, 30)
        assert [(r.status, r.result) for r in ended] == [
            (RunStatus.COMPLETED, i) for i in range(len(running))
        ]
        observer = SqlStore(postgres_database)
        observer.open()
        try:

            async def alive_again() -> bool:
                return await asyncio.to_thread(observer.is_worker_alive, engine.worker_id)

            await until(alive_again)  # another process would not take its runs over
        finally:
            observer.close()
        after = await engine.submit(quick, {"n": 7})  # accepted again
        assert (await engine.wait(after.id, timeout=20)).result == 7
        accepted = {r.id for r in await engine.list_runs(task="quick", limit=10_000)}

    # What the store holds, read by another engine: every accepted run, each completed once.
    async with Engine(postgres_database) as engine:
        for run in running:
            stored = await engine.get_run(run.id)
            assert stored.status == RunStatus.COMPLETED
            attempts = await engine.get_attempts(run.id)
            assert [(a.number, a.status) for a in attempts] == [(1, "completed")]
        quick_runs = await engine.list_runs(task="quick", limit=10_000)
        assert {r.id for r in quick_runs} == accepted
        assert all(r.status == RunStatus.COMPLETED for r in quick_runs)


@taskloom.task(retries=1)
async def held_twice(n: int) -> int:
    await release.wait()
    return n


async def test_an_engine_closed_while_the_database_is_away_leaves_its_runs_to_the_next(
    postgres_database: str,
) -> None:
    global release
    release = asyncio.Event()  # of this test's event loop
    engine = Engine(postgres_database, heartbeat_interval=0.05, shutdown_grace=0.5)
    async with engine:
        engine.register(held_twice)
        running = [await engine.submit(held_twice, {"n": i}) for i in range(10)]

        async def all_running() -> bool:
            runs = [await engine.get_run(r.id) for r in running]
            return all(r.status == RunStatus.RUNNING for r in runs)

        await until(all_running)
        await engine.flush()
        await asyncio.to_thread(_cut, postgres_database, allow=False)
        release.set()  # they end now; the ends cannot be committed
        began = asyncio.get_running_loop().time()
    # The close gave up on the unreachable store after its bound, instead of hanging.
    closed_after = asyncio.get_running_loop().time() - began
    assert closed_after < 30, f"closing took {closed_after:.1f} s"
    await asyncio.to_thread(_cut, postgres_database, allow=True)

    # The next engine takes the runs over from what the store holds: each started once
    # and was lost, so each runs again (its retry) and completes; none is left running.
    async with Engine(postgres_database) as successor:
        successor.register(held_twice)
        ended = await successor.wait_many([r.id for r in running], timeout=30)
        assert [(r.status, r.result, r.attempts) for r in ended] == [
            (RunStatus.COMPLETED, i, 2) for i in range(len(running))
        ]
