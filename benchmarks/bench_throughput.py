"""Persisted no-op runs per second, embedded on a SQLite file.

    python benchmarks/bench_throughput.py [--runs 20000]

Four ways: `async def` and sync no-op tasks, each submitted as N concurrent `submit` calls
(asyncio.gather) and as one `submit_many`; every run is awaited to its committed end.
The baseline is N bare asyncio no-op tasks gathered in the same process.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from _common import bare_asyncio_rate, database_file, machine, report

import taskloom


@taskloom.task
async def noop_async() -> None:
    return None


@taskloom.task
def noop_sync() -> None:
    return None


async def concurrent_submits(engine: taskloom.Engine, task: object, n: int) -> float:
    start = time.perf_counter()
    runs = await asyncio.gather(*(engine.submit(task) for _ in range(n)))
    done = await asyncio.gather(*(engine.wait(run.id) for run in runs))
    elapsed = time.perf_counter() - start
    assert all(r.status == "completed" for r in done)
    return n / elapsed


async def batched_submit(engine: taskloom.Engine, task: object, n: int) -> float:
    start = time.perf_counter()
    runs = await engine.submit_many(task, [{}] * n)
    done = await engine.wait_many([run.id for run in runs])
    elapsed = time.perf_counter() - start
    assert all(r.status == "completed" for r in done)
    return n / elapsed


async def main(n: int, url: str | None) -> None:
    baseline = await bare_asyncio_rate(n)
    figures = {"machine": machine(), "bare asyncio": f"{baseline:,.0f} no-op tasks/s"}
    for label, task in (("async def", noop_async), ("sync def", noop_sync)):
        for mode, fn in (
            ("concurrent submit", concurrent_submits),
            ("submit_many", batched_submit),
        ):
            with database_file(url=url) as path:
                async with taskloom.Engine(path) as engine:
                    await engine.run(task)  # warm up: schema, first statements
                    rate = await fn(engine, task, n)
            figures[f"{label}, {mode}"] = (
                f"{rate:,.0f} runs/s  (ratio to bare asyncio {rate / baseline:.3f})"
            )
    where = "a SQLite file" if url is None else url
    report(f"{n:,} persisted no-op runs on {where} (target >= 25,000 runs/s)", figures)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--database", help="a database URL instead of a fresh SQLite file")
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.database))
