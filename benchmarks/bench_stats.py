"""The dashboard's aggregate, `GET /api/stats`, with 1,000,000 runs finished in the last day.

    python benchmarks/bench_stats.py [--runs 1000000] [--requests 300] [--server URL]
                                     [--only sqlite|postgresql] [--write-rounds 40]

First, what counting ends costs a commit: `SqlStore.write` of 2,000 ends, and of one, as
the engine writes them, with the rollup and without it (the write path finding no ends
to count), taking turns; the medians.

The runs are written through the store's own batch writes (`SqlStore.write`, 10,000 runs
a batch, inserted already finished), so the rollup they are counted in is the one the
engine's commits make: 10 tasks with durations of 1 ms to 2 s (log-normal), 5 % failed,
1 % cancelled (half of those never started), finished evenly over the last 24 hours.
Then `taskloom serve` runs on the database as a real process and one keep-alive HTTP
client asks `GET /api/stats?window=1d` and `?window=1h`, and the same narrowed to one
task; beside each, the store's own `run_stats` in this process. The baseline is
`GET /api/health` on the same server, the cost of a request that reads nothing. The
totals are checked against `count(*)` of the runs table. On a SQLite file, and on a
fresh PostgreSQL database of `--server` (dropped at the end). Target: p95 <= 50 ms for
`window=1d`.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import sqlalchemy
from _common import machine, percentiles_ms, report, start_serve
from queue_tasks import as_url, fresh_database

import taskloom.store.sql as sql_store
from taskloom.runs import Attempt, Run, RunStatus, new_run_id
from taskloom.store import SqlStore, WriteBatch, resolve_database_url
from taskloom.store.stats import window_span

rollup_ends = vars(sql_store)["ends_of"]
TASKS = [(f"task_{i}", 0.001 * 2000 ** (i / 9)) for i in range(10)]  # medians 1 ms .. 2 s
SERVED = "import taskloom\n\n\n@taskloom.task\ndef task_0(x: int) -> int:\n    return x\n"
BATCH = 10_000
DAY = 86400.0


def fill(store: SqlStore, n: int, now: float) -> float:
    """Write `n` finished runs through the store's batches; the seconds it took."""
    rng = random.Random(16)
    began = time.perf_counter()
    batch: list[Run] = []
    for i in range(n):
        task, median = TASKS[i % len(TASKS)]
        # Oldest first, as they would have come: the rollup prunes as it goes.
        finished_at = now - DAY + DAY * (i + rng.random()) / n
        seconds = median * math.exp(rng.gauss(0, 0.8))
        roll = rng.random()
        status = (
            RunStatus.CANCELLED
            if roll < 0.01
            else RunStatus.FAILED
            if roll < 0.06
            else RunStatus.COMPLETED
        )
        started = None if status is RunStatus.CANCELLED and roll < 0.005 else finished_at - seconds
        batch.append(
            Run(
                id=new_run_id(),
                task=task,
                inputs={"x": i},
                status=status,
                attempts=0 if started is None else 1,
                created_at=(started or finished_at) - 0.001,
                started_at=started,
                finished_at=finished_at,
                result=1 if status is RunStatus.COMPLETED else None,
            )
        )
        if len(batch) == BATCH:
            store.write(WriteBatch(new_runs=batch))
            batch = []
    if batch:
        store.write(WriteBatch(new_runs=batch))
    return time.perf_counter() - began


def timed(n: int, call: Callable[[], Any]) -> list[float]:
    for _ in range(10):  # warm up
        call()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def counted_in_table(url: str, since: float) -> int:
    """The finished runs of the window, counted in the runs table itself."""
    engine = sqlalchemy.create_engine(resolve_database_url(url))
    try:
        with engine.connect() as conn:
            count = conn.execute(
                sqlalchemy.text(
                    "SELECT count(*) FROM runs WHERE finished_at >= :since "
                    "AND status IN ('completed', 'failed', 'cancelled')"
                ),
                {"since": since},
            ).scalar_one()
    finally:
        engine.dispose()
    return int(count)


def _end_batches(store: SqlStore, size: int, rollup: bool) -> float:
    """Insert `size` runs and start them (not timed), then time the commit of their ends,
    as the engine writes them: each run's update and its attempt's, fenced, with the
    task and start of each."""
    now = time.time()
    runs = [
        Run(id=new_run_id(), task=TASKS[i % 10][0], inputs={}, created_at=now, worker_id="w")
        for i in range(size)
    ]
    store.write(WriteBatch(new_runs=runs))
    started = {"status": RunStatus.RUNNING, "started_at": now, "attempts": 1}
    store.write(
        WriteBatch(
            run_updates={run.id: dict(started) for run in runs},
            new_attempts=[Attempt(run.id, 1, now, worker_id="w") for run in runs],
        )
    )
    end = time.time()
    batch = WriteBatch(
        run_updates={
            run.id: {
                "status": RunStatus.COMPLETED,
                "result": None,
                "error": None,
                "finished_at": end,
            }
            for run in runs
        },
        attempt_updates={
            (run.id, 1): {"finished_at": end, "status": "completed", "error": None} for run in runs
        },
        fences={run.id: ("w", 0) for run in runs},
        ended={run.id: (run.task, now) for run in runs},
    )
    # The baseline is the same commit with no ends found for the rollup: the write path
    # as it was before it (the benchmark swaps the function `SqlStore.write` calls).
    vars(sql_store)["ends_of"] = rollup_ends if rollup else _no_ends
    try:
        began = time.perf_counter()
        store.write(batch)
        return time.perf_counter() - began
    finally:
        vars(sql_store)["ends_of"] = rollup_ends


