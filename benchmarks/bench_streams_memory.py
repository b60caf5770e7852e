"""Peak memory of a pipeline whose sink is 100x slower than its source.

    python benchmarks/bench_streams_memory.py [--seconds 60] [--queue-size 1000]

The source yields 1 KB messages at about 2,000 a second; the sink takes 100 times as
long per message. Measured for `block` and `drop_oldest`, each for `--seconds`, with
tracemalloc's peak (what Python allocated) and the process's peak RSS. The baseline, in
the same run, is the same source and sink joined by an unbounded asyncio.Queue (what an
unbounded stream queue does): its memory grows with time instead.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
import tracemalloc
from collections.abc import AsyncIterator

from _common import machine, report

import taskloom

SIZE = 1024
BURST = 10  # messages per source step
SOURCE_STEP = 0.005  # seconds per burst: 2,000 messages a second
SINK_STEP = SOURCE_STEP / BURST * 100  # seconds per message: 100x slower

state = {"until": 0.0, "received": 0}


@taskloom.task
async def fast_source() -> AsyncIterator[bytes]:
    while time.monotonic() < state["until"]:
        for _ in range(BURST):
            yield bytes(SIZE)
        await asyncio.sleep(SOURCE_STEP)


@taskloom.task
async def slow_sink(frame: bytes) -> None:
    state["received"] += 1
    await asyncio.sleep(SINK_STEP)


def mb(value: float) -> str:
    return f"{value / 1e6:,.1f} MB"


async def pipeline_peak(seconds: float, queue_size: int, backpressure: str) -> tuple[int, int]:
    p = taskloom.Pipeline("memory")
    p.stage(fast_source, outputs=["frames"])
    p.stage(slow_sink, inputs={"frame": "frames"}, queue_size=queue_size, backpressure=backpressure)
    state["until"], state["received"] = time.monotonic() + seconds, 0
    tracemalloc.start()
    async with taskloom.Engine("memory://") as engine:
        tracemalloc.reset_peak()
        deployment = await engine.deploy(p)
        await asyncio.sleep(seconds)
        _, peak = tracemalloc.get_traced_memory()
        dropped = deployment.status().stage("slow_sink").dropped
        await deployment.stop()
    tracemalloc.stop()
    return peak, dropped


async def unbounded_peak(seconds: float) -> int:
    queue: asyncio.Queue[bytes] = asyncio.Queue()  # no maxsize
    until = time.monotonic() + seconds

    async def source() -> None:
        while time.monotonic() < until:
            for _ in range(BURST):
                queue.put_nowait(bytes(SIZE))
            await asyncio.sleep(SOURCE_STEP)

    async def sink() -> None:
        while True:
            await queue.get()
            await asyncio.sleep(SINK_STEP)

    tracemalloc.start()
    tracemalloc.reset_peak()
    tasks = [asyncio.create_task(source()), asyncio.create_task(sink())]
    await asyncio.sleep(seconds)
    _, peak = tracemalloc.get_traced_memory()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    tracemalloc.stop()
    return peak


async def main(seconds: float, queue_size: int) -> None:
    figures = {
        "machine": machine(),
        "run": f"{seconds:g} s each; source ~2,000 msg/s of 1 KB, sink 100x slower",
        "queue size": f"{queue_size:,} messages",
    }
    baseline = await unbounded_peak(seconds)
    figures["bare asyncio.Queue (unbounded)"] = f"peak {mb(baseline)}"
    for backpressure in ("block", "drop_oldest"):
        peak, dropped = await pipeline_peak(seconds, queue_size, backpressure)
        extra = f", {dropped:,} dropped" if backpressure == "drop_oldest" else ""
        figures[f"taskloom {backpressure}"] = f"peak {mb(peak)}{extra}"
    figures["process peak RSS"] = (
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3:,.1f} MB"
    )
    report("Peak memory with a sink 100x slower than its source", figures)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long each case runs")
    parser.add_argument("--queue-size", type=int, default=1000)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.seconds, arguments.queue_size))
