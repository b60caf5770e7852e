"""Pruning 1,000,000 runs, then listing what is left through the HTTP API.

    python benchmarks/bench_prune.py [--runs 1000000] [--requests 500] [--batch-size 1000]
                                     [--database URL]

A SQLite file (or, with `--database`, an empty PostgreSQL database) is filled with bulk
inserts of rows in the store's format: runs created evenly over the last 90 days, each
finished one with an attempt and one in ten with two log lines. One in twenty single runs
is pending or running; one run in ten belongs to a workflow of ten (a workflow run, eight
steps, one of them a Fractal-like task with a child run): most of them finished, one in
ten cancelled with a step still running, one in ten still running with steps pending.

Then `prune()` (what `taskloom db prune --older-than 30d` calls) runs in batches of
1,000 while another thread commits a run every 10 ms, as a worker would: the prune's
time, its batches (each one transaction: p50, p99, max) and the writer's commit latency
are printed. What is left must be exactly what should be: every unfinished run, every
run of a family with one, every run finished within the 30 days, and no attempt or log
line of a run that is gone.

Last, `GET /api/runs` (the newest page of 50, a status's and a task's) is timed through
a real `taskloom serve --no-worker` on the pruned database, and on a fresh database into
which the same remaining rows were copied: p50 and p99 of each, and their ratio (pruned /
fresh); the two servers run at once and their requests take turns. On SQLite the sizes
of both files are printed, and the pruned file is measured again after `VACUUM`; on
PostgreSQL the pruned database again after `VACUUM (ANALYZE)`, what autovacuum does after
a mass delete.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from _common import machine, report
from sqlalchemy.engine import make_url

from taskloom.observability.retention import DEFAULT_BATCH_SIZE, RetentionPolicy, prune
from taskloom.runs import Run, new_run_id
from taskloom.store import DatabaseStats, PruneBatch, SqlStore, WriteBatch, open_store
from taskloom.store.schema import ATTEMPT_COLUMNS, LOG_COLUMNS, RUN_COLUMNS

DAY = 86400.0
SPAN = 90 * DAY
KEEP = 30 * DAY
TASKS = [f"bench.task_{i}" for i in range(10)]
PAGE = 50
SERVED = "import taskloom\n\n\n@taskloom.task\ndef served_noop() -> None:\n    return None\n"
QUERIES: dict[str, dict[str, Any]] = {
    "newest runs": {},
    "status failed": {"status": "failed"},
    "task bench.task_3": {"task": "bench.task_3"},
}


@dataclass
class Filled:
    """What was written, and what a prune at `now` must leave."""

    now: float
    runs: int = 0
    attempts: int = 0
    log_lines: int = 0
    unfinished: set[str] = field(default_factory=set)
    kept: set[str] = field(default_factory=set)
    seconds: float = 0.0


class Rows:
    """Rows in the store's format, written in chunks through `sink`."""

    def __init__(self, sink: Callable[[str, list[tuple[Any, ...]]], None]) -> None:
        self.sink = sink
        self.pending: dict[str, list[tuple[Any, ...]]] = {"runs": [], "attempts": [], "logs": []}

    def add(self, kind: str, row: tuple[Any, ...]) -> None:
        rows = self.pending[kind]
        rows.append(row)
        if len(rows) >= 20_000:
            self.flush(kind)

    def flush(self, kind: str | None = None) -> None:
        for name in [kind] if kind else list(self.pending):
            if self.pending[name]:
                self.sink(name, self.pending[name])
                self.pending[name] = []


