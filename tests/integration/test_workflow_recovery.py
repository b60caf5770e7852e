"""A workflow whose engine is killed (SIGKILL) mid-run: the accepted workflow run is kept,
and the next engine resumes it: the step that was executing is run again (its lost
attempt fails with `WorkerLostError` and is retried), the completed step is not."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from tasks_for_tests import workflow_tasks

from taskloom import Engine, RunStatus

INTEGRATION = Path(__file__).resolve().parent
CHILD = INTEGRATION / "tasks_for_tests" / "workflow_child.py"

pytestmark = pytest.mark.timeout(90)


async def run_and_kill(url: str) -> str:
    """Start the child engine, wait until its workflow is mid-way, kill it; the run id."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(INTEGRATION), env.get("PYTHONPATH")) if p)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHILD),
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(45):
            line = (await process.stdout.readline()).decode().strip()
        if not line.startswith("WORKFLOW "):
            assert process.stderr is not None
            error = (await process.stderr.read()).decode()
            pytest.fail(f"the engine process ended before its workflow ran:\n{error}")
        return line.split()[1]
    finally:
        if process.returncode is None:
            process.kill()  # SIGKILL: no chance to clean up
        await process.wait()


async def test_a_killed_engines_workflow_is_resumed_by_the_next(database_url: str) -> None:
    run_id = await run_and_kill(database_url)
    workflow_tasks.CALLS.clear()

    async with Engine(database_url, tasks=[workflow_tasks], shutdown_grace=1.0) as engine:
        done = await engine.wait(run_id, timeout=30)
        assert done.status == RunStatus.COMPLETED, done.error
        assert done.result["outputs"] == {"finish": "finished with 41"}
        steps = {
            (r.idempotency_key or "").partition("/")[2]: r
            for r in await engine.list_runs(parent_id=run_id)
        }
        assert {name: str(r.status) for name, r in steps.items()} == {
            "prepare": "completed",
            "held": "completed",
            "finish": "completed",
        }
        # `held` was executing when its engine was killed: that attempt is lost, and its
        # retry completes it.
        attempts = await engine.get_attempts(steps["held"].id)
        assert [a.status for a in attempts] == ["failed", "completed"]
        assert attempts[0].error is not None
        assert attempts[0].error.type == "WorkerLostError"
        assert workflow_tasks.CALLS == ["held", "finish"]  # prepare was not run again
