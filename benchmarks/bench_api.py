"""Listing runs through the HTTP API with 1,000,000 runs in the store.

    python benchmarks/bench_api.py [--runs 1000000] [--requests 300]

The runs are written straight into a SQLite file with one bulk insert (not through the
engine), spread over 10 tasks and the statuses (5% failed). Then `taskloom serve` runs on
that file as a real process, and one keep-alive HTTP client lists pages of 50: the newest
runs, a task's, a status's, a task's failed ones, and deep pages through the cursor. Beside
each, the store's own query (`SqlStore.list_runs` in this process) gives the part the
database takes. Target: p95 <= 50 ms through the API.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from _common import machine, percentiles_ms, report, start_serve

from taskloom.runs import new_run_id
from taskloom.store import open_store
from taskloom.store.schema import RUN_COLUMNS, runs

TASKS = [f"task_{i}" for i in range(10)]
PAGE = 50
SERVED = "import taskloom\n\n\n@taskloom.task\ndef task_0(x: int) -> int:\n    return x\n"


def fill(database: Path, n: int) -> float:
    """Insert `n` finished runs in one transaction, on a plain sqlite3 connection to a
    migrated file; return the seconds it took."""
    began = time.perf_counter()
    now = time.time() - n * 0.001
    rng = random.Random(7)
    columns = ", ".join(RUN_COLUMNS)
    marks = ", ".join("?" for _ in RUN_COLUMNS)
    sql = f"INSERT INTO {runs.name} ({columns}) VALUES ({marks})"
    inputs = json.dumps({"x": 1})
    error = json.dumps({"type": "RuntimeError", "message": "no", "traceback": None})
    constant = {
        "priority": 0,
        "inputs": inputs,
        "attempts": 1,
        "max_attempts": 1,
        "worker_id": "bench",
        "cancel_requested": 0,
    }
    raw = sqlite3.connect(database)
    raw.execute("PRAGMA cache_size = -262144")  # 256 MiB: the indexes stay in memory
    try:
        cursor = raw.cursor()
        chunk: list[tuple[Any, ...]] = []
        for i in range(n):
            created = now + i * 0.001
            failed = rng.random() < 0.05
            values = {
                "id": new_run_id(),
                "task": TASKS[i % len(TASKS)],
                "status": "failed" if failed else "completed",
                "result": None if failed else "1",
                "error": error if failed else None,
                "created_at": created,
                "started_at": created,
                "finished_at": created + 0.0005,
            }
            chunk.append(tuple(values.get(c, constant.get(c)) for c in RUN_COLUMNS))
            if len(chunk) == 50_000:
                cursor.executemany(sql, chunk)
                chunk.clear()
        if chunk:
            cursor.executemany(sql, chunk)
        raw.commit()
    finally:
        raw.close()
    return time.perf_counter() - began


def timed(n: int, call: Callable[[], Any]) -> list[float]:
    for _ in range(5):  # warm up
        call()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def main(n: int, requests: int) -> None:
    with tempfile.TemporaryDirectory(prefix="taskloom-bench-") as name:
        folder = Path(name)
        database = folder / "api.db"
        open_store(f"sqlite:///{database}").close()  # creates and migrates the file
        fill_seconds = fill(database, n)
        store = open_store(f"sqlite:///{database}")
        (folder / "served.py").write_text(SERVED, encoding="utf-8")
        process, url = start_serve(folder, database)
        try:
            queries: dict[str, dict[str, Any]] = {
                "newest runs": {},
                "one task": {"task": "task_3"},
                "one status (failed)": {"status": "failed"},
                "task and status": {"task": "task_3", "status": "failed"},
            }
            figures = {
                "machine": machine(),
                "runs in the store": f"{n:,} (bulk insert {fill_seconds:.1f} s)",
            }
            worst = 0.0
            with httpx.Client(base_url=url + "/api", timeout=30) as http:
                for label, params in queries.items():

                    def through_api(params: dict[str, Any] = params) -> None:
                        response = http.get("/runs", params={**params, "limit": PAGE})
                        assert response.status_code == 200
                        assert len(response.json()["runs"]) == PAGE

                    def in_store(params: dict[str, Any] = params) -> None:
                        assert len(store.list_runs(**params, limit=PAGE)) == PAGE

                    api_samples = timed(requests, through_api)
                    worst = max(worst, sorted(api_samples)[int(len(api_samples) * 0.95)])
                    figures[f"{label}: API"] = percentiles_ms(api_samples)
                    figures[f"{label}: store"] = percentiles_ms(timed(requests, in_store))

                # Deep pages: follow the cursor from the newest run, page after page.
                cursor: list[str | None] = [None]

                def next_page() -> None:
                    params: dict[str, Any] = {"task": "task_5", "limit": PAGE}
                    if cursor[0] is not None:
                        params["cursor"] = cursor[0]
                    cursor[0] = http.get("/runs", params=params).json()["next_cursor"]

                pages = timed(requests, next_page)
                worst = max(worst, sorted(pages)[int(len(pages) * 0.95)])
                figures[f"cursor pages 1..{requests + 5}: API"] = percentiles_ms(pages)
            figures["worst p95 through the API"] = f"{worst * 1e3:.2f} ms (target <= 50 ms)"
            report(f"listing a page of {PAGE} runs through the HTTP API", figures)
        finally:
            process.terminate()
            process.wait(timeout=30)
            store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    main(args.runs, args.requests)
