"""`task.run()` on a bus given in process, and the command line `run_sync()` reads."""

from __future__ import annotations

import asyncio

import pytest

from support import WAIT, load_helper, until
from taskloom.streams import MemoryBus, Message
from taskloom.streams.standalone import parse_arguments

stages = load_helper("stream_stages")


async def test_a_task_runs_as_a_stage_on_a_bus_given_in_process() -> None:
    bus = MemoryBus()
    sums = bus.subscribe("demo.sums")
    running = asyncio.create_task(
        stages.adder.run(
            bus, deployment="demo", inputs={"a": "in.a", "b": "in.b"}, outputs=["sums"]
        )
    )

    async def listening() -> bool:
        return await bus.has_subscribers("demo.in.b")

    await until(listening)
    await bus.publish("demo.in.a", Message(1, 2))
    await bus.publish("demo.in.b", Message(2, 40))
    assert await asyncio.wait_for(sums.get(), WAIT) == Message(2, 42)
    running.cancel()  # what Ctrl-C ends, here: the stage stops and lets go of its inputs
    await asyncio.wait([running])
    assert not await bus.has_subscribers("demo.in.b")


def test_the_command_line_gives_topics_config_and_bus() -> None:
    settings = parse_arguments(
        "adder",
        ["--bus", "nats://10.0.0.1:4222", "--deployment", "demo", "--input", "a=numbers.a",
         "--input", "b=numbers.b", "--output", "sums", "--config", "step=2",
         "--config", '{"extra": true}'],
    )  # fmt: skip
    assert (settings.bus, settings.deployment) == ("nats://10.0.0.1:4222", "demo")
    assert settings.inputs == {"a": "numbers.a", "b": "numbers.b"}
    assert settings.outputs == ["sums"]
    assert settings.config == {"step": 2, "extra": True}
    named = parse_arguments("split", ["--output", "out1=labels", "--output", "out0=doubled"])
    assert named.outputs == {"out1": "labels", "out0": "doubled"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--input", "a"], "task 'adder': expected --input as PORT=TOPIC, got 'a'"),
        (["--output", "x=y", "--output", "z"], "give every --output as PORT=TOPIC, or none"),
        (["--config", "{nope"], "task 'adder': --config is not valid JSON"),
    ],
)
def test_a_bad_command_line_exits_2_naming_the_task(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_arguments("adder", argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
