"""A PostgreSQL queue in a steady state, and an idle worker's wake-up.

    python benchmarks/bench_queue_steady.py [--rate 3000] [--seconds 30] [--concurrency 200]
        [--wakeups 200] [--server postgresql://postgres@127.0.0.1:5432/test]

Two `taskloom worker` processes (concurrency 200 each) run on a fresh database while a
submitter process of its own (this script with `--submitter URL RATE SECONDS`) offers RATE
no-op runs a second for SECONDS: every 10 ms, one `submit_many` of the runs due by the
clock. Once every run is finished, read from the database: whether all completed, and the
submit-to-finish latency (`finished_at - created_at`) p50, p99 and max.

Then, with both workers idle, this process submits single runs one at a time, 20 ms apart,
and waits for them (woken by NOTIFY); the wake-up is the first attempt's `started_at -
created_at`. `created_at` is taken before the submit commits, so both figures include it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import queue_tasks
from _common import machine, report
from queue_tasks import WorkerProcess, as_url, fresh_database, scalar

import taskloom

SCRIPT = Path(__file__).resolve()
TICK = 0.01  # the submitter's pace: one batch each 10 ms
DRAIN_TIMEOUT = 300.0
UNFINISHED = "SELECT count(*) FROM runs WHERE status IN ('pending', 'running')"


async def submit_paced(url: str, rate: float, seconds: float) -> dict[str, float]:
    """Offer `rate` runs a second for `seconds`: at each tick, the runs due by the clock."""
    total = round(rate * seconds)
    async with taskloom.Engine(url, worker=False, tasks=[queue_tasks]) as engine:
        submitted = batches = largest = 0
        start = time.perf_counter()
        while submitted < total:
            elapsed = time.perf_counter() - start
            due = min(total, int(rate * elapsed) + 1) - submitted
            if due > 0:
                await engine.submit_many(queue_tasks.noop, [{}] * due)
                submitted += due
                batches += 1
                largest = max(largest, due)
            next_tick = start + (int(elapsed / TICK) + 1) * TICK
            await asyncio.sleep(max(0.0, next_tick - time.perf_counter()))
        elapsed = time.perf_counter() - start
    return {"submitted": submitted, "seconds": elapsed, "batches": batches, "largest": largest}


def percentiles(samples: list[float]) -> str:
    """p50, p99 and max of samples in seconds, as milliseconds."""
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1e3

    return f"p50 {at(0.50):.1f} ms, p99 {at(0.99):.1f} ms, max {ordered[-1] * 1e3:.1f} ms"


async def create_schema(url: str) -> None:
    """Opened once before the workers start, so that they do not race to create it."""
    async with taskloom.Engine(url, worker=False):
        pass


def wait_drained(conninfo: str, workers: list[WorkerProcess]) -> int:
    """Poll until no run is pending or running; how many still are after DRAIN_TIMEOUT."""
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while (left := int(scalar(conninfo, UNFINISHED))) > 0 and time.monotonic() < deadline:
        if any(w.process.poll() is not None for w in workers):
            outputs = "\n".join(w.output() for w in workers)
            raise SystemExit(f"a worker ended, {left} runs unfinished:\n{outputs}")
        time.sleep(0.05)
    return left


def rows(conninfo: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


async def steady_state(url: str, rate: float, seconds: float) -> dict[str, float]:
    """The submitter process's report, once it has offered every run."""
    argv = [sys.executable, str(SCRIPT), "--submitter", url]
    process = await asyncio.create_subprocess_exec(
        *argv, str(rate), str(seconds), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"the submitter ended with {process.returncode}")
    return dict(json.loads(out.decode().strip().splitlines()[-1]))


async def wake_ups(url: str, count: int, spacing: float) -> list[str]:
    """Single runs submitted one at a time, `spacing` apart by the clock, then awaited."""
    async with taskloom.Engine(url, worker=False, tasks=[queue_tasks]) as engine:
        ids: list[str] = []
        start = time.perf_counter()
        for i in range(count):
            ids.append((await engine.submit(queue_tasks.noop)).id)
            await asyncio.sleep(max(0.0, start + (i + 1) * spacing - time.perf_counter()))
        try:
            done = await engine.wait_many(ids, timeout=60)
        except taskloom.WaitTimeoutError as exc:
            raise SystemExit(f"single runs not finished 60 s after their submit: {exc}") from exc
        assert all(run.status == "completed" for run in done), {r.status for r in done}
        return ids


