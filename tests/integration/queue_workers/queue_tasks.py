"""Tasks the `taskloom worker` processes of the shared-queue tests execute."""

from __future__ import annotations

import asyncio
import time

from pydantic import BaseModel

import taskloom
from taskloom import Context


@taskloom.task(retries=2, retry_backoff=0.0)
async def tick(index: int, pause: float = 0.0) -> int:
    """A run that takes `pause` seconds and returns its index (a lost attempt is retried)."""
    if pause:
        await asyncio.sleep(pause)
    return index


@taskloom.task(concurrency=2)
async def limited(index: int, pause: float = 0.1) -> int:
    """At most two of these execute at once, across all workers."""
    await asyncio.sleep(pause)
    return index


@taskloom.task(retries=1, retry_backoff=2.0, retry_jitter=False)
async def fails_first(index: int, context: Context) -> int:
    """Fails its first attempt; the retry is due two seconds later."""
    if context.attempt == 1:
        raise RuntimeError("first attempt fails")
    return index


@taskloom.task
async def chatty(lines: int, context: Context) -> int:
    """Logs `lines` lines, a little apart."""
    for number in range(lines):
        context.logger.info("line %d", number)
        await asyncio.sleep(0.05)
    return lines


@taskloom.task
async def hang_async() -> None:
    await asyncio.sleep(3600)


@taskloom.task(thread_safe=True)
def hang_thread(context: Context) -> None:
    while not context.cancelled:
        time.sleep(0.002)


class HangClass(taskloom.Task):
    """A class task whose `cancel()` ends its `execute`."""

    name = "hang_class"

    class Inputs(BaseModel):
        pass

    async def setup(self) -> None:
        self._stop = asyncio.Event()

    async def execute(self, inputs: object) -> None:
        await self._stop.wait()

    async def cancel(self) -> None:
        self._stop.set()


@taskloom.task
async def add_one(x: int) -> int:
    """A step of the chain workflows: the previous step's result plus one."""
    return x + 1


@taskloom.task
async def numbers(n: int) -> list[int]:
    """The list a map workflow maps over."""
    return list(range(n))


@taskloom.task
async def item(x: int, pause: float = 0.005) -> int:
    """One item of a map: takes `pause` seconds, returns its square."""
    await asyncio.sleep(pause)
    return x * x
