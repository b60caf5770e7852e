"""The engine that gets killed: `python recovery_child.py DATABASE_URL COUNT CONCURRENCY`.

It registers `recovery_tasks`, submits COUNT runs (rotating over the tasks), and once
every submit has returned and some runs are executing it prints `WORKER <id>` and then
`READY <count>`, and waits to be killed.
"""

from __future__ import annotations

import asyncio
import sys

import taskloom
from tasks_for_tests import recovery_tasks


async def main(url: str, count: int, concurrency: int) -> None:
    recovery_tasks.HOLD = 600.0
    engine = taskloom.Engine(url, concurrency=concurrency)
    await engine.start()
    engine.register(recovery_tasks)
    rotation = recovery_tasks.ROTATION
    runs = await asyncio.gather(
        *(engine.submit(rotation[i % len(rotation)], {"index": i}) for i in range(count))
    )
    # The database has no event to await: poll it.
    while not await engine.list_runs(status="running", limit=1):  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    print("WORKER", engine.worker_id, flush=True)
    print("READY", len(runs), flush=True)
    await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