def generate(n: int, rows: Rows, now: float) -> Filled:
    """`n` runs in the store's format, from 90 days ago to now, and what must stay."""
    rng = random.Random(11)
    filled = Filled(now=now)
    cutoff = now - KEEP
    step = SPAN / n
    created = now - SPAN
    i = 0

    def run(status: str, task: str, parent: str | None, at: float, ended: float | None) -> str:
        run_id = new_run_id()
        values = {
            "id": run_id,
            "task": task,
            "status": status,
            "priority": 0,
            "inputs": "{}",
            "result": "1" if status == "completed" else None,
            "error": '{"type": "RuntimeError", "message": "no"}' if status == "failed" else None,
            "attempts": 0 if status == "pending" else 1,
            "max_attempts": 1,
            "parent_id": parent,
            "created_at": at,
            "started_at": None if status == "pending" else at,
            "finished_at": ended,
            "cancel_requested": False,
            "queue": "default",
            "lease": 0,
        }
        rows.add("runs", tuple(values.get(c) for c in RUN_COLUMNS))
        filled.runs += 1
        if status != "pending":
            attempt = {
                "run_id": run_id,
                "number": 1,
                "started_at": at,
                "finished_at": ended,
                "status": "running" if ended is None else status,
            }
            rows.add("attempts", tuple(attempt.get(c) for c in ATTEMPT_COLUMNS))
            filled.attempts += 1
        if rng.random() < 0.1:
            for number in range(2):
                line = {"run_id": run_id, "attempt": 1, "created_at": at, "level": "INFO"}
                line["message"] = f"line {number} of {run_id}"
                rows.add("logs", tuple(line.get(c) for c in LOG_COLUMNS))
                filled.log_lines += 1
        if ended is None:
            filled.unfinished.add(run_id)
        return run_id

    while i < n:
        at = created + i * step
        if i % 100 == 0 and i + 10 <= n:
            kind = rng.random()
            head_status = "completed" if kind < 0.8 else ("cancelled" if kind < 0.9 else "running")
            members: list[tuple[str, float | None]] = []
            head_end = None if head_status == "running" else at + 9 * step + 1
            head = run(head_status, "workflow:bench", None, at, head_end)
            members.append((head, head_end))
            fractal = None
            for s in range(8):
                t = at + (s + 1) * step
                if head_status == "completed":
                    status, ended = "completed", t + 0.5
                elif head_status == "cancelled":
                    status, ended = ("running", None) if s == 7 else ("completed", t + 0.5)
                else:
                    status, ended = ("pending", None) if s >= 4 else ("completed", t + 0.5)
                step_id = run(status, TASKS[s], head, t, ended)
                members.append((step_id, ended))
                if s == 0:
                    fractal = (step_id, t, ended)
            assert fractal is not None
            child_end = None if fractal[2] is None else fractal[1] + 0.2
            child = run(
                "pending" if child_end is None else "completed",
                TASKS[9],
                fractal[0],
                fractal[1] + 0.1,
                child_end,
            )
            members.append((child, child_end))
            removable = all(e is not None and e < cutoff for _, e in members)
            if not removable:
                filled.kept.update(m for m, _ in members)
            i += 10
            continue
        draw = rng.random()
        if draw < 0.03:
            status, ended = "pending", None
        elif draw < 0.05:
            status, ended = "running", None
        elif draw < 0.12:
            status, ended = "failed", at + 0.5
        elif draw < 0.15:
            status, ended = "cancelled", at + 0.5
        else:
            status, ended = "completed", at + 0.5
        run_id = run(status, TASKS[i % len(TASKS)], None, at, ended)
        if ended is None or ended >= cutoff:
            filled.kept.add(run_id)
        i += 1
    rows.flush()
    return filled


def _marks(columns: Sequence[str], style: str) -> str:
    return ", ".join("?" if style == "qmark" else "%s" for _ in columns)


TABLES = {"runs": RUN_COLUMNS, "attempts": ATTEMPT_COLUMNS, "logs": LOG_COLUMNS}


def fill_sqlite(path: Path, n: int, now: float) -> Filled:
    open_store(f"sqlite:///{path}").close()  # created and migrated
    began = time.perf_counter()
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA cache_size = -262144")
    cursor = raw.cursor()

    def sink(kind: str, rows: list[tuple[Any, ...]]) -> None:
        table = "log_lines" if kind == "logs" else kind
        columns = TABLES[kind]
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({_marks(columns, 'qmark')})"
        cursor.executemany(sql, rows)

    filled = generate(n, Rows(sink), now)
    raw.commit()
    raw.close()
    filled.seconds = time.perf_counter() - began
    return filled


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def fill_postgres(url: str, n: int, now: float) -> Filled:
    open_store(url).close()
    began = time.perf_counter()
    with psycopg.connect(_libpq(url)) as conn:

        def sink(kind: str, rows: list[tuple[Any, ...]]) -> None:
            table = "log_lines" if kind == "logs" else kind
            columns = [c for c in TABLES[kind] if not (kind == "logs" and c == "id")]
            index = [TABLES[kind].index(c) for c in columns]
            with conn.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([row[k] for k in index])

        filled = generate(n, Rows(sink), now)
        conn.commit()
        conn.execute("ANALYZE")
    filled.seconds = time.perf_counter() - began
    return filled


class Writer(threading.Thread):
    """Commits one new run every 10 ms through the store, as a worker's writer would,
    and records how long each commit took."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.store = SqlStore(url)
        self.store.open()
        self.latencies: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.01):
            began = time.perf_counter()
            run = Run(id=new_run_id(), task="bench.writer", inputs={}, created_at=time.time())
            self.store.write(WriteBatch(new_runs=[run]))
            self.latencies.append(time.perf_counter() - began)

    def close(self) -> list[float]:
        self.stop.set()
        self.join(timeout=30)
        self.store.close()
        return self.latencies


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def ms(samples: list[float]) -> str:
    if not samples:
        return "-"
    return (
        f"p50 {statistics.median(samples) * 1e3:7.2f} ms, p99 {pct(samples, 0.99) * 1e3:7.2f} ms,"
        f" max {max(samples) * 1e3:7.2f} ms"
    )


class TimedStore:
    """A store whose batches of a prune are timed, each one transaction."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.batches: list[float] = []

    def prune_runs(self, **options: Any) -> PruneBatch | None:
        began = time.perf_counter()
        batch = self.store.prune_runs(**options)
        if batch is not None and batch.runs:
            self.batches.append(time.perf_counter() - began)
        return batch

    def database_stats(self) -> DatabaseStats:
        return self.store.database_stats()


