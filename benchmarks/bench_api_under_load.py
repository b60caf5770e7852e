"""The HTTP API while the engine is busy: listing runs during a large map.

    python benchmarks/bench_api_under_load.py [--items 100000] [--idle 200]

A real `taskloom serve` process on a SQLite file. First `GET /api/runs?limit=5` is timed
on the idle server (the baseline of this run); then a workflow whose `map` runs a no-op
once per item of a listed range is submitted through `POST /api/workflows`, and the same
listing is timed, one request after another, until the workflow run has ended. Printed:
p50 and p99 of both, how many listings were made during the map, and how long the
workflow took. Target: p99 under 100 ms during a 100,000-item map.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _common import machine, report, start_serve

SERVED = """import taskloom


@taskloom.task
async def listing(n: int) -> list[int]:
    return list(range(n))


@taskloom.task
async def step(x: int = 0) -> int:
    return x + 1


@taskloom.task
async def gather(values: list[int]) -> int:
    return len(values)
"""

LISTING = {"limit": 5}


def map_workflow(n: int) -> dict[str, Any]:
    return {
        "name": "fan",
        "steps": {
            "listing": {"task": "listing", "inputs": {"n": n}},
            "items": {
                "task": "step",
                "map": "x",
                "inputs": {"x": "${steps.listing.result}"},
            },
            "gather": {"task": "gather", "inputs": {"values": "${steps.items.result}"}},
        },
    }


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (
        f"p50 {statistics.median(ordered) * 1e3:7.2f} ms, p99 {p99 * 1e3:7.2f} ms, "
        f"max {ordered[-1] * 1e3:7.2f} ms  ({len(ordered):,} requests)"
    )


def timed_listing(http: httpx.Client) -> float:
    began = time.perf_counter()
    response = http.get("/runs", params=LISTING)
    elapsed = time.perf_counter() - began
    response.raise_for_status()
    return elapsed


def main(items: int, idle: int) -> None:
    with tempfile.TemporaryDirectory(prefix="taskloom-bench-") as name:
        folder = Path(name)
        (folder / "served.py").write_text(SERVED, encoding="utf-8")
        process, url = start_serve(folder, folder / "api.db")
        try:
            with httpx.Client(base_url=url + "/api", timeout=300) as http:
                http.post("/runs", json={"task": "step", "inputs": {"x": 0}})  # warm up
                baseline = [timed_listing(http) for _ in range(idle)]
                start = time.perf_counter()
                response = http.post("/workflows", json={"workflow": map_workflow(items)})
                response.raise_for_status()
                run_id = response.json()["id"]
                busy: list[float] = []
                status = "running"
                while status == "running":
                    busy.append(timed_listing(http))
                    status = http.get(f"/runs/{run_id}").json()["status"]
                took = time.perf_counter() - start
                assert status == "completed", http.get(f"/runs/{run_id}").json()
        finally:
            process.terminate()
            process.wait(timeout=60)
    report(
        f"GET /api/runs?limit=5 while a {items:,}-item map runs in the server",
        {
            "machine": machine(),
            "idle server (baseline)": percentiles(baseline),
            f"during the {items:,}-item map": percentiles(busy),
            "workflow submit to end": f"{took:.2f} s (with the listings beside it)",
            "p99 ratio busy / idle": f"{_p99(busy) / _p99(baseline):.1f}x (target p99 < 100 ms)",
        },
    )


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--idle", type=int, default=200, help="listings on the idle server")
    args = parser.parse_args()
    main(args.items, args.idle)
