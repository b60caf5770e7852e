"""Delayed runs started on time, and the idle cost of a table of schedules, on PostgreSQL.

    python benchmarks/bench_schedules.py [--runs 10000] [--within 60] [--concurrency 200]
        [--schedules 10000] [--idle-seconds 20] [--lead S] [--procrastinate-lead S]
        [--server postgresql://postgres@127.0.0.1:5432/test]

Lateness: two `taskloom worker` processes (concurrency 200 each) run on a fresh database;
then an engine of this process that does not execute submits N no-op runs, 500 at a time
(`asyncio.gather` of `submit(..., run_at=t)`), their due times spread evenly over WITHIN
seconds from a few seconds after the submissions end (`--lead`: seconds from the first
submit to the first due time; by default 5 s plus the submits at 1,000 a second, a pace
this machine beats; the margin left is printed). Before the first due time, each run's
`scheduled_at` is read from the database: the due time (a run's `scheduled_at` is cleared
when its attempt starts, so it is read while pending).
Once none is pending or running (given up WITHIN + 120 s after the first due time, saying
how many were left), each run's lateness is its `started_at` minus that due time: p50,
p99, max, the share started within 1 s (the target: p99 < 1 s), and how many started
before their due time (there must be none).

Baselines in the same run: bare asyncio, the same number of `loop.call_at` timers spread
over 10 s, each one's lateness (`loop.time()` in the callback minus its time): the floor
of this machine; and procrastinate 3.10 (`pip install procrastinate==3.10.0`; skipped,
saying so, when it is not importable), the same number of no-op jobs deferred with
`schedule_at=` spread over WITHIN seconds the same way (deferred one by one, 500 at a
time, with the workers running; it defers a few hundred a second, so its first due time
is 5 s plus the defers at 100 a second after the first defer, `--procrastinate-lead`),
drained by two `procrastinate worker` processes of the same concurrency and default
settings; a job's lateness is its `started` event minus its `scheduled_at`.

Idle schedules: a fresh database holding M stored schedules of `noop` (cron `0 0 1 1 *`,
none due while measured), one `taskloom worker` serving `noop`: the CPU time (utime +
stime from /proc/<pid>/stat) it uses at rest over IDLE seconds, starting 1 s after it said
it was ready, as a percent of one core; and the same for the PostgreSQL backends of its
connections (those it holds at both ends of the interval). Twice: as stored, when the
table has no planner statistics yet (until autovacuum, when it is on, analyzes it), and
after ANALYZE. The baseline is the same worker on a database with no schedule. Beside
each, the scans of the `schedules` table in the interval (from `pg_stat_user_tables`):
sequential, the rows they read, and by an index.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import queue_tasks
from _common import machine, report
from bench_drain import start_workers
from bench_queue_steady import create_schema
from queue_tasks import WorkerProcess, as_url, fresh_database, procrastinate_client, scalar

import taskloom
from taskloom.schedules.ticker import record_for
from taskloom.store import open_store

CHUNK = 500  # submits gathered at once
TIMER_WINDOW = 10.0  # seconds the bare-asyncio timers are spread over
GRACE = 120.0  # seconds after the window before the wait for the runs is given up
POLL = 0.25
SETTLE = 1.0  # seconds after a worker's ready line before its idle CPU is counted
TICKS = os.sysconf("SC_CLK_TCK")
# Submits a second to plan the first due time on (what 2 busy cores beat): taskloom
# submitted 3,900-6,100 delayed runs a second here, procrastinate deferred 100-400 jobs.
TASKLOOM_SUBMITS = 1_000
PROCRASTINATE_DEFERS = 100


@dataclass
class Lateness:
    """Lateness (start minus due time, seconds) of what finished, and what did not."""

    submitted: int
    samples: list[float] = field(default_factory=list)
    unfinished: int = 0
    submit_seconds: float = 0.0
    margin: float = 0.0  # last submit -> first due time
    notes: dict[str, str] = field(default_factory=dict)

    def at(self, q: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))]

    def describe(self, unit: str) -> dict[str, str]:
        ordered = sorted(self.samples)
        if not ordered:
            return {"lateness": f"none of {self.submitted:,} {unit} started", **self.notes}
        early = sum(1 for s in ordered if s < 0)
        within = sum(1 for s in ordered if 0 <= s < 1.0)
        figures = {
            "lateness": f"p50 {self.at(0.5) * 1e3:,.1f} ms, p99 {self.at(0.99) * 1e3:,.1f} ms,"
            f" max {ordered[-1] * 1e3:,.1f} ms, min {ordered[0] * 1e3:,.1f} ms",
            "started within 1 s": f"{within / self.submitted:.3%} ({within:,} of"
            f" {self.submitted:,})",
            "started before due": f"{early:,}",
        }
        if self.unfinished:
            figures["unfinished"] = f"{self.unfinished:,} {unit} when the wait was given up"
        return {**figures, **self.notes}


def spread(first: float, within: float, n: int) -> list[float]:
    return [first + within * i / n for i in range(n)]


def default_lead(n: int, rate: float) -> float:
    """Seconds from the first submit to the first due time: `n` submits at `rate` a second
    (a rate this machine beats when busy) and 5 s to spare."""
    return 5.0 + n / rate


# bare asyncio ----------------------------------------------------------------------------
async def asyncio_timers(n: int, window: float) -> Lateness:
    loop = asyncio.get_running_loop()
    samples: list[float] = []
    done = loop.create_future()

    def fire(when: float) -> None:
        samples.append(loop.time() - when)
        if len(samples) == n:
            done.set_result(None)

    for when in spread(loop.time() + 1.0, window, n):
        loop.call_at(when, fire, when)
    await done
    return Lateness(n, samples)


# taskloom --------------------------------------------------------------------------------
async def submit_delayed(url: str, n: int, within: float, lead: float) -> tuple[float, float]:
    """Submit the runs; returns (first due time, when the last submit returned)."""
    async with taskloom.Engine(url, worker=False, tasks=[queue_tasks]) as engine:
        first = time.time() + lead
        due = spread(first, within, n)
        for done in range(0, n, CHUNK):
            chunk = due[done : done + CHUNK]
            await asyncio.gather(*(engine.submit(queue_tasks.noop, {}, run_at=t) for t in chunk))
        return first, time.time()


def after_last_due(last_end: float | None, last_due: float | None) -> str:
    if last_end is None or last_due is None:
        return "none ended"
    return f"{last_end - last_due:.2f} s after the last due time"


def wait_finished(
    conninfo: str, unfinished: str, deadline: float, workers: Sequence[WorkerProcess]
) -> int:
    """Poll until no row of `unfinished` is left or time.time() passes `deadline`; how
    many are left."""
    count = f"SELECT count(*) FROM {unfinished}"
    exists = f"SELECT EXISTS (SELECT 1 FROM {unfinished})"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        while time.time() < deadline:
            row = conn.execute(exists).fetchone()
            assert row is not None
            if not row[0]:
                return 0
            if any(w.process.poll() is not None for w in workers):
                outputs = "\n".join(w.output() for w in workers)
                raise SystemExit(f"a worker ended while runs were due:\n{outputs}")
            time.sleep(POLL)
        left = conn.execute(count).fetchone()
    assert left is not None
    return int(left[0])


def lateness_taskloom(
    server: str, n: int, within: float, concurrency: int, lead: float
) -> Lateness:
    with fresh_database(server, "taskloom_schedules") as conninfo:
        url = as_url(conninfo)
        asyncio.run(create_schema(url))
        workers, _ = start_workers(
            lambda i: WorkerProcess.taskloom(url, concurrency=concurrency, name=f"delayed-{i}")
        )
        try:
            start = time.time()
            first, ended = asyncio.run(submit_delayed(url, n, within, lead))
            with psycopg.connect(conninfo, autocommit=True) as conn:
                due: dict[str, float | None] = {
                    str(run_id): at
                    for run_id, at in conn.execute("SELECT id, scheduled_at FROM runs")
                }
                read_at = time.time()
            left = wait_finished(
                conninfo,
                "runs WHERE status IN ('pending', 'running')",
                first + within + GRACE,
                workers,
            )
        finally:
            exits = [w.stop() for w in workers]
        with psycopg.connect(conninfo, autocommit=True) as conn:
            started = conn.execute(
                "SELECT id, started_at FROM runs WHERE started_at IS NOT NULL"
            ).fetchall()
            split = conn.execute(
                "SELECT count(*) FROM attempts GROUP BY worker_id ORDER BY 1 DESC"
            ).fetchall()
            found = conn.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall()
            (last_end,) = conn.execute("SELECT max(finished_at) FROM runs").fetchone() or (None,)
    lateness = [(at, due.get(str(run_id))) for run_id, at in started]
    missing = len([1 for _, when in lateness if when is None])
    result = Lateness(
        n,
        [float(at) - when for at, when in lateness if when is not None],
        unfinished=left,
        submit_seconds=ended - start,
        margin=first - ended,
    )
    result.notes = {
        "submitted": f"{n:,} in {ended - start:.2f} s ({n / (ended - start):,.0f}/s),"
        f" the last {first - ended:.2f} s before the first due time",
        "due times": f"read {first - read_at:.2f} s before the first was due;"
        f" {len(due):,} runs held one",
        "last end": after_last_due(last_end, max(filter(None, due.values()), default=None)),
        "statuses": ", ".join(f"{s} {c:,}" for s, c in sorted(found)),
        "runs per worker": " / ".join(f"{c:,}" for (c,) in split),
        "worker exit codes": ", ".join(str(code) for code in exits),
    }
    if missing:
        result.notes["without a due time"] = (
            f"{missing:,} runs had started before their due time was read: left out"
        )
    return result


# procrastinate ---------------------------------------------------------------------------
async def defer_scheduled(conninfo: str, n: int, within: float, lead: float) -> tuple[float, float]:
    app = procrastinate_client(conninfo)
    async with app.open_async():
        first = time.time() + lead
        due = spread(first, within, n)
        for done in range(0, n, CHUNK):
            chunk = due[done : done + CHUNK]
            await asyncio.gather(
                *(
                    app.configure_task(
                        "noop", schedule_at=datetime.fromtimestamp(t, UTC)
                    ).defer_async()
                    for t in chunk
                )
            )
        return first, time.time()


async def apply_procrastinate_schema(conninfo: str) -> None:
    app = procrastinate_client(conninfo)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()


def lateness_procrastinate(
    server: str, n: int, within: float, concurrency: int, lead: float
) -> Lateness:
    with fresh_database(server, "procrastinate_schedules") as conninfo:
        asyncio.run(apply_procrastinate_schema(conninfo))
        workers, _ = start_workers(
            lambda i: WorkerProcess.procrastinate(
                conninfo, concurrency=concurrency, name=f"delayed-{i}"
            )
        )
        try:
            start = time.time()
            first, ended = asyncio.run(defer_scheduled(conninfo, n, within, lead))
            left = wait_finished(
                conninfo,
                "procrastinate_jobs WHERE status IN ('todo', 'doing')",
                first + within + GRACE,
                workers,
            )
        finally:
            exits = [w.stop() for w in workers]
        with psycopg.connect(conninfo, autocommit=True) as conn:
            samples = [
                float(late)
                for (late,) in conn.execute(
                    "SELECT extract(epoch FROM e.at - j.scheduled_at) FROM procrastinate_jobs j"
                    " JOIN procrastinate_events e ON e.job_id = j.id AND e.type = 'started'"
                ).fetchall()
            ]
            found = conn.execute(
                "SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY status"
            ).fetchall()
            last_end, last_due = conn.execute(
                "SELECT (SELECT extract(epoch FROM max(at)) FROM procrastinate_events"
                " WHERE type = 'succeeded'),"
                " (SELECT extract(epoch FROM max(scheduled_at)) FROM procrastinate_jobs)"
            ).fetchone() or (None, None)
            last_end = None if last_end is None else float(last_end)
            last_due = None if last_due is None else float(last_due)
    result = Lateness(
        n, samples, unfinished=left, submit_seconds=ended - start, margin=first - ended
    )
    result.notes = {
        "deferred": f"{n:,} in {ended - start:.2f} s ({n / (ended - start):,.0f}/s),"
        f" the last {first - ended:.2f} s before the first due time",
        "last end": after_last_due(last_end, last_due),
        "statuses": ", ".join(f"{s} {c:,}" for s, c in sorted(found)),
        "worker exit codes": ", ".join(str(code) for code in exits),
    }
    return result


# idle schedules --------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process, in seconds (None: it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # fields 14 and 15 of proc(5)


def backends(conninfo: str) -> dict[int, float]:
    """The PostgreSQL backends connected to this database but the one asking, with their
    CPU seconds."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        pids = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        ).fetchall()
    found = {int(pid): cpu_seconds(int(pid)) for (pid,) in pids}
    return {pid: seconds for pid, seconds in found.items() if seconds is not None}


