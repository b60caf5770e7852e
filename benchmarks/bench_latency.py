"""Submit-then-wait latency of one run at a time, embedded on a SQLite file.

    python benchmarks/bench_latency.py [--runs 2000]

Each run is submitted (returns once committed) and awaited (returns once its end is
committed) before the next. The baseline is one bare asyncio task created and awaited.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from _common import database_file, machine, report

import taskloom


@taskloom.task
async def noop() -> None:
    return None


async def _bare() -> None:
    return None


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def main(n: int, url: str | None) -> None:
    bare: list[float] = []
    for _ in range(n):
        start = time.perf_counter()
        await asyncio.ensure_future(_bare())
        bare.append(time.perf_counter() - start)
    samples: list[float] = []
    with database_file(url=url) as path:
        async with taskloom.Engine(path) as engine:
            for _ in range(50):  # warm up
                await engine.run(noop)
            for _ in range(n):
                start = time.perf_counter()
                run = await engine.submit(noop)
                await engine.wait(run.id)
                samples.append(time.perf_counter() - start)
    p50, p99 = percentiles(samples)
    b50, b99 = percentiles(bare)
    report(
        f"submit -> result latency, {n:,} sequential runs (target p50 <= 0.5 ms)",
        {
            "machine": machine(),
            "bare asyncio task": f"p50 {b50 * 1e3:.3f} ms, p99 {b99 * 1e3:.3f} ms",
            "taskloom run": f"p50 {p50 * 1e3:.3f} ms, p99 {p99 * 1e3:.3f} ms",
            "ratio p50 to bare": f"{p50 / b50:.1f}x",
        },
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--database", help="a database URL instead of a fresh SQLite file")
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.database))
