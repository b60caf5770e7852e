"""Retention as people use it: `taskloom db prune` and `taskloom db stats` as real
processes on a SQLite file and on PostgreSQL, `--retention` in a real `taskloom worker`,
and the PostgreSQL lock that lets one process prune at a time."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from support import PACKAGE_ROOT, until, wait_until
from taskloom.observability.retention import (
    AutoRetention,
    PruneReport,
    RetentionPolicy,
    prune,
)
from taskloom.runs import Attempt, LogLine, Run, RunStatus, new_run_id
from taskloom.store import SqlStore, WriteBatch
from taskloom.store.retention import RETENTION_LOCK

pytestmark = pytest.mark.timeout(90)

DAY = 86400.0
TASKS = "import taskloom\n\n\n@taskloom.task\ndef noop() -> None:\n    return None\n"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    env["NO_COLOR"] = "1"
    return env


def taskloom(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskloom", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**_env(), **(env or {})},
    )


def run(
    status: RunStatus = RunStatus.COMPLETED,
    *,
    days_ago: float = 40,
    parent: Run | None = None,
    task: str = "elsewhere",
) -> Run:
    """A run of a task no worker here serves, created and (unless unfinished) finished
    `days_ago` days ago."""
    at = time.time() - days_ago * DAY
    done = status.is_terminal
    return Run(
        id=new_run_id(),
        task=task,
        inputs={},
        status=status,
        created_at=at - 1,
        started_at=at - 1 if status != RunStatus.PENDING else None,
        finished_at=at if done else None,
        parent_id=None if parent is None else parent.id,
    )


def fill(url: str, *runs: Run) -> None:
    with SqlStore(url) as store:
        store.write(
            WriteBatch(
                new_runs=list(runs),
                new_attempts=[
                    Attempt(r.id, 1, r.created_at, r.finished_at, "completed") for r in runs
                ],
                logs=[
                    LogLine(r.id, 1, r.created_at, "INFO", f"{n}") for r in runs for n in range(2)
                ],
            )
        )


def stored(url: str) -> set[str]:
    with SqlStore(url) as store:
        return {r.id for r in store.list_runs(limit=10_000)}


def test_db_prune_removes_old_finished_families_and_says_so(database_url: str) -> None:
    workflow = run(task="workflow:report")
    steps = [run(parent=workflow), run(RunStatus.SKIPPED, parent=workflow)]
    failed = run(RunStatus.FAILED)
    waiting = run(RunStatus.CANCELLED, task="workflow:waiting")
    waiting_steps = [run(parent=waiting), run(RunStatus.RUNNING, parent=waiting)]
    recent = run(days_ago=1)
    pending = run(RunStatus.PENDING)
    fill(database_url, workflow, *steps, failed, waiting, *waiting_steps, recent, pending)

    done = taskloom("db", "prune", "--older-than", "30d", "--db", database_url)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("removed 4 runs (4 attempts, 8 log lines) finished before ")
    assert "in 2 batches" in lines[0]  # the completed workflow, then the failed run
    assert lines[1] == "  by the status of each family's first run: completed 3, failed 1"
    assert "kept 1 family old enough but with a run unfinished" in lines[2]
    assert stored(database_url) == {
        waiting.id,
        *(s.id for s in waiting_steps),
        recent.id,
        pending.id,
    }


def test_db_prune_dry_run_removes_nothing(database_url: str) -> None:
    runs = [run() for _ in range(5)]
    fill(database_url, *runs)

    done = taskloom("db", "prune", "--older-than", "30d", "--dry-run", "--db", database_url)

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("would remove 5 runs (5 attempts, 10 log lines)")
    assert stored(database_url) == {r.id for r in runs}


def test_db_prune_works_in_batches_of_the_size_given(database_url: str) -> None:
    fill(database_url, *(run() for _ in range(25)))

    done = taskloom(
        "db", "prune", "--older-than", "30d", "--batch-size", "10", "--json", "--db", database_url
    )

    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    assert (report["runs"], report["batches"], report["dry_run"]) == (25, 3, False)
    assert report["cutoff_at"].endswith("Z")
    assert stored(database_url) == set()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--older-than", "30 days"],
            "--older-than: '30 days' is not a duration (expected e.g. 90, 90s, 10m, 1h30m or 2d)",
        ),
        (["--older-than", "0d"], "--older-than: '0d' is no time at all"),
        (
            ["--older-than", "30d", "--status", "completed,running"],
            "--status: 'running' cannot be pruned (a pending or running run is never pruned); "
            "expected some of completed, failed, cancelled, skipped",
        ),
        (["--older-than", "30d", "--status", "done"], "--status: 'done' cannot be pruned"),
        (["--older-than", "30d", "--status", ","], "--status: no status given"),
    ],
)
def test_db_prune_refuses_bad_options_with_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    database = tmp_path / "runs.db"
    fill(str(database), run())

    done = taskloom("db", "prune", *args, "--db", str(database))

    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {message}"), done.stderr
    assert len(stored(str(database))) == 1


def test_db_prune_and_stats_refuse_what_is_no_database(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    for command in (["prune", "--older-than", "30d"], ["stats"]):
        done = taskloom("db", *command, "--db", str(missing))
        assert done.returncode == 2
        assert done.stderr == f"error: --db: there is no database file at {missing}\n"
        assert not missing.exists()
        memory = taskloom("db", *command, "--db", "memory://")
        assert memory.returncode == 2
        assert "memory:// keeps nothing between commands" in memory.stderr
    too_big = taskloom("db", "prune", "--older-than", "30d", "--batch-size", "0")
    assert too_big.returncode == 2
    assert "--batch-size" in too_big.stderr


def test_db_stats_says_rows_sizes_and_the_oldest_runs(database_url: str) -> None:
    oldest = run(RunStatus.PENDING, days_ago=50)
    fill(database_url, oldest, run(days_ago=40), run(days_ago=2))

    done = taskloom("db", "stats", "--json", "--db", database_url)

    assert done.returncode == 0, done.stderr
    stats: dict[str, Any] = json.loads(done.stdout)
    rows = {t["name"]: t["rows"] for t in stats["tables"]}
    assert (rows["runs"], rows["attempts"], rows["log_lines"]) == (3, 3, 6)
    assert stats["runs_by_status"] == {"completed": 2, "pending": 1}
    assert stats["oldest_run_at"] == pytest.approx(oldest.created_at)
    assert stats["oldest_finished_at"] == pytest.approx(time.time() - 40 * DAY, abs=60)
    assert stats["size_bytes"] > 0
    if stats["backend"] == "sqlite":
        assert set(stats["files"]) >= {"runs.db", "runs.db-wal"}
    assert all(t["bytes"] > 0 for t in stats["tables"] if t["name"] == "runs")

    text = taskloom("db", "stats", "--db", database_url)
    assert text.returncode == 0, text.stderr
    assert "oldest finished run" in text.stdout
    assert "(completed 2, pending 1)" in text.stdout


def test_a_worker_with_retention_prunes_old_runs_in_the_background(
    database_url: str, tmp_path: Path
) -> None:
    workflow = run(task="workflow:old")
    step = run(parent=workflow)
    recent = run(days_ago=10)
    pending = run(RunStatus.PENDING)  # of a task this worker does not serve
    fill(database_url, workflow, step, recent, pending)
    (tmp_path / "tasks.py").write_text(TASKS, encoding="utf-8")

    log = tmp_path / "worker.log"
    with log.open("w") as stderr:
        worker = subprocess.Popen(
            [sys.executable, "-m", "taskloom", "worker", "tasks.py", "--db", database_url, "-v"],
            cwd=tmp_path,
            env={**_env(), "TASKLOOM_RETENTION": "30d"},
            stderr=stderr,
            text=True,
        )
    try:
        wait_until(
            lambda: stored(database_url) == {recent.id, pending.id},
            timeout=40,
            interval=0.2,
            what=lambda: f"the old workflow pruned (left: {len(stored(database_url))} runs)",
        )
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    err = log.read_text()
    assert code == 0, err
    assert "retention: removed 2 runs (2 attempts, 4 log lines) finished before" in err


async def test_background_retention_stops_between_two_batches(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    fill(url, *(run() for _ in range(400)))
    with SqlStore(url) as store:
        retention = AutoRetention(
            store, RetentionPolicy(older_than=30 * DAY, batch_size=5), first_delay=0.0
        )
        retention.start()

        async def some_gone() -> bool:
            return len(await asyncio.to_thread(stored, url)) <= 380

        await until(some_gone)
        began = time.monotonic()
        await retention.stop()
        stopped_in = time.monotonic() - began
    left = len(stored(url))
    assert 0 < left <= 380  # the pass ended before the end, between two batches
    assert left % 5 == 0
    assert stopped_in < 2.0
    assert retention.last is not None
    assert retention.last.stopped


def test_serve_and_worker_refuse_a_bad_retention_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text(TASKS, encoding="utf-8")
    tasks = str(tmp_path / "tasks.py")
    worker = taskloom(
        "worker", tasks, "--db", str(tmp_path / "r.db"), env={"TASKLOOM_RETENTION": "soon"}
    )
    assert worker.returncode == 2
    assert worker.stderr.startswith("error: --retention: 'soon' is not a duration"), worker.stderr
    serve = taskloom("serve", tasks, "--db", str(tmp_path / "r.db"), "--retention", "0m")
    assert serve.returncode == 2
    assert serve.stderr.startswith("error: --retention: '0m' is no time at all"), serve.stderr


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.mark.postgres
def test_on_postgresql_one_process_prunes_at_a_time(postgres_database: str) -> None:
    fill(postgres_database, *(run() for _ in range(3)))
    policy = RetentionPolicy(older_than=30 * DAY)
    with SqlStore(postgres_database) as store, psycopg.connect(_libpq(postgres_database)) as other:
        # Another process's batch holds the prune's lock.
        other.execute("SELECT pg_advisory_xact_lock(%s)", (RETENTION_LOCK,))

        given_up = prune(store, policy, wait=False)
        assert (given_up.stopped, given_up.runs) == (True, 0)

        reports: list[PruneReport] = []
        waiting = threading.Thread(target=lambda: reports.append(prune(store, policy)))
        waiting.start()
        wait_until(
            lambda: (
                other.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    " AND database = (SELECT oid FROM pg_database"
                    " WHERE datname = current_database())"
                ).fetchone()
                == (1,)
            ),
            what="a prune waiting for the lock",
        )
        assert stored(postgres_database) != set()
        other.commit()  # the other batch ends: the lock is free
        waiting.join(timeout=30)
    assert [(r.stopped, r.runs) for r in reports] == [(False, 3)]
    assert stored(postgres_database) == set()
