"""Tasks the Dask tests run: their calls are made on Dask workers, which import this
module by name (the tests put this folder on the workers' PYTHONPATH)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import taskloom


@taskloom.task(executor="dask", retries=3, retry_backoff=0.05, retry_jitter=False)
def tick(index: int, pause: float = 0.01) -> dict[str, int]:
    """A short call that says which process made it."""
    time.sleep(pause)
    return {"index": index, "pid": os.getpid()}


@taskloom.task(executor="dask")
def noop(index: int) -> int:
    return index


@taskloom.task(executor="dask")
def square(x: int) -> dict[str, int]:
    """A map item: fails for a negative `x`."""
    if x < 0:
        raise ValueError(f"x must not be negative, got {x}")
    return {"square": x * x, "pid": os.getpid()}


@taskloom.task(executor="dask")
def chatty(release: str, context: taskloom.Context) -> str:
    """Logs and reports progress, then waits until the file `release` exists."""
    context.logger.info("started on process %d", os.getpid())
    logging.getLogger("chatty.stdlib").warning("a line through the logging module")
    context.progress(0.5, "half way")
    deadline = time.monotonic() + 60
    while not Path(release).exists():
        if time.monotonic() > deadline:
            raise TimeoutError("never released")
        time.sleep(0.01)
    return "released"


@taskloom.task(executor="dask", timeout=0.5)
def sleepy(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


@taskloom.task(executor="dask")
def wait_for(path: str) -> int:
    """Waits until the file `path` exists, then says which process it ran in."""
    deadline = time.monotonic() + 60
    while not Path(path).exists():
        if time.monotonic() > deadline:
            raise TimeoutError("never released")
        time.sleep(0.01)
    return os.getpid()


@taskloom.task(executor="dask")
def square_in_slurm_job(x: int, pause: float = 0.05) -> dict[str, int | str | None]:
    """A map item that says which SLURM job made its call (None outside SLURM); the pause
    keeps each call long enough for the items to spread over the workers."""
    time.sleep(pause)
    return {"square": x * x, "job": os.environ.get("SLURM_JOB_ID"), "pid": os.getpid()}
