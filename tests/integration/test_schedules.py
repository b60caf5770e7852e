"""Delayed runs and schedules on a real database: a run waits for its due time; each tick
of a schedule makes exactly one run, however many engines (and processes) serve it."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from queue_workers import scheduled_tasks
from queue_workers.workers import Worker, query

import taskloom
from support import until
from taskloom import Engine, InputValidationError

pytestmark = pytest.mark.timeout(120)

SCHEDULED = Path(scheduled_tasks.__file__)


@taskloom.task(schedule=taskloom.Interval(seconds=0.25))
async def quick_beat() -> str:
    return "beat"


def _tick(key: str) -> float:
    """The tick a schedule's run key names."""
    stamp = key.rpartition("@")[2]
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _keys(url: str, task: str) -> list[str]:
    rows = query(url, "SELECT idempotency_key FROM runs WHERE task = :task", task=task)
    return [str(key) for (key,) in rows]


async def test_a_delayed_run_waits_pending_and_starts_when_due(database_url: str) -> None:
    async with Engine(database_url, tasks=[scheduled_tasks]) as engine:
        run = await engine.submit("later", {"label": "x"}, delay=1.0)
        assert run.status == "pending"
        assert run.scheduled_at is not None
        assert run.scheduled_at - run.created_at == pytest.approx(1.0, abs=0.05)
        stored = await engine.get_run(run.id)
        assert stored.status == "pending"  # committed, waiting
        done = await engine.wait(run.id, timeout=10)
        assert done.status == "completed"
        assert done.started_at is not None
        late = done.started_at - run.scheduled_at
        assert 0 <= late < 1.0, late


async def test_a_run_at_in_iso_8601_is_due_then(database_url: str) -> None:
    due = datetime.fromtimestamp(time.time() + 0.5, UTC)
    async with Engine(database_url, tasks=[scheduled_tasks]) as engine:
        run = await engine.submit("later", {"label": "y"}, run_at=due.isoformat())
        assert run.scheduled_at == pytest.approx(due.timestamp(), abs=1e-3)
        done = await engine.wait(run.id, timeout=10)
        assert done.started_at is not None
        assert done.started_at >= due.timestamp()


@pytest.mark.parametrize(
    ("options", "field", "words"),
    [
        ({"run_at": "next week"}, "run_at", "not an ISO 8601"),
        ({"delay": -1}, "delay", ">= 0"),
        ({"delay": 5, "run_at": "2030-01-01T00:00:00Z"}, "run_at", "not both"),
    ],
)
async def test_a_bad_due_time_is_refused_and_nothing_recorded(
    database_url: str, options: dict[str, object], field: str, words: str
) -> None:
    async with Engine(database_url, tasks=[scheduled_tasks]) as engine:
        with pytest.raises(InputValidationError) as caught:
            await engine.submit("later", {"label": "z"}, **options)  # type: ignore[arg-type]
        assert caught.value.task == "later"
        assert [e.field for e in caught.value.errors] == [field]
        assert words in str(caught.value)
        assert await engine.list_runs() == []


async def test_two_engines_fire_each_tick_of_a_schedule_once(database_url: str) -> None:
    async with (
        Engine(database_url, tasks=[quick_beat], name="one") as one,
        Engine(database_url, tasks=[quick_beat], name="two"),
    ):

        async def ticks_fired() -> bool:
            return len(await one.list_runs(task="quick_beat", limit=1000)) >= 12

        await until(ticks_fired, timeout=30)
    keys = _keys(database_url, "quick_beat")
    ticks = sorted(_tick(k) for k in keys)
    assert len(ticks) == len(set(ticks))
    assert [round(b - a, 3) for a, b in itertools.pairwise(ticks)] == [0.25] * (len(ticks) - 1)


async def test_a_trigger_starts_one_run_recorded_as_manual(database_url: str) -> None:
    async with Engine(database_url, tasks=[scheduled_tasks]) as engine:
        book = engine.schedules
        book.add("every-hour", "later", cron="0 * * * *", inputs={"label": "manual"})
        key = book.trigger("every-hour")

        async def started() -> bool:
            runs = await engine.list_runs(task="later")
            return any(r.idempotency_key == key and r.is_finished for r in runs)

        await until(started, timeout=10)
        runs = [r for r in await engine.list_runs(task="later") if r.idempotency_key == key]
        assert len(runs) == 1
        assert runs[0].inputs == {"label": "manual"}

        # The request is cleared once its run is recorded, in a write of its own (the
        # run may end first): wait for it, then it stays cleared.
        async def cleared() -> bool:
            return book.get("every-hour").trigger_requested_at is None

        await until(cleared, timeout=10)


