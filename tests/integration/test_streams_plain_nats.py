"""A plain NATS client, which imports nothing of taskloom, feeds a deployed pipeline and
reads its outputs: the subjects, headers and JSON bodies the streams how-to documents."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from nats_support import require_nats

REPO = Path(__file__).resolve().parents[2]

#: A program of its own: nats-py and the standard library only.
PLAIN_CLIENT = """\
import asyncio, json, sys

import nats

async def main(url, name):
    nc = await nats.connect(url)
    received = asyncio.Queue()
    await nc.subscribe(f"taskloom.{name}.sums", cb=received.put)
    await nc.flush()
    await nc.publish(f"taskloom.{name}.numbers.a", b"5", headers={"Taskloom-Timestamp": "1000"})
    await nc.publish(f"taskloom.{name}.numbers.b", b"7", headers={"Taskloom-Timestamp": "1001"})
    first = await asyncio.wait_for(received.get(), 20)
    # As `nats pub` sends it by default: no headers, timestamped on arrival.
    await nc.publish(f"taskloom.{name}.numbers.a", b"100")
    second = await asyncio.wait_for(received.get(), 20)
    for msg in (first, second):
        print(json.dumps({"subject": msg.subject, "body": msg.data.decode(),
                          "headers": msg.headers}), flush=True)
    await nc.close()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copy(REPO / "examples" / "streams.py", tmp_path / "streams.py")
    (tmp_path / "plain_client.py").write_text(PLAIN_CLIENT, encoding="utf-8")
    return tmp_path


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate()


def test_a_plain_nats_client_feeds_and_reads_a_deployed_pipeline(
    workdir: Path, processes: list[subprocess.Popen[str]]
) -> None:
    url = require_nats()
    name = f"plain-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k != "FORCE_COLOR"}
    env.update(TASKLOOM_DATABASE_URL=f"sqlite:///{workdir / 'taskloom.db'}", NO_COLOR="1")
    deployed = subprocess.Popen(
        [sys.executable, "-m", "taskloom", "pipeline", "deploy", "streams.py:demo",
         "--bus", url, "--name", name, "--status-interval", "0.1"],
        cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    processes.append(deployed)
    assert deployed.stderr is not None
    line = deployed.stderr.readline()
    assert line.startswith(f"deployed '{name}'"), line

    plain = subprocess.run(
        [sys.executable, "plain_client.py", url, name],
        cwd=workdir, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert plain.returncode == 0, plain.stderr
    first, second = (json.loads(line) for line in plain.stdout.splitlines())
    # adder(a, b) with config step 2: 5 + 7 + 2 at 1001, then 100 + 7 + 4.
    assert first == {
        "subject": f"taskloom.{name}.sums",
        "body": "14",
        "headers": {"Taskloom-Timestamp": "1001"},
    }
    assert second["body"] == "111"
    assert int(second["headers"]["Taskloom-Timestamp"]) > 1001  # stamped when it arrived

    stop = subprocess.run(
        [sys.executable, "-m", "taskloom", "pipeline", "stop", name],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert stop.returncode == 0, stop.stderr
    assert deployed.wait(timeout=30) == 0
