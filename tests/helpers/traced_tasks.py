"""Tasks for the tracing tests, executed in the test's process and by `taskloom worker`."""

from __future__ import annotations

import asyncio

from opentelemetry import trace

import taskloom


@taskloom.task
def add(a: int, b: int, context: taskloom.Context) -> int:
    """A sync task (it runs in a thread); logs a line as the run."""
    context.logger.info("adding %d and %d", a, b)
    return a + b


@taskloom.task
async def double(n: int) -> int:
    """An async task whose own span nests under its attempt's."""
    with trace.get_tracer("traced_tasks").start_as_current_span("double.work"):
        await asyncio.sleep(0)
        return n * 2


@taskloom.task(retries=1, retry_backoff=0.01, retry_jitter=False)
def fails(message: str) -> None:
    """Fail with `message`, in both of its attempts."""
    raise ValueError(message)