def schedule_scans(conninfo: str) -> tuple[int, int, int]:
    """Sequential scans, rows they read, and index scans of the `schedules` table so far
    (PostgreSQL's statistics, which a backend reports within a second or so)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT seq_scan, seq_tup_read, coalesce(idx_scan, 0) FROM pg_stat_user_tables"
            " WHERE relname = 'schedules'"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def store_schedules(url: str, count: int) -> float:
    """`count` stored schedules none of which is due soon; returns the seconds it took."""
    store = open_store(url)
    try:
        start = time.perf_counter()
        now = time.time()
        rule = taskloom.Cron("0 0 1 1 *")
        records = [
            record_for(f"idle-{i:05d}", "noop", rule, source="stored", now=now)
            for i in range(count)
        ]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(store.save_schedule, records))
        return time.perf_counter() - start
    finally:
        store.close()


@dataclass
class Idle:
    label: str
    worker_percent: float
    server_percent: float
    backends: int
    scans: tuple[int, int, int]  # of `schedules` in the interval: sequential, rows, index


def measure_idle(conninfo: str, label: str, seconds: float) -> Idle:
    """One `taskloom worker` on the database, its CPU and its backends' over `seconds`."""
    worker = WorkerProcess.taskloom(as_url(conninfo), concurrency=200, name="idle")
    try:
        worker.wait_ready()
        time.sleep(SETTLE)
        pid = worker.process.pid
        scans_before = schedule_scans(conninfo)
        before, server_before = cpu_seconds(pid), backends(conninfo)
        start = time.perf_counter()
        time.sleep(seconds)
        after, server_after = cpu_seconds(pid), backends(conninfo)
        elapsed = time.perf_counter() - start
        scans_after = schedule_scans(conninfo)
        if before is None or after is None or worker.process.poll() is not None:
            raise SystemExit(f"the worker ended:\n{worker.output()}")
    finally:
        worker.stop()
    both = server_before.keys() & server_after.keys()
    server_seconds = sum(server_after[p] - server_before[p] for p in both)
    scans = (
        scans_after[0] - scans_before[0],
        scans_after[1] - scans_before[1],
        scans_after[2] - scans_before[2],
    )
    return Idle(
        label,
        (after - before) / elapsed * 100,
        server_seconds / elapsed * 100,
        len(both),
        scans,
    )


