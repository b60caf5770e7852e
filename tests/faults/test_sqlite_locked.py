"""`taskloom serve` on a SQLite file that another process locks for 10 s.

A second process holds `BEGIN EXCLUSIVE` while runs are executing and submits keep coming
over HTTP. A submit waits for the lock within its bound and is accepted, or is refused
with 503, a `Retry-After` and a clear error; nothing refused is run later. Every accepted
run completes once the lock is released, none is left `running`, none runs twice.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from fault_processes import Lines, Server
from invariants import check_runs
from submitting import Submitter, ledger_has, wait_until_done

TASKS = Path(__file__).with_name("fault_tasks.py")
LOCK_SECONDS = 10.0

LOCKER = """
import sqlite3, sys, time

connection = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
connection.execute("BEGIN EXCLUSIVE")
print("LOCKED", flush=True)
time.sleep(float(sys.argv[2]))  # the length of the fault
connection.execute("COMMIT")
print("RELEASED", flush=True)
"""


def start_locker(database: Path) -> subprocess.Popen[str]:
    """A process holding `BEGIN EXCLUSIVE` on `database` for LOCK_SECONDS."""
    return subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(database), str(LOCK_SECONDS)],
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.mark.timeout(90)
async def test_a_database_locked_for_10_s_delays_or_refuses_and_loses_nothing() -> None:
    with tempfile.TemporaryDirectory(prefix="taskloom-locked-") as name:
        await locked_database(Path(name))


async def locked_database(folder: Path) -> None:
    database = folder / "taskloom.db"
    url = f"sqlite:///{database}"
    ledger = str(folder / "ledger")
    server = Server(TASKS, url, folder)
    await server.start()
    locker: subprocess.Popen[str] | None = None
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            submitter = Submitter(client, ledger)
            executing = {f"executing-{index}" for index in range(5)}
            for key in sorted(executing):
                assert await submitter.submit(key, seconds=0.5) == 201
            await ledger_has(ledger, "start", executing)

            locker = start_locker(database)
            lines = Lines(locker.stdout)
            await lines.wait_for(lambda line: line.strip() == "LOCKED")
            locked_at = time.monotonic()
            tasks = ["recorded", "recorded_in_thread", "recorded_once", "refused"]
            answers = await asyncio.gather(
                *(submitter.submit(f"locked-{i}", tasks[i % 4]) for i in range(12))
            )
            await lines.wait_for(lambda line: line.strip() == "RELEASED")
            waited = time.monotonic() - locked_at
            assert set(answers) <= {201, 503}, answers
            slowest = max(submitter.latencies)
            assert 503 in answers or slowest > LOCK_SECONDS / 2, "the lock held nothing up"
            # A submit waits for the lock within its bound, or is refused: it never hangs.
            assert max(submitter.latencies) < LOCK_SECONDS + 15, submitter.latencies
            assert waited < LOCK_SECONDS + 15

            for index in range(5):
                await submitter.submit_retrying(f"after-{index}")
            await wait_until_done(url)
    finally:
        if locker is not None:
            if locker.poll() is None:
                locker.kill()
            locker.wait()
        code = await server.stop()
    assert code == 0, server.stderr()
    checked = check_runs(url, ledger, submitter.accepted)
    submitter.check_refused_never_ran(ledger, checked.runs)