def run_prune(url: str, filled: Filled, figures: dict[str, str], batch_size: int) -> None:
    writer = Writer(url)
    writer.start()
    with SqlStore(url) as store:
        timed = TimedStore(store)
        policy = RetentionPolicy(older_than=KEEP, batch_size=batch_size)
        result = prune(timed, policy, now=filled.now)
    latencies = writer.close()
    figures["prune"] = (
        f"{result.runs:,} runs, {result.attempts:,} attempts, {result.log_lines:,} log lines "
        f"removed in {result.seconds:.1f} s ({result.runs / result.seconds:,.0f} runs/s), "
        f"{result.batches:,} batches; {result.kept:,} old families kept"
    )
    figures[f"one batch of {batch_size:,} (a transaction)"] = ms(timed.batches)
    figures["a writer's commits meanwhile"] = f"{len(latencies):,} commits, {ms(latencies)}"


def check(url: str, filled: Filled, figures: dict[str, str]) -> None:
    """What is left is exactly what should be (the writer's runs aside)."""
    with store_connection(url) as conn:
        left = {row[0] for row in conn.execute("SELECT id FROM runs WHERE task != 'bench.writer'")}
        orphans = conn.execute(
            "SELECT (SELECT count(*) FROM attempts a WHERE NOT EXISTS "
            "(SELECT 1 FROM runs r WHERE r.id = a.run_id)) + (SELECT count(*) FROM log_lines g "
            "WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = g.run_id))"
        ).fetchone()
    missing_unfinished = len(filled.unfinished - left)
    wrong = len(left ^ filled.kept)
    figures["left"] = (
        f"{len(left):,} runs ({len(filled.unfinished):,} unfinished: {missing_unfinished} "
        f"missing); {wrong} differ from what should be left; "
        f"{orphans[0] if orphans else '?'} attempts or log lines of removed runs"
    )
    if missing_unfinished or wrong or (orphans and orphans[0]):
        raise SystemExit("the prune left something else than it should: " + figures["left"])


@contextmanager
def store_connection(url: str) -> Iterator[Any]:
    if url.startswith("sqlite"):
        path = make_url(url).database
        assert path is not None
        conn: Any = sqlite3.connect(path)
    else:
        conn = psycopg.connect(_libpq(url))
    try:
        yield conn
    finally:
        conn.close()


def copy_remaining(source: str, target: str) -> None:
    """The rows left in `source` into the migrated, empty `target`, oldest first."""
    open_store(target).close()
    with store_connection(source) as src, store_connection(target) as dst:
        postgres = not target.startswith("sqlite")
        for table, columns in (
            ("runs", RUN_COLUMNS),
            ("attempts", ATTEMPT_COLUMNS),
            ("log_lines", [c for c in LOG_COLUMNS if c != "id"]),
        ):
            order = (
                "created_at"
                if table == "runs"
                else ("run_id, number" if table == "attempts" else "id")
            )
            read = src.cursor()
            read.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}")
            sql = (
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                f"({_marks(columns, 'format' if postgres else 'qmark')})"
            )
            while rows := read.fetchmany(20_000):
                dst.cursor().executemany(sql, rows)
        if postgres:
            dst.commit()
            dst.execute("ANALYZE")
        else:
            dst.commit()


