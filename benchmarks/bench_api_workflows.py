"""Workflows through the HTTP API of a real `taskloom serve` process.

    python benchmarks/bench_api_workflows.py [--steps 1000] [--reads 100]

- submit to end: a chain of N no-op steps (each taking the previous step's result) sent
  as data to `POST /api/workflows`, then `GET /api/runs/{id}/wait` until it has ended;
  beside it the same workflow submitted to an engine in this process (no HTTP).
- reading it: p50 and p95 of `GET /api/workflows/{id}` on the finished N-step workflow
  run (the run, its workflow and every step with its run: what a page reads to draw the
  graph on each event).

The baseline is bare asyncio in this process: N no-op tasks awaited one after another.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _common import machine, percentiles_ms, report, start_serve

import taskloom

SERVED = """import taskloom


@taskloom.task
async def step(x: int = 0) -> int:
    return x + 1
"""


def chain(n: int) -> dict[str, Any]:
    steps: dict[str, Any] = {"s0": {"task": "step", "inputs": {"x": 0}}}
    for index in range(1, n):
        steps[f"s{index}"] = {"task": "step", "inputs": {"x": f"${{steps.s{index - 1}.result}}"}}
    return {"name": "chain", "steps": steps}


async def _noop(x: int) -> int:
    return x + 1


async def bare_chain(n: int) -> float:
    start = time.perf_counter()
    value = 0
    for _ in range(n):
        value = await asyncio.ensure_future(_noop(value))
    return time.perf_counter() - start


async def in_process(folder: Path, n: int) -> float:
    module = taskloom.loading.load_module(str(folder / "served.py"))
    async with taskloom.Engine(f"sqlite:///{folder / 'local.db'}", tasks=[module]) as engine:
        await engine.run("step", {"x": 0})  # warm up
        workflow = taskloom.Workflow.from_dict(chain(n))
        start = time.perf_counter()
        run = await engine.submit(workflow)
        done = await engine.wait(run.id)
        elapsed = time.perf_counter() - start
        assert done.status == "completed", done.error
        return elapsed


def main(n: int, reads: int) -> None:
    baseline = asyncio.run(bare_chain(n))
    with tempfile.TemporaryDirectory(prefix="taskloom-bench-") as name:
        folder = Path(name)
        (folder / "served.py").write_text(SERVED, encoding="utf-8")
        local = asyncio.run(in_process(folder, n))
        process, url = start_serve(folder, folder / "api.db")
        try:
            with httpx.Client(base_url=url + "/api", timeout=120) as http:
                http.post("/runs", json={"task": "step", "inputs": {"x": 0}})  # warm up
                body = {"workflow": chain(n)}
                start = time.perf_counter()
                run = http.post("/workflows", json=body).json()
                done = http.get(f"/runs/{run['id']}/wait", params={"timeout": 60}).json()
                over_http = time.perf_counter() - start
                assert done["status"] == "completed", done
                samples = []
                for _ in range(reads):
                    began = time.perf_counter()
                    shown = http.get(f"/workflows/{run['id']}")
                    samples.append(time.perf_counter() - began)
                    assert len(shown.json()["steps"]) == n
        finally:
            process.terminate()
            process.wait(timeout=30)
    report(
        f"a workflow of {n:,} chained steps through the HTTP API",
        {
            "machine": machine(),
            "submit to end, HTTP": f"{over_http:.3f} s",
            "submit to end, engine in process": f"{local:.3f} s",
            f"GET /api/workflows/{{id}} ({n:,} steps)": percentiles_ms(samples),
            "bare asyncio chain": (
                f"{baseline * 1e3:.1f} ms (HTTP ratio {over_http / baseline:,.0f}x)"
            ),
        },
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000)
    parser.add_argument("--reads", type=int, default=100)
    args = parser.parse_args()
    main(args.steps, args.reads)
