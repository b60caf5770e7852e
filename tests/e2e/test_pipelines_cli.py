"""`taskloom pipeline ...` and `taskloom topic ...` as a person runs them."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest
from conftest import Cli

from nats_support import require_nats
from taskloom.store import open_store

REPO = Path(__file__).resolve().parents[2]

MISWIRED = """
name: video
stages:
  - task: video_stages.py:camera
    inputs: {frame: frames}
    outputs: [encoded]
  - task: video_stages.py:encoder
    inputs: {data: encoded}
"""

VIDEO_STAGES = """
from typing import Annotated

import taskloom


@taskloom.task
def camera(frame: int) -> Annotated[bytes, {"content": "video", "codec": "h264"}]:
    return bytes([frame % 256])


@taskloom.task
def encoder(data: Annotated[bytes, {"content": "video", "codec": "vp9"}]) -> None:
    return None
"""


@pytest.fixture
def streams(cli: Cli) -> Cli:
    shutil.copy(REPO / "examples" / "streams.py", cli.cwd / "streams.py")
    shutil.copy(REPO / "examples" / "streams.yaml", cli.cwd / "streams.yaml")
    (cli.cwd / "video_stages.py").write_text(VIDEO_STAGES, encoding="utf-8")
    (cli.cwd / "video.yaml").write_text(MISWIRED, encoding="utf-8")
    return cli


def deployed(process: subprocess.Popen[str]) -> str:
    assert process.stderr is not None
    line = process.stderr.readline()
    assert line.startswith("deployed"), line + (process.stderr.read() if process.poll() else "")
    return line


def test_a_mis_wired_pipeline_is_refused_with_exit_code_2(streams: Cli) -> None:
    result = streams("pipeline", "deploy", "video.yaml")
    assert result.returncode == 2
    assert "error: pipeline 'video' is mis-wired, nothing was deployed:" in result.stderr
    assert (
        "topic 'encoded': stage 'camera' output 'result' -> stage 'encoder' input 'data': "
        "metadata differs: codec 'h264' != 'vp9'"
    ) in result.stderr


def test_a_bad_config_names_the_stage_and_field(streams: Cli) -> None:
    text = (streams.cwd / "streams.yaml").read_text().replace("step: 2", "step: many")
    (streams.cwd / "bad.yaml").write_text(text)
    result = streams("pipeline", "deploy", "bad.yaml")
    assert result.returncode == 2
    assert "pipeline 'demo', stage 'adder': config 'step'" in result.stderr


def test_config_fields_are_given_per_stage_on_the_command_line(streams: Cli) -> None:
    process = streams.start(
        "pipeline", "deploy", "streams.yaml", "--name", "configured",
        "--config", "adder.step=5", "--config", 'adder={"step": 7}', "--config", "adder.step=9",
    )  # fmt: skip
    deployed(process)
    store = open_store(streams.database_url)
    try:
        record = store.get_deployment("configured")
    finally:
        store.close()
    assert record is not None
    # The pipeline file says step 2; the command line wins, the last value last.
    configs = {stage["name"]: stage["config"] for stage in record.stages}
    assert configs == {"adder": {"step": 9}, "printer": None}
    assert streams("pipeline", "stop", "configured").returncode == 0
    assert process.wait(timeout=30) == 0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("adder.step=many", "pipeline 'demo', stage 'adder': config 'step': expected an integer"),
        ("nope.step=1", "pipeline 'demo' has no stage 'nope' (stages: adder, printer)"),
        ("adder", "expected --config as STAGE.KEY=VALUE or STAGE={...}, got 'adder'"),
        ("adder={nope", "pipeline 'demo', stage 'adder': --config is not valid JSON"),
        ("printer.x=1", "stage 'printer': config given, but it takes none"),
    ],
)
def test_a_bad_config_on_the_command_line_is_a_usage_error(
    streams: Cli, value: str, message: str
) -> None:
    result = streams("pipeline", "deploy", "streams.yaml", "--config", value)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


def test_unknown_deployments_and_bad_addresses_are_usage_errors(streams: Cli) -> None:
    result = streams("pipeline", "status", "nope")
    assert (result.returncode, result.stderr) == (2, "error: no deployment named 'nope'\n")
    result = streams("topic", "publish", "nope", "1")
    assert result.returncode == 2
    assert "give DEPLOYMENT/TOPIC" in result.stderr


def test_deploy_status_and_stop_on_the_in_process_bus(streams: Cli) -> None:
    process = streams.start(
        "pipeline", "deploy", "streams.yaml", "--name", "local", "--status-interval", "0.1"
    )
    assert "on memory://: adder, printer" in deployed(process)
    status = streams.json("pipeline", "status", "local", "--json")
    assert status["state"] == "running"
    assert [s["stage"] for s in status["stages"]] == ["adder", "printer"]
    assert status["topics"]["sums"]["consumers"][0]["type"] == "int"
    # Its topics live inside the deploying process: say so, and how to reach them.
    result = streams("topic", "publish", "local/numbers.a", "5")
    assert result.returncode == 2
    assert "runs on the in-process bus" in result.stderr
    assert "--bus nats://" in result.stderr
    stopped = streams.json("pipeline", "stop", "local", "--json")
    assert stopped["state"] == "stopped"
    assert process.wait(timeout=30) == 0
    listed = streams.json("pipeline", "list", "--json")
    assert [d["name"] for d in listed] == ["local"]


def test_topic_publish_and_tail_over_nats(streams: Cli) -> None:
    url = require_nats()
    name = f"cli-{uuid.uuid4().hex[:8]}"
    process = streams.start(
        "pipeline",
        "deploy",
        "streams.py:demo",
        "--bus",
        url,
        "--name",
        name,
        "--status-interval",
        "0.1",
    )
    deployed(process)
    tail = streams.start("topic", "tail", f"{name}/sums", "--count", "2", "--json")
    assert tail.stderr is not None
    assert tail.stderr.readline().startswith(f"listening to {name}/sums")
    for topic, value, timestamp in [("a", "5", 1000), ("b", "7", 1001), ("a", "1", 1002)]:
        result = streams("topic", "publish", f"{name}/numbers.{topic}", value, "-t", str(timestamp))
        assert result.returncode == 0, result.stderr
    result = streams("topic", "publish", f"{name}/numbers.b", "1", "-t", "1003")
    assert result.returncode == 0, result.stderr
    out, _ = tail.communicate(timeout=30)
    # adder(a, b) with config step 2: 5 + 7 + 2, then 1 + 7 + 4.
    assert [json.loads(line) for line in out.splitlines()] == [
        {"timestamp": 1001, "value": 14},
        {"timestamp": 1002, "value": 12},
    ]
    bad = streams("topic", "publish", f"{name}/numbers.a", "five")
    assert bad.returncode == 2
    assert f"deployment {name!r}, topic 'numbers.a': stage 'adder' input 'a':" in bad.stderr
    unknown = streams("topic", "publish", f"{name}/numbers.c", "1")
    assert unknown.returncode == 2
    assert "has no topic 'numbers.c' (topics: numbers.a, numbers.b, sums)" in unknown.stderr
    assert streams("pipeline", "stop", name).returncode == 0
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    # The printer stage's lines. b@1003 is released too: `a` went quiet (idle) after 1002.
    assert out.splitlines() == ["1001: 14", "1002: 12", "1003: 8"]


def test_a_file_that_only_defines_a_pipeline_can_be_served(streams: Cli) -> None:
    # The stages' tasks live in another module; this file holds the pipeline alone.
    (streams.cwd / "only_pipeline.py").write_text(
        "import taskloom\n"
        "from streams import adder, printer\n\n"
        'sums = taskloom.Pipeline("sums")\n'
        'sums.stage(adder, inputs={"a": "numbers.a", "b": "numbers.b"}, outputs=["sums"])\n'
        'sums.stage(printer, inputs={"value": "sums"})\n',
        encoding="utf-8",
    )
    process = streams.start("serve", "only_pipeline.py", "--port", "0")
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("taskloom "), line + (process.stderr.read() if process.stderr else "")
    url = line.split(" serving ", 1)[1].split()[0]
    deployed = httpx.post(f"{url}/api/pipelines", json={"pipeline": "sums"}, timeout=20)
    assert deployed.status_code == 201, deployed.text
    assert deployed.json()["name"] == "sums"
    process.terminate()
    assert process.wait(timeout=20) == 0
