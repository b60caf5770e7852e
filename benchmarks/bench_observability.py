"""The cost of observability on the engine's hot paths, on and off in the same run.

    python benchmarks/bench_observability.py [--runs 20000] [--latency-runs 2000] [--rounds 3]

The workloads of `bench_throughput.py` (N concurrent `submit` calls of an `async def`
no-op, one `submit_many` of a sync no-op) and of `bench_latency.py` (submit-then-wait, one
run at a time), each on a fresh SQLite file, under each configuration of `CONFIGURATIONS`:

- `off`: a bare engine, as in those scripts (no listener: the engine makes no events);
- `metrics`: the Prometheus metrics a worker with `--metrics-port` has (`Metrics.watch`:
  a listener counting runs, attempts and durations), which also makes the engine emit its
  events, the worst case (a server has a listener already, for its event streams).

Configurations take turns round by round, so a machine that slows down meanwhile slows
all of them; the figure of each is the median of its rounds, and the ratio is to `off`
(the target: metrics cost at most 5 %). Beside the wall-clock figure, the CPU time this
process spent per run (`time.process_time`, the event loop and the writer thread
together). Both move by several percent from run to run on a shared machine, so the
script also times what the metrics add to each run's end alone: the engine telling a
`finished` event to the metrics' listener, 100,000 times, against telling it to no one.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from _common import database_file, machine, report
from bench_latency import noop, percentiles
from bench_throughput import batched_submit, concurrent_submits, noop_async, noop_sync

import taskloom
from taskloom.observability.metrics import Metrics

#: What a configuration does to a started engine; it returns how to undo it.
Setup = Callable[[taskloom.Engine], Callable[[], None]]


def bare(_engine: taskloom.Engine) -> Callable[[], None]:
    return lambda: None


def with_metrics(engine: taskloom.Engine) -> Callable[[], None]:
    metrics = Metrics()
    metrics.watch(engine)
    return metrics.close


# Each row is measured against `off`. More rows go here (tracing with the SDK installed and
# no exporter, say): a name and a `Setup`.
CONFIGURATIONS: list[tuple[str, Setup]] = [
    ("off", bare),
    ("metrics", with_metrics),
]


@dataclass
class Workload:
    name: str
    measure: Callable[[taskloom.Engine], Awaitable[float]]
    unit: str
    higher_is_better: bool
    runs: int


async def latency_p50(engine: taskloom.Engine, n: int) -> float:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        run = await engine.submit(noop)
        await engine.wait(run.id)
        samples.append(time.perf_counter() - start)
    p50, _p99 = percentiles(samples)
    return p50 * 1e3


async def one_round(workload: Workload, setup: Setup) -> tuple[float, float]:
    """The workload's figure, and the CPU seconds this process spent per run on it."""
    with database_file() as path:
        async with taskloom.Engine(path) as engine:
            await engine.run(noop)  # warm up: schema, first statements
            undo = setup(engine)
            try:
                cpu = time.process_time()
                value = await workload.measure(engine)
                return value, (time.process_time() - cpu) / workload.runs
            finally:
                undo()


async def listener_cost(calls: int = 100_000) -> float:
    """Seconds per run end that the metrics' listener adds to the engine's telling of it."""
    with database_file() as path:
        async with taskloom.Engine(path) as engine:
            run = await engine.run(noop)  # a finished run, as the engine tells it
            execution = engine._execution  # what the engine calls as each run ends

            def tell_all() -> float:
                start = time.perf_counter()
                for _ in range(calls):
                    execution.emit("finished", run, attempt_ended=True)
                return time.perf_counter() - start

            bare = min(tell_all() for _ in range(3))
            undo = with_metrics(engine)
            counted = min(tell_all() for _ in range(3))
            undo()
    return (counted - bare) / calls


async def main(runs: int, latency_runs: int, rounds: int) -> None:
    workloads = [
        Workload(
            "async def, concurrent submit",
            lambda engine: concurrent_submits(engine, noop_async, runs),
            "runs/s",
            True,
            runs,
        ),
        Workload(
            "sync def, submit_many",
            lambda engine: batched_submit(engine, noop_sync, runs),
            "runs/s",
            True,
            runs,
        ),
        Workload(
            "submit -> result p50",
            lambda engine: latency_p50(engine, latency_runs),
            "ms",
            False,
            latency_runs,
        ),
    ]
    figures = {"machine": machine()}
    cheapest_run = math.inf  # the least CPU per run with everything off, of any workload
    for workload in workloads:
        results: dict[str, list[tuple[float, float]]] = {n: [] for n, _setup in CONFIGURATIONS}
        for _ in range(rounds):
            for name, setup in CONFIGURATIONS:
                results[name].append(await one_round(workload, setup))
        base = statistics.median(v for v, _cpu in results["off"])
        base_cpu = statistics.median(cpu for _v, cpu in results["off"])
        cheapest_run = min(cheapest_run, base_cpu)
        for name, rounds_of in results.items():
            value = statistics.median(v for v, _cpu in rounds_of)
            cpu = statistics.median(c for _v, c in rounds_of)
            shown = f"{value:,.3f}" if workload.unit == "ms" else f"{value:,.0f}"
            line = f"{shown} {workload.unit}, CPU {cpu * 1e6:,.1f} us/run"
            if name != "off":
                slower = base / value if workload.higher_is_better else value / base
                line += (
                    f"  (cost {(slower - 1) * 100:+.1f} % wall clock, "
                    f"{(cpu / base_cpu - 1) * 100:+.1f} % CPU)"
                )
            figures[f"{workload.name}, {name}"] = line
    added = await listener_cost()
    figures["metrics per run end, alone"] = (
        f"{added * 1e6:.2f} us ({added / cheapest_run * 100:.1f} % of the least CPU a run "
        "took above, with everything off)"
    )
    report(
        f"observability on the engine: {runs:,} runs a throughput round, {latency_runs:,} "
        f"a latency round, median of {rounds} rounds (target cost <= 5 %)",
        figures,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--latency-runs", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.latency_runs, args.rounds))
