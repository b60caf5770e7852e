"""Peak memory with 100,000 pending runs in one engine.

    python benchmarks/bench_memory.py [--runs 100000]

A task limited to one run at a time holds its slot until released, so every other run
stays pending in the engine's queue. Reported: the growth of the resident set size (peak,
from the OS) and of Python allocations (tracemalloc is not used: it slows the run down
and changes what is measured), compared with the same number of bare asyncio futures.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource

from _common import database_file, machine, report

import taskloom

release = asyncio.Event()


@taskloom.task(concurrency=1)
async def gate() -> None:
    await release.wait()


def rss_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


async def main(n: int) -> None:
    gc.collect()
    before = current_rss_mib()
    futures = [asyncio.get_running_loop().create_future() for _ in range(n)]
    bare = current_rss_mib() - before
    del futures
    gc.collect()
    with database_file() as path:
        async with taskloom.Engine(path) as engine:
            await engine.submit(gate)  # takes the only slot
            start = current_rss_mib()
            runs: list[taskloom.Run] = []
            for offset in range(0, n, 10_000):
                runs += await engine.submit_many(gate, [{}] * min(10_000, n - offset))
            pending = await engine.list_runs(task="gate", status="pending", limit=1)
            held = current_rss_mib() - start
            peak = rss_peak_mib()
            release.set()
            assert pending, "runs should be pending while the gate is closed"
            await engine.wait_many([r.id for r in runs[-10:]])
    report(
        f"memory with {n:,} pending runs",
        {
            "machine": machine(),
            "bare asyncio futures": f"{bare:.1f} MiB for {n:,} futures",
            "taskloom pending runs": f"{held:.1f} MiB ({held * 2**20 / n:,.0f} bytes a run)",
            "process peak RSS": f"{peak:.1f} MiB",
            "ratio to bare futures": f"{held / bare:.1f}x" if bare > 0 else "n/a",
        },
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100_000)
    asyncio.run(main(parser.parse_args().runs))
