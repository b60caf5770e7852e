"""The engine that gets killed mid-workflow: `python workflow_child.py DATABASE_URL`.

It submits `workflow_tasks.build()` with n=4 and, once the step `held` is running,
prints `WORKFLOW <run id>` and waits to be killed.
"""

from __future__ import annotations

import asyncio
import sys

import taskloom
from tasks_for_tests import workflow_tasks


async def main(url: str) -> None:
    workflow_tasks.HOLD = 600.0
    async with taskloom.Engine(url) as engine:
        run = await engine.submit(workflow_tasks.build(), {"n": 4})
        # The database has no event to await: poll it.
        while not await engine.list_runs(task="held", status="running", limit=1):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        print("WORKFLOW", run.id, flush=True)
        await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
