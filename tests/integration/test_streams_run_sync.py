"""`python adder.py` with the streamtasks guide's `adder.run_sync()` joins a pipeline that
`taskloom pipeline deploy` started over NATS, and produces sums."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from nats_support import require_nats
from support import WAIT
from taskloom.streams import Message
from taskloom.streams.buses.nats import NatsBus

#: The guide's example ("Custom tasks", functional tasks), its import changed.
ADDER = """\
from taskloom import task as fntask

@fntask()
def adder(a: int, b: int) -> int: return a + b

if __name__ == "__main__": adder.run_sync()
"""

PIPELINE = """\
name: sums
stages:
  - task: adder.py:adder
    inputs: {a: numbers.a, b: numbers.b}
    outputs: [sums]
  - task: relay.py:relay
    inputs: {value: sums}
    outputs: [relayed]
"""

RELAY = """\
import taskloom

@taskloom.task
def relay(value: int) -> int:
    return value
"""


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "adder.py").write_text(ADDER, encoding="utf-8")
    (tmp_path / "relay.py").write_text(RELAY, encoding="utf-8")
    (tmp_path / "sums.yaml").write_text(PIPELINE, encoding="utf-8")
    return tmp_path


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate()


def environment(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "FORCE_COLOR"}
    env.update(TASKLOOM_DATABASE_URL=f"sqlite:///{workdir / 'taskloom.db'}", NO_COLOR="1")
    return env


def start(workdir: Path, *command: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *command],
        cwd=workdir,
        env=environment(workdir),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def taskloom(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskloom", *args],
        cwd=workdir, env=environment(workdir), capture_output=True, text=True, timeout=60,
    )  # fmt: skip


async def first_line(process: subprocess.Popen[str]) -> str:
    assert process.stderr is not None
    try:
        return await asyncio.wait_for(asyncio.to_thread(process.stderr.readline), 30)
    except TimeoutError:
        process.kill()
        raise


async def sums_of(url: str, name: str, pairs: list[tuple[int, int]]) -> list[Message]:
    """Publish the pairs on numbers.a and numbers.b, return what `relayed` carries."""
    bus = NatsBus(url)
    await bus.start()
    try:
        relayed = bus.subscribe(f"{name}.relayed")
        assert relayed.ready is not None
        await asyncio.wait_for(relayed.ready, WAIT)
        for i, (a, b) in enumerate(pairs):
            await bus.publish(f"{name}.numbers.a", Message(1000 + 2 * i, a))
            await bus.publish(f"{name}.numbers.b", Message(1001 + 2 * i, b))
        async with asyncio.timeout(WAIT):
            return [await relayed.get() for _ in range(2 * len(pairs) - 1)]
    finally:
        await bus.close()


async def test_python_adder_py_joins_a_deployed_pipeline_and_produces_sums(
    workdir: Path, processes: list[subprocess.Popen[str]]
) -> None:
    url = require_nats()
    name = f"sums-{uuid.uuid4().hex[:8]}"
    deployed = start(
        workdir, "-m", "taskloom", "pipeline", "deploy", "sums.yaml", "--bus", url,
        "--name", name, "--stage", "relay", "--status-interval", "0.1",
    )  # fmt: skip
    processes.append(deployed)
    line = await first_line(deployed)
    assert line.startswith(f"deployed '{name}'"), line
    # The wiring and the bus come from the deployment's record: no topic is repeated.
    adder = start(workdir, "adder.py", "--deployment", name, "--status-interval", "0.1")
    processes.append(adder)
    line = await first_line(adder)
    assert line == (
        f"joined '{name}' as stage 'adder' on {url}: a <- numbers.a, b <- numbers.b, "
        "result -> sums\n"
    ), line + (adder.stderr.read() if adder.poll() is not None and adder.stderr else "")

    got = await sums_of(url, name, [(1, 2), (10, 20), (100, 200)])
    # Every message fires once both inputs have a value: a@1000 alone does not.
    assert [m.value for m in got] == [3, 12, 30, 120, 300]
    assert [m.timestamp for m in got] == [1001, 1002, 1003, 1004, 1005]

    status = await asyncio.to_thread(taskloom, workdir, "pipeline", "status", name, "--json")
    assert status.returncode == 0, status.stderr
    assert f'"pid": {adder.pid}' in status.stdout

    stop = await asyncio.to_thread(taskloom, workdir, "pipeline", "stop", name)
    assert stop.returncode == 0, stop.stderr
    assert "2 part(s)" in stop.stderr
    for process in (deployed, adder):
        assert await asyncio.to_thread(process.wait, 30) == 0


async def test_topics_can_be_given_on_the_command_line(
    workdir: Path, processes: list[subprocess.Popen[str]]
) -> None:
    url = require_nats()
    name = f"given-{uuid.uuid4().hex[:8]}"
    adder = start(
        workdir, "adder.py", "--bus", url, "--deployment", name,
        "--input", "a=numbers.a", "--input", "b=numbers.b", "--output", "relayed",
    )  # fmt: skip
    processes.append(adder)
    line = await first_line(adder)
    assert line.startswith(f"joined '{name}' as stage 'adder' on {url}: "), line
    got = await sums_of(url, name, [(1, 2), (3, 4)])
    assert [m.value for m in got] == [3, 5, 7]
    adder.send_signal(2)  # Ctrl-C
    assert await asyncio.to_thread(adder.wait, 30) == 0


def test_a_bad_command_line_names_the_task(workdir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "adder.py", "--input", "a"],
        cwd=workdir, env=environment(workdir), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "task 'adder': expected --input as PORT=TOPIC, got 'a'" in done.stderr
