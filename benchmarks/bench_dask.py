"""Runs of `executor="dask"` tasks through an engine, against bare `distributed`.

    python benchmarks/bench_dask.py [--pause-runs 1000] [--noop-runs 10000] [--rounds 3]
        [--threads 4]

One `distributed.LocalCluster` of 2 worker processes (`--threads` threads each, no
dashboard, `distributed.scheduler.allowed-failures` 0 as taskloom asks of a scheduler),
made once and shared by both sides through one asynchronous `Client`. Two workloads: N
calls of a 10 ms sleep (`--pause-runs`), and N calls of a no-op (`--noop-runs`), both
functions of `dask_bench_tasks.py`, which the workers import by name.

- taskloom: an `Engine` on a fresh SQLite file with `dask=` the client; `submit_many` of
  the N runs, then `wait_many` until every run has ended, each start and end committed.
- bare Dask, the baseline: `client.map` of the same function over N items (`pure=False`,
  so every round computes, as taskloom's keys do), then `as_completed` with the results.

The sides take turns for R rounds (default 3), so a machine that slows down meanwhile
slows both; each round is printed, and the ratio is of the medians (the target: taskloom
at least 0.8x bare Dask). Beside each rate, the CPU time per call of this process (the
client, the engine and its SQLite writer, and the scheduler: a `LocalCluster` runs its
scheduler in the process that makes it, in a thread of its own that shares the GIL with
the engine) and of the two worker processes, the medians of the rounds: on a shared
machine the rates move with the load, the CPU per call much less.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import dask
import dask_bench_tasks
import psutil
from _common import database_file, machine, report
from distributed import Client, LocalCluster, as_completed

import taskloom

WARM_UP = 20  # calls each side makes first: the workers import the module, the engine its schema


@dataclass
class Workload:
    name: str
    function: Callable[[int], int]
    task: Any  # the taskloom task wrapping `function`
    runs: int


@dataclass
class Round:
    seconds: float
    cpu: float  # this process's CPU seconds
    workers_cpu: float  # the worker processes' CPU seconds

    def rate(self, n: int) -> float:
        return n / self.seconds


def workers_cpu() -> float:
    """CPU seconds of this process's children: the worker processes (and their nannies'
    helpers), started by the cluster."""
    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


async def timed(body: Callable[[], Awaitable[None]]) -> Round:
    cpu, workers, start = time.process_time(), workers_cpu(), time.perf_counter()
    await body()
    return Round(time.perf_counter() - start, time.process_time() - cpu, workers_cpu() - workers)


async def taskloom_round(client: Client, workload: Workload) -> Round:
    with database_file() as path:
        async with taskloom.Engine(path, tasks=[dask_bench_tasks], dask=client) as engine:
            warm = await engine.submit_many(workload.task, [{"index": i} for i in range(WARM_UP)])
            await engine.wait_many([run.id for run in warm])
            inputs = [{"index": i} for i in range(workload.runs)]
            ended: list[taskloom.Run] = []

            async def body() -> None:
                runs = await engine.submit_many(workload.task, inputs)
                ended.extend(await engine.wait_many([run.id for run in runs]))

            measured = await timed(body)
    assert [run.status for run in ended] == ["completed"] * workload.runs, "a run did not complete"
    assert [run.result for run in ended] == list(range(workload.runs))
    return measured


async def bare_round(client: Client, workload: Workload) -> Round:
    async def calls(n: int) -> int:
        futures = client.map(workload.function, range(n), pure=False)
        total = 0
        async for _future, result in as_completed(futures, with_results=True):
            total += result
        return total

    await calls(WARM_UP)
    totals: list[int] = []

    async def body() -> None:
        totals.append(await calls(workload.runs))

    measured = await timed(body)
    assert totals == [sum(range(workload.runs))]
    return measured


def describe(rounds: list[Round], n: int) -> str:
    each = ", ".join(f"{r.rate(n):,.0f}" for r in rounds)
    cpu = statistics.median(r.cpu for r in rounds) / n
    workers = statistics.median(r.workers_cpu for r in rounds) / n
    median = statistics.median(r.rate(n) for r in rounds)
    return (
        f"{median:,.0f} calls/s (rounds: {each}); CPU per call: this process "
        f"{cpu * 1e6:,.0f} us, workers {workers * 1e6:,.0f} us"
    )


async def measure(address: str, workloads: list[Workload], rounds: int) -> dict[str, str]:
    figures: dict[str, str] = {}
    async with Client(address, asynchronous=True) as client:  # type: ignore[no-untyped-call]
        for workload in workloads:
            ours: list[Round] = []
            bare: list[Round] = []
            for _ in range(rounds):
                ours.append(await taskloom_round(client, workload))
                bare.append(await bare_round(client, workload))
            n = workload.runs
            figures[f"{workload.name}, taskloom"] = describe(ours, n)
            figures[f"{workload.name}, bare Dask"] = describe(bare, n)
            ratio = statistics.median(r.rate(n) for r in ours) / statistics.median(
                r.rate(n) for r in bare
            )
            figures[f"{workload.name}, ratio taskloom/bare"] = f"{ratio:.2f}x (target >= 0.8x)"
    return figures


def main(pause_runs: int, noop_runs: int, rounds: int, threads: int) -> None:
    workloads = [
        Workload(
            f"{pause_runs:,} x 10 ms sleep",
            dask_bench_tasks.pause,
            dask_bench_tasks.pause_task,
            pause_runs,
        ),
        Workload(
            f"{noop_runs:,} x no-op", dask_bench_tasks.noop, dask_bench_tasks.noop_task, noop_runs
        ),
    ]
    load = os.getloadavg()[0]
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=2, threads_per_worker=threads, processes=True, dashboard_address=None
        ) as cluster,
    ):
        figures = {
            "machine": machine(),
            "cluster": f"LocalCluster, 2 worker processes x {threads} threads, "
            f"distributed {dask.__version__}",
        }
        figures.update(asyncio.run(measure(cluster.scheduler_address, workloads, rounds)))
    figures["load average"] = f"{load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"
    report(
        f"executor='dask' runs on SQLite against bare Dask, median of {rounds} rounds "
        "(target >= 0.8x)",
        figures,
    )


if __name__ == "__main__":  # the workers are spawned processes: they import this file too
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pause-runs", type=int, default=1_000)
    parser.add_argument("--noop-runs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4, help="threads per Dask worker")
    args = parser.parse_args()
    main(args.pause_runs, args.noop_runs, args.rounds, args.threads)
