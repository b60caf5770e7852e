"""`taskloom serve` killed with SIGKILL at drawn moments loses no accepted run.

Hypothesis draws a schedule: rounds of submits over HTTP (`POST /api/runs`, several at
once), each ended by SIGKILL of the serving process after a drawn number of 201 answers
and a drawn delay; after each kill the server starts again on the same SQLite file. Then
every run is checked against the database and a ledger the tasks append to: every run
whose submit got 201 is there and finished (completed, or failed with a clear error where
that is the point), none is left `running`, none ran to completion again once its end was
committed, and the attempts recorded are at least the times its code began.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fault_processes import Server, snapshot, unfinished
from fault_tasks import RETRIED
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from invariants import check_attempts_truth, check_runs

from support import until
from taskloom.runs import Run

TASKS = Path(__file__).with_name("fault_tasks.py")
RECOVERY = 30.0  # seconds the restarted server may take to finish every run


@dataclass(frozen=True)
class Submit:
    task: str
    seconds: float


@dataclass(frozen=True)
class Round:
    """Submits sent `window` at a time; SIGKILL after `kill_after` 201s and `delay` s."""

    submits: tuple[Submit, ...]
    window: int
    kill_after: int
    delay: float


submits = st.builds(
    Submit,
    task=st.sampled_from(["recorded", "recorded_in_thread", "recorded_once", "refused"]),
    seconds=st.sampled_from([0.0, 0.0, 0.01, 0.05, 0.2]),
)


@st.composite
def rounds(draw: st.DrawFn) -> Round:
    batch = tuple(draw(st.lists(submits, min_size=4, max_size=40)))
    return Round(
        submits=batch,
        window=draw(st.integers(1, 12)),
        kill_after=draw(st.integers(0, len(batch))),
        delay=draw(st.sampled_from([0.0, 0.001, 0.01, 0.05, 0.15])),
    )


@dataclass
class History:
    """What the test saw: accepted runs (id -> key), and the store as each kill left it."""

    accepted: dict[str, str]
    at_kill: list[tuple[int, dict[str, Run]]]  # (pid of the killed server, runs committed)


async def submit_round(
    server: Server, number: int, plan: Round, ledger: str, history: History
) -> None:
    """Send the round's submits; SIGKILL the server at the drawn moment."""
    enough = asyncio.Event()
    if plan.kill_after == 0:
        enough.set()
    window = asyncio.Semaphore(plan.window)
    answered = 0

    async def one(client: httpx.AsyncClient, index: int, submit: Submit) -> None:
        nonlocal answered
        key = f"r{number}-{index}"
        body = {
            "task": submit.task,
            "inputs": {"key": key, "ledger": ledger, "seconds": submit.seconds},
        }
        async with window:
            if enough.is_set():
                return
            try:
                response = await client.post("/api/runs", json=body)
            except httpx.TransportError:
                return  # killed while it was in flight: not accepted, nothing to check
        assert response.status_code == 201, response.text
        history.accepted[response.json()["id"]] = key
        answered += 1
        if answered >= plan.kill_after:
            enough.set()

    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        sending = [asyncio.create_task(one(client, i, s)) for i, s in enumerate(plan.submits)]
        everything = asyncio.ensure_future(asyncio.gather(*sending))
        first_of: list[asyncio.Future[Any]] = [everything, asyncio.ensure_future(enough.wait())]
        await asyncio.wait(first_of, return_when=asyncio.FIRST_COMPLETED)
        if plan.delay:
            await asyncio.sleep(plan.delay)  # the drawn moment of the crash, not a wait
        pid = server.pid
        server.kill()
        await everything
    history.at_kill.append((pid, await asyncio.to_thread(snapshot, server.database_url)))


async def scenario(schedule: list[Round]) -> None:
    with tempfile.TemporaryDirectory(prefix="taskloom-kill-") as name:
        folder = Path(name)
        url = f"sqlite:///{folder / 'taskloom.db'}"
        ledger = str(folder / "ledger")
        history = History({}, [])
        for number, plan in enumerate(schedule):
            server = Server(TASKS, url, folder)
            await server.start()
            await submit_round(server, number, plan, ledger, history)

        server = Server(TASKS, url, folder)
        await server.start()
        try:
            # Work goes on after recovery.
            after = Round(tuple(Submit(t, 0.0) for t in RETRIED), 2, 99, 0.0)
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                for index, submit in enumerate(after.submits):
                    key = f"after-{index}"
                    response = await client.post(
                        "/api/runs",
                        json={"task": submit.task, "inputs": {"key": key, "ledger": ledger}},
                    )
                    assert response.status_code == 201, response.text
                    history.accepted[response.json()["id"]] = key

            async def all_finished() -> bool:
                return await asyncio.to_thread(unfinished, url) == 0

            await until(all_finished, timeout=RECOVERY)
        finally:
            code = await server.stop()
        assert code == 0, server.stderr()
        check(url, ledger, history, final_pid=server.pid)


def check(url: str, ledger: str, history: History, *, final_pid: int) -> None:
    checked = check_runs(url, ledger, history.accepted)
    check_attempts_truth(checked)
    for rid, key in history.accepted.items():
        assert checked.runs[rid].inputs["key"] == key
    # Never completed twice: a run whose end was committed before a kill never ran again.
    for number, (_, committed) in enumerate(history.at_kill):
        later = {p for p, _ in history.at_kill[number + 1 :]} | {final_pid}
        for rid, before in committed.items():
            key = before.inputs["key"]
            if before.status == "completed":
                again = [e for e in checked.entries if e[1] == key and e[2] in later]
                assert not again, f"run {rid} completed before kill {number} ran again: {again}"
            if before.is_finished:
                after = checked.runs[rid]
                assert (after.status, after.attempts) == (before.status, before.attempts), rid


@pytest.mark.timeout(150)
@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure shows its schedule
    print_blob=True,
)
@given(schedule=st.lists(rounds(), min_size=1, max_size=2))
def test_sigkill_of_the_server_loses_no_accepted_run(schedule: list[Round]) -> None:
    asyncio.run(scenario(schedule))