def main(server: str, rate: float, seconds: float, concurrency: int, wakeup_count: int) -> None:
    figures = {"machine": machine(), "workers": f"2 processes, concurrency {concurrency} each"}
    with fresh_database(server, "taskloom_steady") as conninfo:
        url = as_url(conninfo)
        asyncio.run(create_schema(url))
        workers = [
            WorkerProcess.taskloom(url, concurrency=concurrency, name=f"steady-{i}")
            for i in range(2)
        ]
        try:
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(lambda w: w.wait_ready(), workers))
            offered = asyncio.run(steady_state(url, rate, seconds))
            backlog = int(scalar(conninfo, UNFINISHED))
            left = wait_drained(conninfo, workers)
            wake_ids: list[str] = []
            if left == 0:
                time.sleep(1.0)  # both workers idle
                wake_ids = asyncio.run(wake_ups(url, wakeup_count, 0.02))
        finally:
            exits = [w.stop() for w in workers]

        steady = rows(
            conninfo,
            "SELECT status, finished_at - created_at, created_at, finished_at FROM runs"
            " WHERE id <> ALL(%s)",
            wake_ids,
        )
        statuses: dict[str, int] = {}
        for status, *_ in steady:
            statuses[str(status)] = statuses.get(str(status), 0) + 1
        latencies = [float(x) for status, x, *_ in steady if status == "completed"]
        span = max(float(f or 0.0) for *_, f in steady) - min(float(c) for _, _, c, _ in steady)
        per_worker = sorted(
            (n for _, n in rows(conninfo, "SELECT worker_id, count(*) FROM attempts GROUP BY 1")),
            reverse=True,
        )
        wake = rows(
            conninfo,
            "SELECT a.started_at - r.created_at, r.finished_at - r.created_at FROM attempts a"
            " JOIN runs r ON r.id = a.run_id WHERE a.number = 1 AND r.id = ANY(%s)",
            wake_ids,
        )
    n = int(offered["submitted"])
    figures["offered"] = (
        f"{n:,} runs in {offered['seconds']:.2f} s ({n / offered['seconds']:,.0f} runs/s,"
        f" asked {rate:,.0f}), {int(offered['batches']):,} submit_many,"
        f" largest {int(offered['largest'])}"
    )
    figures["unfinished at the end"] = f"{backlog:,} runs when the submitter stopped"
    figures["all completed"] = (
        f"{'yes' if statuses == {'completed': n} else 'NO'}"
        f" ({', '.join(f'{k} {v:,}' for k, v in sorted(statuses.items()))});"
        f" the last finished {span:.2f} s after the first was submitted"
    )
    figures["submit -> finish"] = (
        f"{percentiles(latencies)}  (target p99 < 1 s; of the {len(latencies):,} completed)"
    )
    if wake:
        figures["idle wake-up"] = (
            f"{percentiles([float(s) for s, _ in wake])}  (target p50 <= 5 ms, p99 <= 50 ms;"
            f" {len(wake)} single runs 20 ms apart, attempt start - created_at)"
        )
        figures["idle submit -> finish"] = percentiles([float(f) for _, f in wake])
    else:
        figures["idle wake-up"] = (
            f"not measured: {left:,} runs still unfinished {DRAIN_TIMEOUT:g} s after the"
            " submitter stopped, so no worker was idle"
        )
    figures["attempts per worker"] = " / ".join(f"{n:,}" for n in per_worker)
    figures["worker exit codes"] = ", ".join(str(code) for code in exits)
    report(
        f"steady state on PostgreSQL: {rate:,.0f} runs/s offered for {seconds:g} s to 2 workers",
        figures,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=3_000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--wakeups", type=int, default=200)
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument(
        "--submitter",
        nargs=3,
        metavar=("URL", "RATE", "SECONDS"),
        help="(internal) be the submitter process: offer RATE runs/s for SECONDS to URL",
    )
    args = parser.parse_args()
    if args.submitter:
        url, rate, seconds = args.submitter
        print(json.dumps(asyncio.run(submit_paced(url, float(rate), float(seconds)))))
    else:
        main(args.server, args.rate, args.seconds, args.concurrency, args.wakeups)
