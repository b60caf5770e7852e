"""The functions `bench_dask.py` runs on Dask workers, plain and as taskloom tasks.

The workers import this module by name (its folder is on their `sys.path`), so both
sides send the function by reference: bare Dask maps the plain function, taskloom's
tasks wrap the same function (`shipped` finds it under its own name).
"""

from __future__ import annotations

import time

import taskloom

PAUSE = 0.01


def pause(index: int) -> int:
    """10 ms of sleep: a call whose cost is its worker's time, not the CPU."""
    time.sleep(PAUSE)
    return index


def noop(index: int) -> int:
    return index


pause_task = taskloom.task(executor="dask", name="bench.pause")(pause)
noop_task = taskloom.task(executor="dask", name="bench.noop")(noop)
