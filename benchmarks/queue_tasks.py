"""The no-op task the queue benchmarks' worker processes execute, its procrastinate twin,
and what `bench_drain.py` and `bench_queue_steady.py` share: a fresh PostgreSQL database
per run, and worker processes started and stopped from the script.

`taskloom worker benchmarks/queue_tasks.py` serves `noop`; `procrastinate
--app=queue_tasks.procrastinate_app worker` (with this folder on `PYTHONPATH` and the
database in the `PG*` variables of libpq) serves its twin. procrastinate is optional: without
it, `procrastinate_app` is None.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

import taskloom

HERE = Path(__file__).resolve().parent
READY = re.compile(r"worker (\S+) ready")


@taskloom.task
async def noop() -> None:
    return None


try:
    import procrastinate
except ImportError:
    procrastinate_app = None
else:
    # No connection string: libpq reads PGHOST, PGDATABASE... from the environment, so
    # the worker processes find the benchmark's fresh database.
    procrastinate_app = procrastinate.App(connector=procrastinate.PsycopgConnector())

    @procrastinate_app.task(name="noop")
    async def procrastinate_noop() -> None:
        return None


def procrastinate_client(conninfo: str) -> Any:
    """A procrastinate App on `conninfo` that defers jobs by task name (made here, since
    procrastinate warns about an App made in a script's `__main__`)."""
    import procrastinate

    return procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo))


@contextlib.contextmanager
def fresh_database(server: str, prefix: str) -> Iterator[str]:
    """A new, empty database on the PostgreSQL `server` (a URL); dropped on exit."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield psycopg.conninfo.make_conninfo(server, dbname=name)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def as_url(conninfo: str) -> str:
    """`postgresql://user@host:port/dbname` for a libpq connection string."""
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    user = params.get("user", "postgres")
    host, port = params.get("host", "127.0.0.1"), params.get("port", 5432)
    return f"postgresql://{user}@{host}:{port}/{params['dbname']}"


def scalar(conninfo: str, sql: str) -> Any:
    """The one value `sql` reads."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return row[0]


class WorkerProcess:
    """One worker process; a thread reads its stderr and notes when `ready` matches."""

    def __init__(
        self, argv: list[str], *, ready: re.Pattern[str], env: dict[str, str] | None = None
    ) -> None:
        environment = {k: v for k, v in os.environ.items() if k != "TASKLOOM_DATABASE_URL"}
        environment.update(env or {}, NO_COLOR="1")
        self.process = subprocess.Popen(
            argv,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.ready_at: float | None = None  # time.time() when the ready line was read
        self._ready_pattern = ready
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @classmethod
    def taskloom(cls, url: str, *, concurrency: int, name: str) -> WorkerProcess:
        argv = [sys.executable, "-m", "taskloom", "worker", str(HERE / "queue_tasks.py")]
        argv += ["--db", url, "--concurrency", str(concurrency), "--name", name]
        return cls(argv, ready=READY)

    @classmethod
    def procrastinate(cls, conninfo: str, *, concurrency: int, name: str) -> WorkerProcess:
        params = psycopg.conninfo.conninfo_to_dict(conninfo)
        env = {
            "PYTHONPATH": str(HERE),
            "PGHOST": str(params.get("host", "127.0.0.1")),
            "PGPORT": str(params.get("port", 5432)),
            "PGUSER": str(params.get("user", "postgres")),
            "PGDATABASE": str(params["dbname"]),
        }
        argv = [sys.executable, "-m", "procrastinate", "--app=queue_tasks.procrastinate_app"]
        argv += ["worker", "--concurrency", str(concurrency), "--name", name]
        return cls(argv, ready=re.compile(r"Launching a worker"), env=env)

    def _read(self) -> None:
        assert self.process.stderr is not None
        with self.process.stderr:
            for line in self.process.stderr:
                self.lines.append(line)
                if self.ready_at is None and self._ready_pattern.search(line):
                    self.ready_at = time.time()
                    self._ready.set()
        self._ready.set()

    def wait_ready(self, timeout: float = 60.0) -> float:
        """When the worker said it was ready (time.time()); exits if it never does."""
        if not self._ready.wait(timeout) or self.ready_at is None:
            self.stop()
            raise SystemExit(f"a worker did not start:\n{self.output()}")
        return self.ready_at

    def output(self) -> str:
        return "".join(self.lines[-60:])

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then its exit code (SIGKILL, and -9, if it does not exit in time)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._reader.join(timeout=5)
        return code
