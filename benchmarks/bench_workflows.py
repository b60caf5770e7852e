"""Workflows embedded on a SQLite file: a long chain, and a wide map with a gather.

    python benchmarks/bench_workflows.py [--chain 1000] [--items 10000] [--repeat 3]

- chain: N steps of an `async def` no-op, each taking the previous step's result; every
  step is a persisted child run. Target <= 0.5 s for 1,000 steps.
- map + gather: one step lists N items, a `map` runs a no-op once per item, one step
  gathers the N results. Target <= 1.5 s for 10,000 items.

Times are from `submit` to the workflow run's committed end (best of --repeat). The
baseline does the same shape with bare asyncio in the same process: N awaited no-op tasks
one after another, and N no-op tasks gathered.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from _common import database_file, machine, report

import taskloom


@taskloom.task
async def step(x: int = 0) -> int:
    return x + 1


@taskloom.task
async def listing(n: int) -> list[int]:
    return list(range(n))


@taskloom.task
async def gather(values: list[int]) -> int:
    return len(values)


def chain_workflow(n: int) -> taskloom.Workflow:
    wf = taskloom.Workflow("chain")
    previous = wf.step(step, x=0, name="s0")
    for index in range(1, n):
        previous = wf.step(step, x=previous.result, name=f"s{index}")
    return wf


def map_workflow(n: int) -> taskloom.Workflow:
    wf = taskloom.Workflow("fan")
    items = wf.step(listing, n=n)
    mapped = wf.map(step, x=items.result, name="items")
    wf.step(gather, values=mapped.result)
    return wf


async def _noop(x: int) -> int:
    return x + 1


async def bare_chain(n: int) -> float:
    start = time.perf_counter()
    value = 0
    for _ in range(n):
        value = await asyncio.ensure_future(_noop(value))
    return time.perf_counter() - start


async def bare_map(n: int) -> float:
    start = time.perf_counter()
    results = await asyncio.gather(*(_noop(i) for i in range(n)))
    await asyncio.ensure_future(_noop(len(results)))
    return time.perf_counter() - start


async def timed(engine: taskloom.Engine, wf: taskloom.Workflow) -> float:
    start = time.perf_counter()
    run = await engine.submit(wf)
    done = await engine.wait(run.id)
    elapsed = time.perf_counter() - start
    assert done.status == "completed", done.error
    return elapsed


async def main(chain: int, items: int, repeat: int, url: str | None) -> None:
    figures = {"machine": machine()}
    for label, build, bare, target in (
        (f"chain of {chain:,} steps", chain_workflow(chain), bare_chain(chain), 0.5),
        (f"map of {items:,} items + gather", map_workflow(items), bare_map(items), 1.5),
    ):
        baseline = await bare
        best = float("inf")
        for _ in range(repeat):
            with database_file(url=url) as path:
                async with taskloom.Engine(path) as engine:
                    await engine.run(step, {"x": 0})  # warm up: schema, first statements
                    best = min(best, await timed(engine, build))
        figures[label] = (
            f"{best:.3f} s (target <= {target} s)  bare asyncio {baseline * 1000:.1f} ms  "
            f"(ratio {best / baseline:,.0f}x)"
        )
    where = "a SQLite file" if url is None else url
    report(f"Workflows on {where}", figures)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chain", type=int, default=1_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--database", help="a database URL instead of a fresh SQLite file")
    args = parser.parse_args()
    asyncio.run(main(args.chain, args.items, args.repeat, args.database))
