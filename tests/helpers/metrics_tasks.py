"""Tasks and a service the metrics tests run, in process and in `taskloom worker`."""

from __future__ import annotations

import asyncio

import taskloom


@taskloom.task
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@taskloom.task(retries=1, retry_backoff=0.01, retry_jitter=False)
def fail_twice(n: int) -> None:
    """Fail every attempt: two attempts per run, the run failed."""
    raise RuntimeError(f"failed {n}")


@taskloom.task
async def nap(seconds: float) -> str:
    """Sleep, so that a run is seen executing."""
    await asyncio.sleep(seconds)
    return "rested"


@taskloom.service
async def idler(context: taskloom.Context) -> None:
    """Wait until stopped."""
    while True:
        await context.sleep(0.05)


@taskloom.task
def double(value: int) -> int:
    """Twice the value: a stream stage."""
    return 2 * value
