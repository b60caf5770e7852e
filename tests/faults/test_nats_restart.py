"""A `nats-server` of the test's own killed and started again mid-stream.

A pipeline's two stages run in two `taskloom pipeline deploy --stage` processes, so every
message crosses NATS twice; the test publishes into the first stage's topic and reads the
last one's, all the while. Then: the pipeline delivers again once the server is back,
all of a batch sent after the recovery arrives, the deployment's status accounts for the
messages that did not arrive (counted or said, not silently dropped), and a stop request
stops both processes (nothing hangs).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fault_processes import Lines, NatsServer

from support import WAIT, until
from taskloom.store import open_store
from taskloom.streams import Message
from taskloom.streams.buses.nats import NatsBus
from taskloom.streams.deployment import deployment_status
from taskloom.streams.status import DeploymentStatus

STAGES = """
import taskloom


@taskloom.task
def scale(value: int) -> int:
    return value * 10


@taskloom.task
def offset(value: int) -> int:
    return value + 1
"""

PIPELINE = """
name: relay
stages:
  - task: relay_stages.py:scale
    inputs: {value: numbers}
    outputs: [scaled]
  - task: relay_stages.py:offset
    inputs: {value: scaled}
    outputs: [results]
"""

BATCH = 100


@contextmanager
def relay_folder() -> Iterator[Path]:
    """A folder with the pipeline and its stages' file, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="taskloom-nats-") as name:
        folder = Path(name)
        (folder / "relay_stages.py").write_text(STAGES, encoding="utf-8")
        (folder / "relay.yaml").write_text(PIPELINE, encoding="utf-8")
        yield folder


def environment(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "FORCE_COLOR"}
    env.update(TASKLOOM_DATABASE_URL=f"sqlite:///{workdir / 'taskloom.db'}", NO_COLOR="1")
    return env


def taskloom(*args: str) -> list[str]:
    return [sys.executable, "-m", "taskloom", *args]


def start_stage(workdir: Path, url: str, name: str, stage: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        taskloom(
            "pipeline", "deploy", "relay.yaml", "--bus", url, "--name", name,
            "--stage", stage, "--status-interval", "0.1",
        ),
        cwd=workdir,
        env=environment(workdir),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def status_of(workdir: Path, name: str) -> DeploymentStatus:
    store = open_store(environment(workdir)["TASKLOOM_DATABASE_URL"])
    try:
        return deployment_status(store, name)
    finally:
        store.close()


class Stream:
    """Publishes numbers into the pipeline and collects what comes out, until stopped."""

    def __init__(self, bus: NatsBus, name: str) -> None:
        self.bus = bus
        self.name = name
        self.published = 0
        self.received: set[int] = set()  # timestamps of the results
        self.ready = asyncio.Event()

    async def publish(self, count: int) -> None:
        for _ in range(count):
            await self.bus.publish(f"{self.name}.numbers", Message(self.published, 1))
            self.published += 1

    async def keep_publishing(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.publish(20)
            await asyncio.sleep(0.002)  # a steady stream (about 10,000 a second), not a flood

    async def collect(self) -> None:
        results = self.bus.subscribe(f"{self.name}.results", maxsize=100_000)
        await asyncio.wait_for(results.ready, WAIT)  # type: ignore[arg-type]
        self.ready.set()
        while True:
            message = await results.get()
            assert message.value == 11
            self.received.add(message.timestamp)

    def received_from(self, first: int) -> int:
        return sum(1 for t in self.received if t >= first)


@dataclass
class Outcome:
    """What the stream saw across the restart, and the deployment's status at its end."""

    published: int
    lost: int
    killed_at: int
    restarted_at: int
    status: DeploymentStatus


async def restart_mid_stream() -> Outcome:
    """Deploy, stream, kill and restart the server, stream again, stop the deployment."""
    with relay_folder() as workdir:
        return await _restart_mid_stream(workdir)


async def _restart_mid_stream(workdir: Path) -> Outcome:
    nats = NatsServer()
    await nats.start()
    name = f"relay-{uuid.uuid4().hex[:8]}"
    processes = [start_stage(workdir, nats.url, name, stage) for stage in ("scale", "offset")]
    bus = NatsBus(nats.url)
    try:
        for process in processes:
            lines = Lines(process.stderr)
            await lines.wait_for(lambda line: line.startswith(f"deployed '{name}'"))
        await bus.start()
        stream = Stream(bus, name)
        collecting = asyncio.create_task(stream.collect())
        await asyncio.wait_for(stream.ready.wait(), WAIT)

        async def all_of(first: int, count: int) -> bool:
            return stream.received_from(first) >= count

        # Before: everything arrives.
        await stream.publish(BATCH)
        await until(lambda: all_of(0, BATCH))

        # Mid-stream: the server is killed and started again on its port.
        stop = asyncio.Event()
        trickle = asyncio.create_task(stream.keep_publishing(stop))
        await until(lambda: all_of(BATCH, 20))
        nats.kill()
        killed_at = stream.published
        await nats.start()
        restarted_at = stream.published

        async def delivering_again() -> bool:
            return stream.received_from(restarted_at) > 0

        await until(delivering_again, timeout=30)
        stop.set()
        await trickle

        # After: steady again, everything of a new batch arrives.
        first = stream.published
        await stream.publish(BATCH)
        await until(lambda: all_of(first, BATCH), timeout=20)
        collecting.cancel()
        lost = stream.published - len(stream.received)

        stop_request = await asyncio.to_thread(
            subprocess.run,
            taskloom("pipeline", "stop", name),
            cwd=workdir,
            env=environment(workdir),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert stop_request.returncode == 0, stop_request.stderr
        for process in processes:
            assert await asyncio.to_thread(process.wait, 30) == 0  # nothing hangs
    finally:
        await bus.close()
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()
        nats.kill()

    status = await asyncio.to_thread(status_of, workdir, name)
    return Outcome(stream.published, lost, killed_at, restarted_at, status)


@pytest.mark.timeout(90)
async def test_a_pipeline_delivers_again_after_its_nats_server_restarts() -> None:
    outcome = await restart_mid_stream()  # it delivered again, and stopped when asked
    stages = {stage.stage: stage for stage in outcome.status.stages}
    assert {stage.state for stage in stages.values()} == {"stopped"}
    # Only what was on its way when the server died may be missing.
    assert outcome.lost < outcome.published - (outcome.restarted_at - outcome.killed_at)
    for stage in stages.values():
        assert stage.messages_in >= outcome.published - outcome.lost, stage
        assert stage.errors == 0, stage
