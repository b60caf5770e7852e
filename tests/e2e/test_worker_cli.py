"""`taskloom worker` and `taskloom serve --no-worker` as real processes on one SQLite file."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from typing import TYPE_CHECKING

import pytest
from test_server import Served

from taskloom import Client, Engine
from taskloom.loading import load_module
from taskloom.store import open_store

if TYPE_CHECKING:
    from conftest import Cli

pytestmark = pytest.mark.timeout(90)


def wait_for_line(process: subprocess.Popen[str], text: str, timeout: float = 30) -> str:
    """The first stderr line holding `text` (the process's stderr is read up to it)."""
    assert process.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            raise AssertionError(f"the process ended ({process.wait()}) before {text!r}")
        if text in line:
            return line
    raise AssertionError(f"no {text!r} within {timeout} s")


def test_a_target_that_cannot_be_loaded_exits_2_in_one_line(cli: Cli) -> None:
    result = cli("worker", "missing.py")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "missing.py" in result.stderr


def test_an_unreachable_database_exits_2_in_one_line(cli: Cli) -> None:
    result = cli("worker", "long_tasks.py", "--db", "postgresql://nobody@127.0.0.1:1/none")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "cannot use the database postgresql+psycopg://nobody@127.0.0.1:1/none" in lines[0]


def test_an_invalid_queue_name_exits_2(cli: Cli) -> None:
    result = cli("worker", "long_tasks.py", "--queue", "no spaces")
    assert result.returncode == 2
    assert "--queue" in result.stderr


def test_a_stopped_worker_gives_back_what_it_held_without_using_a_retry(cli: Cli) -> None:
    worker = cli.start("worker", "long_tasks.py", "--shutdown-grace", "0.5", "--name", "w1")
    wait_for_line(worker, "ready")
    tasks = load_module(str(cli.cwd / "long_tasks.py"))

    async def submit() -> str:
        async with Engine(cli.database_url, worker=False, tasks=[tasks]) as engine:
            return (await engine.submit("nap", {"seconds": 60})).id

    run_id = asyncio.run(submit())
    cli.wait_for_run("nap", "running")
    listed = cli.json("workers", "--json")
    alive = [w for w in listed if w["name"] == "w1"]
    assert alive
    assert alive[0]["state"] == "alive"
    assert alive[0]["holds"] == 1
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
    assert worker.stderr is not None
    assert "stopped; 0 late changes" in worker.stderr.read()
    store = open_store(cli.database_url)
    try:
        run = store.get_run(run_id)
        attempts = store.get_attempts(run_id)
    finally:
        store.close()
    assert run is not None
    assert run.status == "pending"
    assert run.worker_id is None  # any worker may take it
    assert run.max_attempts == 2  # the interrupted attempt used no retry
    assert [a.status for a in attempts] == ["interrupted"]


def test_serve_no_worker_accepts_runs_that_a_worker_executes(cli: Cli) -> None:
    server = Served(cli.start("serve", "long_tasks.py", "--no-worker"))
    try:
        with Client(server.url) as client:
            submit_and_execute(cli, client)
    finally:
        code, err = server.stop()
    assert code == 0, err


def submit_and_execute(cli: Cli, client: Client) -> None:
    run = client.submit("nap", {"seconds": 0.01})
    assert client.get_run(run.id).status == "pending"
    workers = json.loads(cli("workers", "--json").stdout)
    assert [w["concurrency"] for w in workers] == [None]  # the server executes nothing
    assert client.get_run(run.id).worker_id is None
    worker = cli.start("worker", "long_tasks.py")
    wait_for_line(worker, "ready")
    done = client.wait(run.id, timeout=20)
    assert done.status == "completed"
    assert done.result == "rested"
    assert done.worker_id is not None
    assert done.worker_id != workers[0]["id"]
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
