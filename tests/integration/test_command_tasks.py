"""Command tasks in the engine: a subprocess per run, its own process group, logs line by
line, the result from the output file, timeouts and cancels that end the whole group."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from support import until
from taskloom import CommandTask, Engine, InputValidationError, RunStatus, TaskOptions
from taskloom.store import MemoryStore

# Plain Python (no taskloom import): the contract is all a command has to speak.
ECHO = """
import json, sys
args = json.load(open(sys.argv[sys.argv.index("--args-json") + 1]))
print("to stdout", args["n"], flush=True)
print("WARNING to stderr", flush=True, file=sys.stderr)
if args["n"] < 0:
    print("error: n must not be negative", file=sys.stderr)
    sys.exit(3)
if args["n"] == 0:
    sys.exit(0)  # exits without writing its output file
with open(sys.argv[sys.argv.index("--out-json") + 1], "w") as out:
    json.dump({"double": args["n"] * 2}, out)
"""

# Starts a grandchild, records both pids, then waits forever.
HANG = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(f"{os.getpid()} {child.pid}")
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
print("started", flush=True)
time.sleep(600)
"""

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def script(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose: it runs no more code.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_a_command_task_runs_with_logs_and_result(tmp_path: Path) -> None:
    echo = CommandTask(
        "echo", [sys.executable, str(script(tmp_path, "echo.py", ECHO))], input_schema=SCHEMA
    )
    async with Engine(store=MemoryStore(), tasks=[echo]) as engine:
        run = await engine.run("echo", {"n": 21})
        assert run.status == RunStatus.COMPLETED, run.error
        assert run.result == {"double": 42}
        logs = await engine.get_logs(run.id)
        # stdout and stderr are read side by side: their relative order is not fixed.
        assert sorted((line.level, line.message) for line in logs) == [
            ("INFO", "to stdout 21"),
            ("WARNING", "WARNING to stderr"),
        ]

        failed = await engine.run("echo", {"n": -1})
        assert failed.status == RunStatus.FAILED
        assert failed.error is not None
        assert failed.error.message == (
            "task 'echo': the command exited with code 3: n must not be negative"
        )
        silent = await engine.run("echo", {"n": 0})
        assert silent.status == RunStatus.FAILED
        assert silent.error is not None
        assert "wrote no output file" in silent.error.message

        with pytest.raises(InputValidationError, match="task 'echo': input 'n'"):
            await engine.submit("echo", {"n": "many"})


async def test_a_timeout_terminates_the_whole_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    hang = CommandTask(
        "hang",
        [sys.executable, str(script(tmp_path, "hang.py", HANG)), str(pids)],
        options=TaskOptions(timeout=1.5),
        kill_grace=2.0,
    )
    async with Engine(store=MemoryStore(), tasks=[hang]) as engine:
        run = await engine.run("hang", {})
        assert run.status == RunStatus.FAILED
        assert run.error is not None
        assert run.error.type == "TaskTimeoutError"
        parent, child = map(int, pids.read_text().split())

        async def both_gone() -> bool:
            return not alive(parent) and not alive(child)

        await until(both_gone, timeout=10)
        logs = await engine.get_logs(run.id)
        assert [line.message for line in logs] == ["started"]


async def test_cancel_terminates_the_whole_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    hang = CommandTask("hang", [sys.executable, str(script(tmp_path, "hang.py", HANG)), str(pids)])
    async with Engine(store=MemoryStore(), tasks=[hang]) as engine:
        run = await engine.submit("hang", {})

        async def started() -> bool:
            return pids.exists()

        await until(started, timeout=20)
        parent, child = map(int, pids.read_text().split())
        cancelled = await engine.cancel(run.id)
        assert cancelled.status == RunStatus.CANCELLED

        async def both_gone() -> bool:
            return not alive(parent) and not alive(child)

        await until(both_gone, timeout=10)


async def test_a_missing_executable_fails_the_run_with_its_name(tmp_path: Path) -> None:
    missing = CommandTask("missing", [str(tmp_path / "no-such-program")])
    async with Engine(store=MemoryStore(), tasks=[missing]) as engine:
        run = await engine.run("missing", {})
        assert run.status == RunStatus.FAILED
        assert run.error is not None
        assert "cannot start" in run.error.message
        assert "no-such-program" in run.error.message
