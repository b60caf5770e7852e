"""Tasks for the recovery tests: an engine runs them, is killed, and another finishes them.

`HOLD` is how long a run takes. The child process that is killed raises it, so that its
runs are still executing when the kill comes; the engine that takes over keeps it short.
"""

from __future__ import annotations

import asyncio
import time

import taskloom

HOLD = 0.01

#: The tasks whose runs get another attempt after their engine died mid-run.
WITH_RETRIES = ("sleepy_with_retry", "blocking_with_retry")


@taskloom.task(retries=1, retry_backoff=0)
async def sleepy_with_retry(index: int) -> int:
    await asyncio.sleep(HOLD)
    return index


@taskloom.task(retries=0)
async def sleepy_without_retry(index: int) -> int:
    await asyncio.sleep(HOLD)
    return index


@taskloom.task(retries=1, retry_backoff=0, thread_safe=True)
def blocking_with_retry(index: int) -> int:
    time.sleep(HOLD)
    return index


@taskloom.task
async def instant(index: int) -> int:
    return index


ROTATION = (sleepy_with_retry, sleepy_without_retry, blocking_with_retry, instant)
