"""One pipeline, its stages split over two processes, messages crossing NATS.

Both processes are `taskloom pipeline deploy ... --stage NAME` subprocesses sharing a
SQLite file; this test publishes into the first stage's topic and reads the last one's.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from nats_support import require_nats
from support import WAIT
from taskloom.store import open_store
from taskloom.streams import Message
from taskloom.streams.buses.nats import NatsBus

STAGES = """
import taskloom


@taskloom.task
def scale(value: int, timestamp: int) -> int:
    return value * 10 + timestamp % 2


@taskloom.task
def offset(value: int) -> tuple[int, str]:
    return value + 1, "odd" if value % 2 else "even"
"""

PIPELINE = """
name: split
stages:
  - task: split_stages.py:scale
    inputs: {value: numbers}
    outputs: [scaled]
  - task: split_stages.py:offset
    inputs: {value: scaled}
    outputs: [results, parity]
"""


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "split_stages.py").write_text(STAGES, encoding="utf-8")
    (tmp_path / "split.yaml").write_text(PIPELINE, encoding="utf-8")
    return tmp_path


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate()


def taskloom_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "taskloom", *args]


def environment(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "FORCE_COLOR"}
    env.update(TASKLOOM_DATABASE_URL=f"sqlite:///{workdir / 'taskloom.db'}", NO_COLOR="1")
    return env


def start_stage(
    workdir: Path, env: dict[str, str], url: str, name: str, stage: str
) -> subprocess.Popen[str]:
    command = taskloom_command(
        "pipeline",
        "deploy",
        "split.yaml",
        "--bus",
        url,
        "--name",
        name,
        "--stage",
        stage,
        "--status-interval",
        "0.1",
    )
    return subprocess.Popen(
        command,
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_command(workdir: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        taskloom_command(*args),
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def first_line(process: subprocess.Popen[str]) -> str:
    """The first line the process writes on stderr; killed if none comes in time (which
    also ends the reading thread)."""
    assert process.stderr is not None
    try:
        return await asyncio.wait_for(asyncio.to_thread(process.stderr.readline), 30)
    except TimeoutError:
        process.kill()
        raise


async def test_a_pipeline_split_over_two_processes(
    workdir: Path, processes: list[subprocess.Popen[str]]
) -> None:
    url = require_nats()
    name = f"split-{uuid.uuid4().hex[:8]}"
    env = environment(workdir)
    for stage in ("scale", "offset"):
        processes.append(start_stage(workdir, env, url, name, stage))
    for process in processes:
        line = await first_line(process)
        assert line.startswith(f"deployed '{name}'"), line

    bus = NatsBus(url)
    await bus.start()
    try:
        results = bus.subscribe(f"{name}.results", maxsize=1000)
        parity = bus.subscribe(f"{name}.parity", maxsize=1000)
        await asyncio.wait_for(asyncio.gather(results.ready, parity.ready), WAIT)  # type: ignore[arg-type]
        for i in range(200):
            await bus.publish(f"{name}.numbers", Message(1000 + i, i))
        async with asyncio.timeout(WAIT):
            got = [await results.get() for _ in range(200)]
            kinds = [await parity.get() for _ in range(200)]
    finally:
        await bus.close()
    # scale: 10 * i + (timestamp odd); offset: + 1, with the timestamp carried through.
    assert got == [Message(1000 + i, 10 * i + (i % 2) + 1) for i in range(200)]
    assert [m.value for m in kinds] == ["odd" if i % 2 else "even" for i in range(200)]

    # Both processes report into one deployment record; a stop request stops both.
    stop = await asyncio.to_thread(run_command, workdir, env, "pipeline", "stop", name)
    assert stop.returncode == 0, stop.stderr
    for process in processes:
        assert await asyncio.to_thread(process.wait, 30) == 0
    store = open_store(env["TASKLOOM_DATABASE_URL"])
    try:
        stages = {r.stage: r for r in store.get_stage_records(name)}
    finally:
        store.close()
    assert set(stages) == {"scale", "offset"}
    assert (stages["scale"].messages_in, stages["scale"].messages_out) == (200, 200)
    assert (stages["offset"].messages_in, stages["offset"].messages_out) == (200, 400)
    assert {r.state for r in stages.values()} == {"stopped"}


async def test_stopping_one_part_leaves_the_deployment_running_and_stop_ends_both(
    workdir: Path, processes: list[subprocess.Popen[str]]
) -> None:
    url = require_nats()
    name = f"parts-{uuid.uuid4().hex[:8]}"
    env = environment(workdir)
    for stage in ("scale", "offset"):
        processes.append(start_stage(workdir, env, url, name, stage))
    for process in processes:
        line = await first_line(process)
        assert line.startswith(f"deployed '{name}'"), line
    scale, offset = processes

    # One process is stopped on its own (Ctrl-C): the other still runs the deployment.
    scale.send_signal(signal.SIGINT)
    assert await asyncio.to_thread(scale.wait, 30) == 0
    shown = await asyncio.to_thread(run_command, workdir, env, "pipeline", "status", name, "--json")
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert status["state"] == "running"
    parts = {tuple(p["stages"]): p for p in status["parts"]}
    assert (parts[("scale",)]["state"], parts[("offset",)]["state"]) == ("stopped", "running")
    assert parts[("scale",)]["pid"] == scale.pid
    text = await asyncio.to_thread(run_command, workdir, env, "pipeline", "status", name)
    assert "stopped" in text.stdout
    assert str(offset.pid) in text.stdout

    # `pipeline stop` reaches the part still running, and says how many it stopped.
    stop = await asyncio.to_thread(run_command, workdir, env, "pipeline", "stop", name, "--json")
    assert stop.returncode == 0, stop.stderr
    assert f"stopped {name!r}: 1 part(s)" in stop.stderr
    assert json.loads(stop.stdout)["state"] == "stopped"
    assert await asyncio.to_thread(offset.wait, 30) == 0
    # Once nothing runs, another stop does nothing, and says so.
    again = await asyncio.to_thread(run_command, workdir, env, "pipeline", "stop", name)
    assert again.returncode == 0
    assert "is stopped already: no part of it runs" in again.stderr