def idle_workers(server: str, count: int, seconds: float) -> tuple[list[Idle], float]:
    """The idle worker with no schedule; with `count` as stored (the table has no
    statistics until autovacuum, if it is on, analyzes it); and again after ANALYZE.
    Returns them and the seconds storing the schedules took."""
    with fresh_database(server, "taskloom_idle") as conninfo:
        asyncio.run(create_schema(as_url(conninfo)))
        results = [measure_idle(conninfo, "0 schedules (baseline)", seconds)]
    with fresh_database(server, "taskloom_idle") as conninfo:
        store_seconds = store_schedules(as_url(conninfo), count)
        stored = int(scalar(conninfo, "SELECT count(*) FROM schedules"))
        if stored != count:
            raise SystemExit(f"{stored:,} schedules stored, {count:,} asked")
        results.append(measure_idle(conninfo, f"{count:,} schedules, as stored", seconds))
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("ANALYZE")
        results.append(measure_idle(conninfo, f"{count:,} schedules, after ANALYZE", seconds))
    return results, store_seconds


def main(
    server: str,
    n: int,
    within: float,
    concurrency: int,
    count: int,
    idle_seconds: float,
    lead: float | None,
    procrastinate_lead: float | None,
) -> None:
    lead = default_lead(n, TASKLOOM_SUBMITS) if lead is None else lead
    if procrastinate_lead is None:
        procrastinate_lead = default_lead(n, PROCRASTINATE_DEFERS)
    figures = {
        "machine": machine(),
        "load average": "{:.2f} {:.2f} {:.2f} (1, 5, 15 min) at the start".format(*os.getloadavg()),
        "workers": f"2 processes, concurrency {concurrency} each",
        "due times": f"{n:,} spread evenly over {within:g} s, the first {lead:g} s"
        f" (procrastinate {procrastinate_lead:g} s) after the first submit",
    }

    bare = asyncio.run(asyncio_timers(n, TIMER_WINDOW))
    figures.update(
        {
            f"bare asyncio: {k}": v
            for k, v in bare.describe("timers").items()
            if k in ("lateness", "started before due")
        }
    )
    figures["bare asyncio: timers"] = f"{n:,} loop.call_at spread over {TIMER_WINDOW:g} s"

    ours = lateness_taskloom(server, n, within, concurrency, lead)
    figures.update({f"taskloom: {k}": v for k, v in ours.describe("runs").items()})
    ratios = [f"{ours.at(0.99) / bare.at(0.99):,.0f}x bare asyncio"] if ours.samples else []

    try:
        import procrastinate  # noqa: F401
    except ImportError:
        figures["procrastinate"] = (
            "skipped: not importable (pip install procrastinate==3.10.0 to compare)"
        )
    else:
        theirs = lateness_procrastinate(server, n, within, concurrency, procrastinate_lead)
        figures.update({f"procrastinate: {k}": v for k, v in theirs.describe("jobs").items()})
        if ours.samples and theirs.samples:
            ratios.append(f"{ours.at(0.99) / theirs.at(0.99):.3f}x procrastinate")
    if ratios:
        figures["ratio of p99, taskloom / baseline"] = ", ".join(ratios)
    report(
        f"{n:,} delayed no-op runs due over {within:g} s, 2 workers on PostgreSQL"
        " (target p99 lateness < 1 s, none early)",
        figures,
    )

    idle = {
        "machine": machine(),
        "load average": "{:.2f} {:.2f} {:.2f} (1, 5, 15 min) at the start".format(*os.getloadavg()),
        "measured": f"{idle_seconds:g} s from {SETTLE:g} s after the worker was ready"
        f" (/proc counts in 1/{TICKS} s)",
        "server autovacuum": str(scalar(server, "SHOW autovacuum")),
    }
    results, store_seconds = idle_workers(server, count, idle_seconds)
    idle["schedules stored"] = f"{count:,} in {store_seconds:.1f} s (save_schedule, 8 threads)"
    for result in results:
        idle[f"{result.label}: worker"] = f"{result.worker_percent:.2f} % of a core"
        idle[f"{result.label}: its backends"] = (
            f"{result.server_percent:.2f} % of a core ({result.backends} connections)"
        )
        sequential, rows, index = result.scans
        idle[f"{result.label}: scans of schedules"] = (
            f"{sequential:,} sequential ({rows:,} rows read), {index:,} by an index"
        )
    base = results[0]
    for result in results[1:]:
        idle[f"difference, {result.label}"] = (
            f"worker {result.worker_percent - base.worker_percent:+.2f} points,"
            f" its backends {result.server_percent - base.server_percent:+.2f} points"
        )
    report(f"an idle worker with {count:,} stored schedules none of which is due", idle)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--within", type=float, default=60.0, help="seconds the due times span")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument(
        "--lead",
        type=float,
        default=None,
        help="seconds from the first submit to the first due time"
        f" (default: 5 + runs/{TASKLOOM_SUBMITS:,})",
    )
    parser.add_argument(
        "--procrastinate-lead",
        type=float,
        default=None,
        help=f"the same for the procrastinate jobs (default: 5 + runs/{PROCRASTINATE_DEFERS:,})",
    )
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    main(
        args.server,
        args.runs,
        args.within,
        args.concurrency,
        args.schedules,
        args.idle_seconds,
        args.lead,
        args.procrastinate_lead,
    )
