"""A PostgreSQL of the test's own (`initdb` + `pg_ctl`) stopped fast and started again
while an engine submits and executes runs on it.

Runs are executing when the database goes away, and a client keeps submitting all along
(coming back after `retry_after` when refused). While it is away a submit is refused with
`StoreUnavailableError`; nothing refused runs later; once it is back, submits are accepted
again and every accepted run completes: none lost, none left `running`, none run twice.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import fault_tasks
import pytest
from fault_processes import Postgres, postgres_cluster
from fault_tasks import read_ledger
from invariants import check_runs
from submitting import ledger_has

from support import until
from taskloom import Engine
from taskloom.exceptions import StoreUnavailableError


class Client:
    """Submits to the engine as a client would: refused, it waits `retry_after` and goes on."""

    def __init__(self, engine: Engine, ledger: str) -> None:
        self.engine = engine
        self.ledger = ledger
        self.accepted: dict[str, str] = {}  # run id -> key
        self.refused: dict[str, StoreUnavailableError] = {}  # key -> why
        self.stopping = asyncio.Event()

    async def submit(self, key: str, task: str = "recorded", seconds: float = 0.0) -> bool:
        inputs = {"key": key, "ledger": self.ledger, "seconds": seconds}
        try:
            async with asyncio.timeout(30):  # never waits for as long as the outage lasts
                run = await self.engine.submit(task, inputs)
        except StoreUnavailableError as exc:
            self.refused[key] = exc
        else:
            self.accepted[run.id] = key
            return True
        refusal = self.refused[key]  # a clear error, and when to come back
        assert refusal.retry_after > 0
        assert "unavailable" in refusal.message, refusal.message
        return False

    async def keep_submitting(self) -> None:
        tasks = ["recorded", "recorded_in_thread", "recorded_once", "refused"]
        number = 0
        while not self.stopping.is_set():
            if not await self.submit(f"stream-{number}", tasks[number % 4], 0.02):
                await asyncio.sleep(self.refused[f"stream-{number}"].retry_after)
            number += 1

    def accepted_since(self, count: int) -> int:
        return len(self.accepted) - count


@pytest.mark.timeout(120)
async def test_a_postgres_restarted_mid_run_loses_no_accepted_run() -> None:
    with postgres_cluster() as postgres, tempfile.TemporaryDirectory() as name:
        ledger = str(Path(name) / "ledger")
        async with Engine(postgres.url, shutdown_grace=2.0) as engine:
            engine.register(fault_tasks)
            client = Client(engine, ledger)
            try:
                await restart_while_running(engine, client, postgres, ledger)
            finally:
                if not postgres.running():  # a failure above: let the engine close
                    await asyncio.to_thread(postgres.start)
        checked = await asyncio.to_thread(check_runs, postgres.url, ledger, client.accepted)
    assert set(checked.runs) == set(client.accepted), "runs no submit was told about"
    ran = {key for _, key, _ in read_ledger(ledger)}
    assert not set(client.refused) & ran, "a refused submit was run later"
    assert {f"down-{index}" for index in range(3)} <= set(client.refused)


async def restart_while_running(
    engine: Engine, client: Client, postgres: Postgres, ledger: str
) -> None:
    """Runs executing and a client submitting while the database stops and starts again."""
    executing = {f"executing-{index}" for index in range(8)}
    for index, key in enumerate(sorted(executing)):
        task = "recorded" if index % 2 else "recorded_in_thread"
        assert await client.submit(key, task, seconds=1.0)
    await ledger_has(ledger, "start", executing)
    stream = asyncio.create_task(client.keep_submitting())

    await asyncio.to_thread(postgres.stop, "fast")
    for index in range(3):
        assert not await client.submit(f"down-{index}"), "accepted while it was down"
    # The executing runs end while it is down: their ends wait to be stored.
    await ledger_has(ledger, "end", executing)
    await asyncio.to_thread(postgres.start)

    # Work continues once it is back.
    back = len(client.accepted)

    async def accepting_again() -> bool:
        return client.accepted_since(back) >= 10

    await until(accepting_again, timeout=30)
    client.stopping.set()
    await stream
    finished = await engine.wait_many(list(client.accepted), timeout=60)
    assert all(run.is_finished for run in finished)
