"""`taskloom worker` processes for the shared-queue tests, and what they left behind."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa

TASKS = Path(__file__).resolve().parent / "queue_tasks.py"
READY = re.compile(r"worker (\S+) ready")
REFUSED = re.compile(r"(\d+) late changes were refused")
LET_GO = re.compile(r"lost its lease .*letting go of (\d+) runs")


class Worker:
    """One `taskloom worker` process; its stderr is read by a thread of its own."""

    def __init__(
        self,
        url: str,
        *,
        concurrency: int,
        name: str,
        lease_ttl: float = 10.0,
        tasks: Path = TASKS,
    ) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR",)}
        env.update(NO_COLOR="1", PYTHONFAULTHANDLER="1")  # SIGABRT prints every thread
        env.pop("TASKLOOM_DATABASE_URL", None)
        self.name = name
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "taskloom",
                "worker",
                str(tasks),
                "--db",
                url,
                "--concurrency",
                str(concurrency),
                "--name",
                name,
                "--lease-ttl",
                str(lease_ttl),
                "--shutdown-grace",
                "5",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.worker_ids: list[str] = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        with self.process.stderr:
            for line in self.process.stderr:
                self.lines.append(line)
                found = READY.search(line)
                if found:
                    self.worker_ids.append(found.group(1))
                    self._ready.set()
        self._ready.set()

    async def ready(self, timeout: float = 30.0) -> str:
        assert await asyncio.to_thread(self._ready.wait, timeout), "the worker did not start"
        assert self.worker_ids, "the worker ended before it was ready:\n" + self.output()
        return self.worker_ids[0]

    def output(self) -> str:
        return "".join(self.lines[-150:])

    def signal(self, number: int) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, number)

    async def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then the exit code (SIGKILL and a failure if it does not exit)."""
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(self.process.wait, timeout)
            await asyncio.to_thread(self._reader.join, 5)
            return code
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGABRT)  # its threads' stacks, for the failure message
            await asyncio.to_thread(self.process.wait)
            await asyncio.to_thread(self._reader.join, 5)
            raise AssertionError(f"worker {self.name} ignored SIGTERM:\n{self.output()}") from None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._reader.join(timeout=5)

    def refused(self) -> int:
        """Late changes the worker said (when it stopped) its fences refused."""
        return sum(int(m.group(1)) for line in self.lines if (m := REFUSED.search(line)))

    def let_go(self) -> int:
        """Runs the worker said it let go, unwritten, when it found its lease lost."""
        return sum(int(m.group(1)) for line in self.lines if (m := LET_GO.search(line)))


def query(url: str, sql: str, **params: object) -> list[sa.Row[*tuple[Any, ...]]]:
    """Rows of `sql` on the database, read by a connection of its own."""
    if "://" not in url:
        url = f"sqlite:///{url}"
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params))
    finally:
        engine.dispose()
