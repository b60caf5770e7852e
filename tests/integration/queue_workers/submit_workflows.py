"""A process that submits a chain of CHAIN_STEPS steps and a map of MAP_ITEMS items, then
waits to be killed.

    python submit_workflows.py URL CHAIN_STEPS MAP_ITEMS

It executes nothing (`worker=False`): the workers on the database run every step. It
drives both workflows until it is killed; then a worker resumes them. It prints
`RUNS <chain run id> <map run id>` once both are committed.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent))

if TYPE_CHECKING:  # the same file, found where mypy looks (it does not follow sys.path)
    from queue_workers import queue_tasks
else:
    import queue_tasks

from taskloom import Engine, Workflow


def chain(steps: int) -> Workflow:
    workflow = Workflow(f"chain{steps}")
    # Ahead of the map's items (priority 1): its steps are not queued behind them.
    previous = workflow.step(queue_tasks.add_one, x=0, name="s0", priority=1)
    for index in range(1, steps):
        previous = workflow.step(
            queue_tasks.add_one, x=previous.result, name=f"s{index}", priority=1
        )
    workflow.output("last", previous.result)
    return workflow


def fan_out(items: int) -> Workflow:
    workflow = Workflow(f"map{items}")
    listing = workflow.step(queue_tasks.numbers, n=items, name="listing")
    each = workflow.map(queue_tasks.item, x=listing.result, pause=0.2, name="each")
    workflow.output("squares", each.result)
    return workflow


async def main(url: str, steps: int, items: int) -> None:
    async with Engine(url, worker=False, tasks=[queue_tasks]) as engine:
        first = await engine.submit(chain(steps))
        second = await engine.submit(fan_out(items))
        print("RUNS", first.id, second.id, flush=True)
        await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