def serve(folder: Path, url: str) -> tuple[subprocess.Popen[str], str]:
    """`taskloom serve served.py --no-worker --port 0` on `url`, and the URL it serves."""
    process = subprocess.Popen(
        [sys.executable, "-m", "taskloom", "serve", "served.py", "--no-worker", "--port", "0"],
        cwd=folder,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TASKLOOM_DATABASE_URL": url},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        match = re.search(r"serving (http://\S+)", line)
        if match:
            return process, match.group(1)
    raise SystemExit(f"taskloom serve ended with {process.wait()}")


def listings(
    folder: Path, urls: dict[str, str], requests: int
) -> dict[str, dict[str, list[float]]]:
    """Each listing timed on a server per database, the servers' requests taking turns
    (so a busy moment of the machine falls on both alike)."""
    servers = {name: serve(folder, url) for name, url in urls.items()}
    found: dict[str, dict[str, list[float]]] = {name: {} for name in urls}
    try:
        clients = {
            name: httpx.Client(base_url=base + "/api", timeout=30)
            for name, (_, base) in servers.items()
        }
        for label, params in QUERIES.items():
            for name, http in clients.items():
                found[name][label] = []
                for _ in range(10):  # warm up
                    http.get("/runs", params={**params, "limit": PAGE})
            for _ in range(requests):
                for name, http in clients.items():
                    began = time.perf_counter()
                    response = http.get("/runs", params={**params, "limit": PAGE})
                    found[name][label].append(time.perf_counter() - began)
                    assert response.status_code == 200, response.text
                    assert len(response.json()["runs"]) == PAGE
        for http in clients.values():
            http.close()
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=30)
    return found


def compare(figures: dict[str, str], found: dict[str, dict[str, list[float]]], name: str) -> float:
    """The figures of `name` beside `fresh`; the worst ratio of their p99s."""
    worst = 0.0
    for label in QUERIES:
        pruned, fresh = found[name][label], found["fresh"][label]
        ratio = pct(pruned, 0.99) / pct(fresh, 0.99)
        worst = max(worst, ratio)
        figures[f"{label}: {name}"] = ms(pruned)
        figures[f"{label}: fresh, beside {name}"] = ms(fresh) + f"  (p99 ratio {ratio:.2f})"
    return worst


def _size(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        page = conn.execute("PRAGMA page_size").fetchone()[0]
    total = sum(os.stat(p).st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    return f"{total / 2**20:,.0f} MiB ({free * page / 2**20:,.0f} MiB of it free pages)"


def main(n: int, requests: int, database: str | None, batch_size: int) -> None:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    figures = {"machine": machine(), "load average at the start": load}
    now = time.time()
    with tempfile.TemporaryDirectory(prefix="taskloom-bench-") as name:
        folder = Path(name)
        (folder / "served.py").write_text(SERVED, encoding="utf-8")
        if database is None:
            path = folder / "pruned.db"
            url = f"sqlite:///{path}"
            filled = fill_sqlite(path, n, now)
        else:
            url = database
            filled = fill_postgres(url, n, now)
        figures["filled"] = (
            f"{filled.runs:,} runs, {filled.attempts:,} attempts, {filled.log_lines:,} log lines "
            f"in {filled.seconds:.1f} s; {len(filled.unfinished):,} unfinished; "
            f"{len(filled.kept):,} to keep"
        )
        if database is None:
            figures["file before the prune"] = _size(path)
        run_prune(url, filled, figures, batch_size)
        check(url, filled, figures)
        fresh_name = f"{make_url(url).database}_fresh"
        if database is None:
            fresh_url = f"sqlite:///{folder / 'fresh.db'}"
        else:
            fresh_url = make_url(database).set(database=fresh_name).render_as_string(False)
            with psycopg.connect(_libpq(database), autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{fresh_name}"')
                admin.execute(f'CREATE DATABASE "{fresh_name}"')
        try:
            copy_remaining(url, fresh_url)
            found = listings(folder, {"pruned": url, "fresh": fresh_url}, requests)
            worst = compare(figures, found, "pruned")
            if database is None:
                figures["pruned file"] = _size(path)
                figures["fresh file"] = _size(folder / "fresh.db")
                began = time.perf_counter()
                with sqlite3.connect(path) as conn:
                    conn.execute("VACUUM")
                figures["VACUUM of the pruned file"] = (
                    f"{time.perf_counter() - began:.1f} s, then {_size(path)}"
                )
                found = listings(folder, {"vacuumed": url, "fresh": fresh_url}, requests)
                vacuumed = compare(figures, found, "vacuumed")
                figures["worst p99 ratio (vacuumed / fresh)"] = f"{vacuumed:.2f}"
            else:
                # What autovacuum does after a mass delete (the test server may run
                # without it): dead rows made reusable, the planner's statistics renewed.
                began = time.perf_counter()
                with psycopg.connect(_libpq(database), autocommit=True) as conn:
                    conn.execute("VACUUM (ANALYZE) runs, attempts, log_lines")
                figures["VACUUM (ANALYZE) of the pruned database"] = (
                    f"{time.perf_counter() - began:.1f} s"
                )
                found = listings(folder, {"vacuumed": url, "fresh": fresh_url}, requests)
                vacuumed = compare(figures, found, "vacuumed")
                figures["worst p99 ratio (vacuumed / fresh)"] = f"{vacuumed:.2f}"
        finally:
            if database is not None:
                with psycopg.connect(_libpq(database), autocommit=True) as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{fresh_name}" WITH (FORCE)')
        figures["worst p99 ratio (pruned / fresh)"] = f"{worst:.2f} (target <= 1, within noise)"
    report(f"pruning {n:,} runs, then GET /api/runs on what is left", figures)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--database", help="an empty PostgreSQL database (default: a SQLite file)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    args = parser.parse_args()
    main(args.runs, args.requests, args.database, args.batch_size)
