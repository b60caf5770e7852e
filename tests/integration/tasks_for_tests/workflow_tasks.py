"""Tasks of the workflow that `workflow_child.py` runs and a test kills."""

from __future__ import annotations

import asyncio

import taskloom

#: How long `held` blocks; the killed process sets it high, a test process leaves it 0.
HOLD = 0.0
CALLS: list[str] = []


@taskloom.task
async def prepare(n: int) -> int:
    CALLS.append("prepare")
    return n * 10


@taskloom.task
async def held(value: int) -> int:
    CALLS.append("held")
    await asyncio.sleep(HOLD)
    return value + 1


@taskloom.task
async def finish(value: int) -> str:
    CALLS.append("finish")
    return f"finished with {value}"


def build() -> taskloom.Workflow:
    wf = taskloom.Workflow("killed", inputs={"n": int})
    first = wf.step(prepare, n=wf.input("n"), name="prepare")
    # A retry: the attempt a killed engine was executing is lost, and the retry is
    # what completes it (without one the step, and so the workflow, would fail).
    middle = wf.step(held, value=first.result, name="held", retries=1)
    wf.step(finish, value=middle.result, name="finish")
    return wf