class Server:
    """`taskloom serve` of the scheduled tasks on a free port."""

    def __init__(self, url: str) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k != "TASKLOOM_DATABASE_URL"}
        env["NO_COLOR"] = "1"
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "taskloom",
                "serve",
                str(SCHEDULED),
                "--db",
                url,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    async def ready(self) -> None:
        async def healthy() -> bool:
            assert self.process.poll() is None, self.process.communicate()[1]
            try:
                async with httpx.AsyncClient() as client:
                    return (await client.get(f"{self.url}/api/health")).status_code == 200
            except httpx.HTTPError:
                return False

        await until(healthy, timeout=60)

    async def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(self.process.communicate, timeout=30)
        assert not re.search(r"Traceback", err), err
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


async def test_two_workers_and_a_server_fire_a_one_second_schedule_once_a_tick(
    database_url: str,
) -> None:
    # One worker is killed half way: the others go on; no tick is lost or made twice.
    workers = [Worker(database_url, concurrency=4, name=f"w{n}", tasks=SCHEDULED) for n in (1, 2)]
    server = Server(database_url)
    try:
        for worker in workers:
            await worker.ready()
        await server.ready()
        began = time.time()

        def fired_since(moment: float) -> int:
            return sum(1 for key in _keys(database_url, "beat") if _tick(key) > moment)

        async def fired(count: int) -> bool:
            return await asyncio.to_thread(fired_since, began) >= count

        await until(lambda: fired(6), timeout=60)
        workers[0].kill()
        await until(lambda: fired(12), timeout=60)
        assert await workers[1].stop() == 0, workers[1].output()
        assert await server.stop() == 0
    finally:
        for worker in workers:
            worker.kill()
        server.kill()
    ticks = sorted(_tick(k) for k in _keys(database_url, "beat"))
    assert len(ticks) == len(set(ticks))  # one run a tick
    gaps = [b - a for a, b in itertools.pairwise(ticks) if b - a != 1.0]
    assert gaps == []  # no tick missed, from the first fired to the last
    assert sum(1 for tick in ticks if tick > began) >= 12
    # Every run completed, or is still to run, but for the ones the killed worker was
    # executing at that moment (`beat` has no retries): those failed as lost, and said so.
    others = query(
        database_url,
        "SELECT status, error FROM runs WHERE task = 'beat' AND status NOT IN "
        "('completed', 'pending', 'running')",
    )
    assert len(others) <= 4, others  # the killed worker's concurrency
    for status, error in others:
        assert status == "failed", others
        assert json.loads(error)["type"] == "WorkerLostError", others


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("catch_up", "missed_runs"), [("skip", 0), ("one", 1), ("all", 5)], ids=str
)
async def test_after_two_hours_of_downtime_the_catch_up_policy_makes_what_it_promises(
    database_url: str, catch_up: str, missed_runs: int
) -> None:
    # Far in the future, so the engine's own ticker (on the real clock) finds nothing due.
    start = datetime(2031, 3, 1, tzinfo=UTC).timestamp()
    clock = FakeClock(start)
    async with Engine(database_url, tasks=[scheduled_tasks]) as engine:
        from taskloom.schedules.book import ScheduleBook
        from taskloom.schedules.ticker import Ticker

        assert engine.store is not None
        book = ScheduleBook(engine.store, list(engine.registry), clock=clock)
        book.add(
            "minutely", "later", interval=60, inputs={"label": "m"},
            catch_up=catch_up, max_catch_up=5,
        )  # fmt: skip
        ticker = Ticker(engine, clock=clock)
        clock.now = start + 60.5  # the first tick, on time
        await ticker.fire_due()
        clock.now = start + 60 + 2 * 3600 + 5  # nothing ran for two hours
        await ticker.fire_due()
        keys = sorted(_keys(database_url, "later"))
        record = book.get("minutely")
    ticks = [_tick(key) for key in keys]
    last = start + 60 + 2 * 3600  # on time: less than 10 s late
    caught_up = [t for t in ticks if start + 60 < t < last]
    assert ticks[0] == start + 60
    assert ticks[-1] == last
    assert len(caught_up) == missed_runs
    assert caught_up == [last - 60 * k for k in range(missed_runs, 0, -1)]  # the latest
    assert len(ticks) == len(set(ticks)) == missed_runs + 2
    assert record.next_fire_at == last + 60
