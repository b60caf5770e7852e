"""Fixtures for driving the `taskloom` command as a real subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import wait_until
from taskloom.runs import Run
from taskloom.store import open_store

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "basics.py"

#: Tasks that run until they are stopped, for the Ctrl-C and cancel tests.
LONG_TASKS = """
import asyncio
import time

import taskloom


@taskloom.task
async def nap(seconds: float, context: taskloom.Context) -> str:
    context.logger.info("napping")
    await asyncio.sleep(seconds)
    return "rested"


@taskloom.task
def block(seconds: float, context: taskloom.Context) -> str:
    context.logger.info("blocking")
    context.wait_cancelled(seconds)
    return "done"
"""


class Cli:
    """Runs `python -m taskloom` in `cwd`, with `TASKLOOM_DATABASE_URL` set to a test file."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.database_url = f"sqlite:///{cwd / 'taskloom.db'}"
        self.env = {key: value for key, value in os.environ.items() if key != "FORCE_COLOR"}
        # `taskloom serve` listens on a free port: tests never fight over 8321.
        self.env.update(TASKLOOM_DATABASE_URL=self.database_url, NO_COLOR="1", TASKLOOM_PORT="0")
        self.env.pop("COLUMNS", None)
        self._started: list[subprocess.Popen[str]] = []

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "taskloom", *args]

    def __call__(
        self, *args: str, timeout: float = 30, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            cwd=self.cwd,
            env=self.env,
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def json(self, *args: str) -> Any:
        """Run a command that must succeed and print JSON; return what it printed."""
        result = self(*args)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def start(self, *args: str) -> subprocess.Popen[str]:
        """Start a command in the background (stopped at the end of the test if still running)."""
        process = subprocess.Popen(
            self.command(*args),
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._started.append(process)
        return process

    def wait_for_run(self, task: str, status: str, *, timeout: float = 20) -> dict[str, Any]:
        """Wait until the newest run of `task` is committed with `status`; return it as a dict."""
        deadline = time.monotonic() + timeout
        database = self.cwd / "taskloom.db"
        wait_until(database.exists, timeout, what="the database")
        store = open_store(self.database_url)
        seen: list[Run] = []

        def reached() -> Run | None:
            seen[:] = store.list_runs(task=task, limit=1)
            return seen[0] if seen and seen[0].status == status else None

        def still() -> str:
            return f"{task} {status} (last seen: {seen[0].status if seen else 'no run'})"

        try:
            left = max(0.0, deadline - time.monotonic())
            return wait_until(reached, left, what=still).as_dict()
        finally:
            store.close()

    def stop_started(self) -> None:
        for process in self._started:
            if process.poll() is None:
                process.kill()
            process.communicate()


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    """A working directory with `examples/basics.py` and `long_tasks.py`, and its CLI."""
    (tmp_path / "examples").mkdir()
    shutil.copy(EXAMPLES, tmp_path / "examples" / "basics.py")
    (tmp_path / "long_tasks.py").write_text(LONG_TASKS, encoding="utf-8")
    runner = Cli(tmp_path)
    yield runner
    runner.stop_started()
