"""An execution that began before SIGKILL of the server is counted as an attempt.

The server is killed right after it accepted a run, again and again, so now and then the
kill falls between the run's code beginning and its start being committed. The ledger
says how often each run's code began; the store must count at least as many attempts,
and a task without retries must not run a second time after the restart (it fails as
lost instead).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest
from fault_processes import Server, unfinished
from invariants import check_attempts_truth, check_runs
from test_kill_serve import TASKS, History, Round, Submit, submit_round

from support import until


@pytest.mark.timeout(90)
async def test_code_begun_before_a_kill_is_counted_as_an_attempt() -> None:
    with tempfile.TemporaryDirectory(prefix="taskloom-kill-") as name:
        folder = Path(name)
        url = f"sqlite:///{folder / 'taskloom.db'}"
        ledger = str(folder / "ledger")
        history = History({}, [])
        for number in range(10):
            plan = Round((Submit("recorded_once", 0.0), Submit("recorded", 0.05)), 1, 1, 0.0)
            server = Server(TASKS, url, folder)
            await server.start()
            await submit_round(server, number, plan, ledger, history)
        server = Server(TASKS, url, folder)
        await server.start()
        try:

            async def all_finished() -> bool:
                return await asyncio.to_thread(unfinished, url) == 0

            await until(all_finished, timeout=30)
        finally:
            assert await server.stop() == 0, server.stderr()
        check_attempts_truth(await asyncio.to_thread(check_runs, url, ledger, history.accepted))
