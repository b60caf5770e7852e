"""Workflows on the shared queue: their steps run on every worker, and a workflow goes on
when the process that submitted (and drove) it is killed.

A submitter process that executes nothing submits a 100-step chain and a 1,000-item map
to two `taskloom worker` processes and is killed with SIGKILL mid-way; a worker resumes
both workflows from the database, and both complete with every step run once.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from pathlib import Path

import pytest
from queue_workers.workers import Worker, query

from support import until

pytestmark = pytest.mark.timeout(240)

SUBMITTER = Path(__file__).resolve().parent / "queue_workers" / "submit_workflows.py"
CHAIN_STEPS = 100
MAP_ITEMS = 1_000


def completed_steps(url: str, workflow_id: str) -> int:
    rows = query(
        url,
        "SELECT count(*) FROM runs WHERE parent_id = :parent AND status = 'completed'",
        parent=workflow_id,
    )
    return int(rows[0][0])


def result_of(url: str, run_id: str) -> dict[str, object]:
    value = query(url, "SELECT result FROM runs WHERE id = :id", id=run_id)[0][0]
    return value if isinstance(value, dict) else json.loads(str(value))


def status_of(url: str, run_id: str) -> str:
    return str(query(url, "SELECT status FROM runs WHERE id = :id", id=run_id)[0][0])


async def test_a_chain_and_a_map_complete_on_the_workers_when_their_submitter_is_killed(
    database_url: str,
) -> None:
    workers = [Worker(database_url, concurrency=50, name=f"w{i}") for i in range(2)]
    submitter: asyncio.subprocess.Process | None = None
    try:
        ids = [await w.ready() for w in workers]
        submitter = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SUBMITTER),
            database_url,
            str(CHAIN_STEPS),
            str(MAP_ITEMS),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert submitter.stdout is not None
        line = (await asyncio.wait_for(submitter.stdout.readline(), 60)).decode()
        if not line.startswith("RUNS "):
            rest = await asyncio.wait_for(submitter.stdout.read(), 10)
            pytest.fail(f"the submitter failed:\n{line}{rest.decode()}")
        chain_id, map_id = line.split()[1:]

        # Killed once both workflows are under way and far from done.
        async def under_way() -> bool:
            chain, fan = await asyncio.gather(
                asyncio.to_thread(completed_steps, database_url, chain_id),
                asyncio.to_thread(completed_steps, database_url, map_id),
            )
            return chain >= 5 and fan >= 50

        await until(under_way, timeout=60)
        submitter.kill()
        await submitter.wait()
        left = [
            await asyncio.to_thread(completed_steps, database_url, chain_id),
            await asyncio.to_thread(completed_steps, database_url, map_id),
        ]
        assert left[0] < CHAIN_STEPS, "the chain finished before the kill"
        assert left[1] < MAP_ITEMS + 1, "the map finished before the kill"

        async def both_done() -> bool:
            statuses = {
                await asyncio.to_thread(status_of, database_url, chain_id),
                await asyncio.to_thread(status_of, database_url, map_id),
            }
            assert statuses <= {"running", "completed"}, statuses
            return statuses == {"completed"}

        await until(both_done, timeout=150)
        for worker in workers:
            assert await worker.stop() == 0, worker.output()
    finally:
        if submitter is not None and submitter.returncode is None:
            submitter.kill()
            await submitter.wait()
        for worker in workers:
            worker.kill()

    assert result_of(database_url, chain_id)["outputs"] == {"last": CHAIN_STEPS}
    # Every step has one run, and no run was completed twice.
    chain_steps = query(
        database_url,
        "SELECT idempotency_key, status FROM runs WHERE parent_id = :parent",
        parent=chain_id,
    )
    assert len(chain_steps) == CHAIN_STEPS
    assert {status for _, status in chain_steps} == {"completed"}
    items = query(
        database_url,
        "SELECT r.id, a.worker_id FROM runs r JOIN attempts a ON a.run_id = r.id "
        "WHERE r.parent_id = :parent AND r.task = 'item' AND a.status = 'completed'",
        parent=map_id,
    )
    assert len(items) == MAP_ITEMS
    assert len({run_id for run_id, _ in items}) == MAP_ITEMS  # one completed attempt each
    by_worker = Counter(worker for _, worker in items)
    assert set(by_worker) <= set(ids), by_worker
    for worker_id in ids:
        assert by_worker[worker_id] >= 0.3 * MAP_ITEMS, by_worker
    outputs = result_of(database_url, map_id)["outputs"]
    assert outputs == {"squares": [x * x for x in range(MAP_ITEMS)]}
