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
        """Poll the store until the newest run of `task` has `status`; return it as a dict."""
        deadline = time.monotonic() + timeout
        database = self.cwd / "taskloom.db"
        while not database.exists():
            assert time.monotonic() < deadline, "the database was never created"
            time.sleep(0.05)
        store = open_store(self.database_url)
        try:
            while True:
                runs = store.list_runs(task=task, limit=1)
                if runs and runs[0].status == status:
                    return runs[0].as_dict()
                seen = runs[0].status if runs else "no run"
                assert time.monotonic() < deadline, f"{task}: still {seen}, never {status}"
                time.sleep(0.05)
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