def _no_ends(batch: WriteBatch) -> list[str]:
    return []


def write_cost(label: str, url: str, rounds: int) -> None:
    """What counting the ends costs a commit: batches of 2,000 ends (a busy writer) and of
    one (a run at a time), with the rollup and without, taking turns."""
    store = SqlStore(url)
    store.open()
    figures = {"machine": machine()}
    try:
        for size, repeat in ((2000, rounds), (1, rounds * 25)):
            times: dict[bool, list[float]] = {True: [], False: []}
            for turn in range(repeat):
                for rollup in (turn % 2 == 0, turn % 2 == 1):
                    times[rollup].append(_end_batches(store, size, rollup))
            on, off = statistics.median(times[True]), statistics.median(times[False])
            figures[f"commit of {size:,} ends"] = (
                f"{on * 1e3:.3f} ms with the rollup, {off * 1e3:.3f} ms without "
                f"({(on - off) / off * 100:+.1f} %, {(on - off) / size * 1e6:.2f} us an end; "
                f"medians of {repeat})"
            )
    finally:
        store.close()
    report(f"The rollup on the write path, {label}", figures)


def measure(label: str, url: str, folder: Path, n: int, requests: int) -> float:
    """Fill the database at `url`, serve it, time the aggregate; return the worst p95."""
    now = time.time()
    store = SqlStore(url)
    store.open()
    try:
        fill_seconds = fill(store, n, now)
        (folder / "served.py").write_text(SERVED, encoding="utf-8")
        process, served = start_serve(folder, folder / "unused.db", url=url)
        figures = {
            "machine": machine(),
            "runs in the store": f"{n:,} (written through the store's batches in "
            f"{fill_seconds:.1f} s, {n / fill_seconds:,.0f} runs/s)",
        }
        worst = 0.0
        try:
            with httpx.Client(base_url=served + "/api", timeout=30) as http:
                health = timed(requests, lambda: http.get("/health").raise_for_status())
                figures["baseline: GET /api/health"] = percentiles_ms(health)
                for window, task in (("1d", None), ("1h", None), ("1d", "task_3")):
                    params = (
                        {"window": window} if task is None else {"window": window, "task": task}
                    )
                    shown = f"window={window}" + ("" if task is None else f"&task={task}")

                    def through_api(params: dict[str, str] = params) -> None:
                        http.get("/stats", params=params).raise_for_status()

                    samples = timed(requests, through_api)
                    if window == "1d":
                        worst = max(worst, p95(samples))
                    ratio = p95(samples) / p95(health)
                    figures[f"GET /api/stats?{shown}"] = (
                        f"{percentiles_ms(samples)}  ({ratio:.1f}x health's p95)"
                    )

                    def in_store(window: str = window, task: str | None = task) -> None:
                        since, bucket = window_span(window, time.time())
                        store.run_stats(
                            since=since, until=time.time(), bucket_seconds=bucket, task=task
                        )

                    figures[f"  the store's run_stats ({shown})"] = percentiles_ms(
                        timed(requests, in_store)
                    )
                answer = http.get("/stats", params={"window": "1d"}).json()
            in_table = counted_in_table(url, answer["since"])
            finished = answer["totals"]["finished"]
            figures["runs counted in the 1d window"] = (
                f"{finished:,} (the runs table: {in_table:,}, "
                f"{'equal' if finished == in_table else 'DIFFERENT'})"
            )
            figures["p95 of window=1d"] = f"{worst * 1e3:.2f} ms (target <= 50 ms)"
        finally:
            process.terminate()
            process.wait(timeout=30)
        report(f"GET /api/stats, {label}", figures)
        return worst
    finally:
        store.close()


def main(n: int, requests: int, server: str, only: str | None, rounds: int) -> None:
    if only in (None, "sqlite"):
        with tempfile.TemporaryDirectory(prefix="taskloom-bench-") as name:
            folder = Path(name)
            write_cost("SQLite file", f"sqlite:///{folder / 'writes.db'}", rounds)
            measure("SQLite file", f"sqlite:///{folder / 'stats.db'}", folder, n, requests)
    if only in (None, "postgresql"):
        try:
            psycopg.connect(server, connect_timeout=5).close()
        except psycopg.Error as exc:
            print(f"\nPostgreSQL is not reachable at {server} ({exc}): skipped")
            return
        with fresh_database(server, "taskloom_bench_writes") as conninfo:
            write_cost("PostgreSQL", as_url(conninfo), rounds)
        with (
            tempfile.TemporaryDirectory(prefix="taskloom-bench-") as name,
            fresh_database(server, "taskloom_bench_stats") as conninfo,
        ):
            measure("PostgreSQL", as_url(conninfo), Path(name), n, requests)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument("--write-rounds", type=int, default=40)
    args = parser.parse_args()
    main(args.runs, args.requests, args.server, args.only, args.write_rounds)
