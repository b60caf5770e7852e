"""The client's pipeline operations against a real `taskloom serve` process: deploy (by
name and as data), publish, tail, status counts, stop."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import pytest
from test_server import Served

import taskloom
from support import wait_until

if TYPE_CHECKING:
    from conftest import Cli

pytestmark = pytest.mark.timeout(60)

FLOW = """
import taskloom


@taskloom.task
def double(value: int) -> int:
    return value * 2


@taskloom.task
def label(value: int, timestamp: int) -> str:
    return f"{value}@{timestamp}"


flow = taskloom.Pipeline("flow")
flow.stage(double, inputs={"value": "numbers"}, outputs=["doubled"])
flow.stage(label, inputs={"value": "doubled"}, outputs=["labels"])
"""


def test_deploy_publish_tail_status_and_stop_through_a_real_server(cli: Cli) -> None:
    (cli.cwd / "flows.py").write_text(FLOW, encoding="utf-8")
    served = Served(cli.start("serve", "flows.py"))
    with taskloom.Client(served.url) as client:
        deployed = client.deploy_pipeline("flow", status_interval=0.1)
        assert deployed["state"] == "running"
        assert [s["stage"] for s in deployed["stages"]] == ["double", "label"]

        seen: list[dict[str, Any]] = []

        def tail() -> None:
            with taskloom.Client(served.url) as reader:
                seen.extend(reader.tail("flow", "labels", count=1))

        reader = threading.Thread(target=tail, daemon=True)
        reader.start()
        # The tail listens once its request is in; publish until it has seen a message.
        published = 0
        while not seen:
            client.publish("flow", "numbers", 21, timestamp=1000 + published)
            published += 1
            reader.join(timeout=0.1)
            assert published < 200, "the tail saw nothing"
        assert seen[0]["value"] == "42@" + str(seen[0]["timestamp"])
        assert seen[0]["dropped"] == 0

        def all_counted() -> bool:
            stages = client.pipeline_status("flow")["stages"]
            counted: int = stages[1]["messages_out"]
            return counted == published

        wait_until(all_counted, 15, interval=0.02, what="every message counted")
        double = client.pipeline_status("flow")["stages"][0]
        assert (double["messages_in"], double["messages_out"]) == (published, published)
        assert double["errors"] == 0

        with pytest.raises(taskloom.InputValidationError) as invalid:
            client.publish("flow", "numbers", "lots")
        assert isinstance(invalid.value, taskloom.streams.PortValidationError)
        assert invalid.value.task == "double"
        assert [e.field for e in invalid.value.errors] == ["value"]

        data = {
            "name": "copy",
            "stages": [{"task": "double", "inputs": {"value": "in"}, "outputs": ["out"]}],
        }
        assert client.deploy_pipeline(data)["name"] == "copy"
        with pytest.raises(taskloom.streams.PipelineError, match="running already"):
            client.deploy_pipeline(data)
        with pytest.raises(taskloom.streams.WiringError, match="unknown task 'os:system'"):
            client.deploy_pipeline({"name": "x", "stages": [{"task": "os:system"}]})
        assert {d["name"] for d in client.pipelines()} == {"flow", "copy"}

        assert client.stop_pipeline("flow")["state"] == "stopped"
        with pytest.raises(taskloom.streams.DeploymentNotFoundError):
            client.pipeline_status("ghost")
    # `copy` still runs, with a reader tailing it: the server stops both and exits 0.
    ended = threading.Event()
    got: list[dict[str, Any]] = []

    def tail_copy() -> None:
        try:
            with taskloom.Client(served.url) as reader:
                for message in reader.tail("copy", "out"):
                    got.append(message)
        except taskloom.TaskloomError:
            pass  # the connection closed by the server as it stops: an end as good as any
        finally:
            ended.set()

    threading.Thread(target=tail_copy, daemon=True).start()
    with taskloom.Client(served.url) as client:
        tries = 0
        while not got:
            client.publish("copy", "in", 1)
            tries += 1
            ended.wait(0.1)
            assert tries < 200, "the tail of copy saw nothing"
    code, err = served.stop()
    assert code == 0, err
    assert ended.wait(10), "the tail did not end with the server"
    result = cli("pipeline", "status", "copy", "--json")
    assert '"state": "stopped"' in result.stdout, result.stdout
