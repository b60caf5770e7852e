"""Draining a PostgreSQL queue: N pending no-op runs, two `taskloom worker` processes.

    python benchmarks/bench_drain.py [--runs 100000] [--concurrency 200]
        [--server postgresql://postgres@127.0.0.1:5432/test] [--procrastinate-runs N]
        [--no-analyze]

N no-op runs are submitted (`submit_many`, 5,000 at a time, by an engine that does not
execute) to a fresh database before any worker starts; then two `taskloom worker`
processes are started. Two figures: from the moment both said they were ready until a
poll (every 50 ms) finds no run pending or running; and, read from the database after the
drain, from the first attempt's start to the last run's end; and how many runs each
worker executed.

The baseline, in the same run on the same server: procrastinate 3.10 (`pip install
procrastinate==3.10.0`; skipped, saying so, when it is not importable), the same no-op jobs
deferred in bulk (`batch_defer_async`, 5,000 at a time) to another fresh database and
drained by two `procrastinate worker` processes of the same concurrency; its exact figure
is the first `started` event to the last `succeeded` one. It gets the same N jobs unless
`--procrastinate-runs` says otherwise (it drains under a thousand jobs a second, so 100,000
take minutes); the rates are compared, not the times.

Both databases are ANALYZEd after the load and before the workers start, as autovacuum
would soon do: the planner's statistics of a table that was empty make procrastinate's job
fetch about 2.5x slower until autovacuum comes by, so the comparison would depend on when
it does. `--no-analyze` leaves them as loaded.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import psycopg
import queue_tasks
from _common import machine, report
from queue_tasks import WorkerProcess, as_url, fresh_database, procrastinate_client, scalar

import taskloom

CHUNK = 5_000
POLL = 0.05
STALL = 60.0  # seconds without progress after which the drain is given up


@dataclass
class Drain:
    n: int
    submit_seconds: float
    start_seconds: float  # told to start -> both ready
    wall_seconds: float  # both ready -> a poll finds nothing left
    poll_seconds: float  # the mean time of one poll
    exact_seconds: float  # first start -> last end, from the database
    statuses: dict[str, int]
    worker_exits: list[int]
    per_worker: list[int] = field(default_factory=list)  # attempts each worker made

    def rates(self) -> tuple[float, float]:
        return self.n / self.wall_seconds, self.n / self.exact_seconds


def start_workers(make: Callable[[int], WorkerProcess]) -> tuple[list[WorkerProcess], float]:
    """Two workers started together; returns them and how long until both were ready
    (and leaves `ready_at` on each)."""
    told = time.time()
    workers = [make(i) for i in range(2)]
    with ThreadPoolExecutor(2) as pool:
        ready = list(pool.map(lambda w: w.wait_ready(), workers))
    return workers, max(ready) - told


def poll_until_drained(
    conninfo: str, unfinished: str, workers: Sequence[WorkerProcess]
) -> tuple[float, float]:
    """time.time() when no row of `unfinished` (`table WHERE ...`) is left, and the mean
    time of a poll. The poll asks whether one row is left, not how many: a count reads
    every entry of the status index, a load on the server the workers would share."""
    exists = f"SELECT EXISTS (SELECT 1 FROM {unfinished})"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        polls, polling = 0, 0.0
        last, progress_at, counted_at = -1, time.monotonic(), time.monotonic()
        while True:
            start = time.perf_counter()
            row = conn.execute(exists).fetchone()
            polling += time.perf_counter() - start
            polls += 1
            assert row is not None
            now = time.time()
            if not row[0]:
                return now, polling / polls
            if any(w.process.poll() is not None for w in workers):
                outputs = "\n".join(w.output() for w in workers)
                raise SystemExit(f"a worker ended during the drain:\n{outputs}")
            if time.monotonic() - counted_at > STALL / 10:
                left = conn.execute(f"SELECT count(*) FROM {unfinished}").fetchone()
                assert left is not None
                counted_at = time.monotonic()
                if left[0] != last:
                    last, progress_at = left[0], counted_at
                elif counted_at - progress_at > STALL:
                    outputs = "\n".join(w.output() for w in workers)
                    raise SystemExit(f"no progress for {STALL:g} s, {last} left:\n{outputs}")
            time.sleep(POLL)


def analyze(conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("ANALYZE")


def statuses(conninfo: str, sql: str) -> dict[str, int]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return {str(s): int(c) for s, c in conn.execute(sql).fetchall()}


async def submit_taskloom(url: str, n: int) -> float:
    async with taskloom.Engine(url, worker=False, tasks=[queue_tasks]) as engine:
        start = time.perf_counter()
        for done in range(0, n, CHUNK):
            await engine.submit_many(queue_tasks.noop, [{}] * min(CHUNK, n - done))
        return time.perf_counter() - start


def drain_taskloom(server: str, n: int, concurrency: int, *, analyzed: bool) -> Drain:
    with fresh_database(server, "taskloom_drain") as conninfo:
        url = as_url(conninfo)
        submit_seconds = asyncio.run(submit_taskloom(url, n))
        if analyzed:
            analyze(conninfo)
        workers, start_seconds = start_workers(
            lambda i: WorkerProcess.taskloom(url, concurrency=concurrency, name=f"drain-{i}")
        )
        try:
            ready = max(w.ready_at or 0.0 for w in workers)
            drained, poll_seconds = poll_until_drained(
                conninfo, "runs WHERE status IN ('pending', 'running')", workers
            )
        finally:
            exits = [w.stop() for w in workers]
        exact = float(
            scalar(
                conninfo,
                "SELECT (SELECT max(finished_at) FROM runs)"
                " - (SELECT min(started_at) FROM attempts)",
            )
        )
        found = statuses(conninfo, "SELECT status, count(*) FROM runs GROUP BY status")
        found["attempts"] = int(scalar(conninfo, "SELECT count(*) FROM attempts"))
        split = statuses(conninfo, "SELECT worker_id, count(*) FROM attempts GROUP BY worker_id")
        per_worker = sorted(split.values(), reverse=True)
        return Drain(
            n,
            submit_seconds,
            start_seconds,
            drained - ready,
            poll_seconds,
            exact,
            found,
            exits,
            per_worker,
        )


async def defer_procrastinate(conninfo: str, n: int) -> float:
    app = procrastinate_client(conninfo)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        deferrer = app.configure_task("noop")
        start = time.perf_counter()
        for done in range(0, n, CHUNK):
            await deferrer.batch_defer_async(*([{}] * min(CHUNK, n - done)))
        return time.perf_counter() - start


def drain_procrastinate(server: str, n: int, concurrency: int, *, analyzed: bool) -> Drain:
    with fresh_database(server, "procrastinate_drain") as conninfo:
        submit_seconds = asyncio.run(defer_procrastinate(conninfo, n))
        if analyzed:
            analyze(conninfo)
        workers, start_seconds = start_workers(
            lambda i: WorkerProcess.procrastinate(
                conninfo, concurrency=concurrency, name=f"drain-{i}"
            )
        )
        try:
            ready = max(w.ready_at or 0.0 for w in workers)
            drained, poll_seconds = poll_until_drained(
                conninfo, "procrastinate_jobs WHERE status IN ('todo', 'doing')", workers
            )
        finally:
            exits = [w.stop() for w in workers]
        exact = float(
            scalar(
                conninfo,
                "SELECT extract(epoch FROM max(at) FILTER (WHERE type IN"
                " ('succeeded', 'failed')) - min(at) FILTER (WHERE type = 'started'))"
                " FROM procrastinate_events",
            )
        )
        found = statuses(
            conninfo, "SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY status"
        )
        return Drain(
            n, submit_seconds, start_seconds, drained - ready, poll_seconds, exact, found, exits
        )


def describe(drain: Drain, unit: str) -> dict[str, str]:
    wall, exact = drain.rates()
    figures = {
        "submitted": f"{drain.n:,} in {drain.submit_seconds:.2f} s"
        f" ({drain.n / drain.submit_seconds:,.0f}/s)",
        "workers started": f"{drain.start_seconds:.2f} s until both ready",
        "ready -> drained": f"{drain.wall_seconds:.2f} s, {wall:,.0f} {unit}/s (polled every"
        f" 50 ms, {drain.poll_seconds * 1e3:.1f} ms a poll)",
        "first start -> last end": f"{drain.exact_seconds:.2f} s, {exact:,.0f} {unit}/s (database)",
        "statuses": ", ".join(f"{k} {v:,}" for k, v in sorted(drain.statuses.items())),
        "worker exit codes": ", ".join(str(code) for code in drain.worker_exits),
    }
    if drain.per_worker:
        figures["runs per worker"] = " / ".join(f"{n:,}" for n in drain.per_worker)
    return figures


def main(server: str, n: int, concurrency: int, baseline_n: int, *, analyzed: bool) -> None:
    figures = {
        "machine": machine(),
        "workers": f"2 processes, concurrency {concurrency} each",
        "statistics": "ANALYZE after the load" if analyzed else "as loaded (--no-analyze)",
    }
    ours = drain_taskloom(server, n, concurrency, analyzed=analyzed)
    figures.update({f"taskloom: {k}": v for k, v in describe(ours, "runs").items()})
    try:
        import procrastinate  # noqa: F401
    except ImportError:
        figures["procrastinate"] = (
            "skipped: not importable (pip install procrastinate==3.10.0 to compare)"
        )
    else:
        theirs = drain_procrastinate(server, baseline_n, concurrency, analyzed=analyzed)
        figures.update({f"procrastinate: {k}": v for k, v in describe(theirs, "jobs").items()})
        (wall, exact), (base_wall, base_exact) = ours.rates(), theirs.rates()
        note = "" if baseline_n == n else f" (rates compared: {n:,} runs vs {baseline_n:,} jobs)"
        figures["ratio taskloom/procrastinate"] = (
            f"{exact / base_exact:.1f}x by the database, {wall / base_wall:.1f}x polled{note}"
        )
    report(
        f"draining {n:,} pending no-op runs with 2 workers on PostgreSQL"
        " (target >= 10,000 runs/s, >= 20x procrastinate)",
        figures,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument(
        "--procrastinate-runs",
        type=int,
        default=None,
        help="jobs for the procrastinate side (default: --runs)",
    )
    parser.add_argument(
        "--no-analyze",
        action="store_true",
        help="do not ANALYZE the databases after the load",
    )
    args = parser.parse_args()
    baseline_runs = args.procrastinate_runs or args.runs
    main(args.server, args.runs, args.concurrency, baseline_runs, analyzed=not args.no_analyze)
