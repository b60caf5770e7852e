"""Wiring checks: a mis-wired pipeline is refused before anything runs, naming what is wrong."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import pytest

import taskloom
from support import load_helper
from taskloom.streams import WiringError
from taskloom.streams.wiring import compatible

stages = load_helper("stream_stages")


def problems_of(pipeline: taskloom.Pipeline) -> list[str]:
    with pytest.raises(WiringError) as caught:
        pipeline.check()
    assert caught.value.pipeline == pipeline.name
    return caught.value.problems


async def test_deploy_refuses_a_mis_wired_pipeline_before_running_anything() -> None:
    p = taskloom.Pipeline("video")
    p.stage(stages.camera, inputs={"frame": "frames"}, outputs=["encoded"])
    p.stage(stages.encoder, inputs={"data": "encoded"}, outputs=["sizes"])
    async with taskloom.Engine("memory://") as engine:
        with pytest.raises(WiringError) as caught:
            await engine.deploy(p)
        assert engine.store is not None
        assert engine.store.get_deployment("video") is None  # nothing was recorded
    assert "nothing was deployed" in str(caught.value)


def test_metadata_that_disagrees_is_named_field_by_field() -> None:
    p = taskloom.Pipeline("video")
    p.stage(stages.camera, inputs={"frame": "frames"}, outputs=["encoded"])
    p.stage(stages.encoder, inputs={"data": "encoded"}, outputs=["sizes"])
    assert problems_of(p) == [
        "topic 'encoded': stage 'camera' output 'result' -> stage 'encoder' input 'data': "
        "metadata differs: codec 'h264' != 'vp9', rate 30 != 25"
    ]


def test_metadata_agreeing_on_the_keys_both_name_is_accepted() -> None:
    p = taskloom.Pipeline("video")
    p.stage(stages.camera, inputs={"frame": "frames"}, outputs=["encoded"])
    p.stage(stages.player, inputs={"data": "encoded"})
    assert p.check() == {"camera": None, "player": None}


def test_types_that_cannot_match_are_refused_naming_both_ports() -> None:
    p = taskloom.Pipeline("types")
    p.stage(stages.adder, inputs={"a": "x", "b": "y"}, outputs=["sums"])
    p.stage(stages.texts, inputs={"value": "sums"})
    p.stage(stages.floats, inputs={"value": "sums"})  # int feeds float: accepted
    assert problems_of(p) == [
        "topic 'sums': stage 'adder' output 'result' -> stage 'texts' input 'value': "
        "type int cannot feed str"
    ]


def test_unwired_unknown_and_miscounted_ports_are_named() -> None:
    p = taskloom.Pipeline("ports")
    p.stage(stages.adder, inputs={"a": "x", "c": "y"}, outputs=["sums", "extra"])
    p.stage(stages.split, inputs={"value": "x"}, outputs={"out0": "doubled", "out7": "z"})
    assert problems_of(p) == [
        "stage 'adder': 2 output topic(s) given for 1 output(s) (result)",
        "stage 'adder': input 'c' does not exist (inputs: a, b)",
        "stage 'adder': input 'b' is not wired to a topic",
        "stage 'split': output 'out7' does not exist (outputs: out0, out1)",
    ]


def test_names_topics_sources_and_config_are_checked() -> None:
    p = taskloom.Pipeline("names")
    p.stage(stages.running_total, inputs={"value": "bad topic"}, outputs=["ok.topic"])
    p.stage(stages.running_total, inputs={"value": "ok.topic"}, outputs=["more"])
    p.stage(stages.counter_source, inputs={"value": "x"}, outputs=["numbers"])
    p.stage(stages.adder, inputs={"a": "x", "b": "y"}, name="add", config={"step": 1})
    assert problems_of(p) == [
        "stage 'running_total' port 'value': topic 'bad topic' is not a valid name (use "
        "letters, digits, '_' and '-', in parts separated by dots)",
        "stage 'running_total': two stages have this name; give one another `name`",
        "stage 'counter_source': a source (async generator) takes no inputs",
        "stage 'add': config given, but it takes none (it has no `config` parameter or "
        "`Config` class)",
    ]


def test_a_stage_must_be_a_task_or_a_stream_stage() -> None:
    p = taskloom.Pipeline("odd")
    with pytest.raises(WiringError, match=r"needs a @taskloom\.task function"):
        p.stage(len)
    with pytest.raises(WiringError, match="backpressure 'never'"):
        p.stage(stages.adder, backpressure="never")


@pytest.mark.parametrize(
    ("produced", "consumed", "expected"),
    [
        (int, int, True),
        (int, float, True),
        (float, int, False),
        (bool, int, True),
        (int, Any, True),
        (Any, bytes, True),
        (int, int | None, True),
        (int | None, int, False),
        (list[int], list[int], True),
        (list[int], list[str], False),
        (list[int], list, True),
        (dict[str, int], dict[str, float], True),
        (bytes, str, False),
    ],
)
def test_type_compatibility(produced: Any, consumed: Any, expected: bool) -> None:
    assert compatible(produced, consumed) is expected


def test_a_pipeline_reads_from_yaml(tmp_path: Any) -> None:
    helper = tmp_path / "yaml_stages.py"
    helper.write_text(
        "import taskloom\n\n@taskloom.task\ndef double(value: int) -> int:\n    return 2 * value\n"
    )
    file = tmp_path / "pipe.yaml"
    file.write_text(
        "name: doubling\nstages:\n  - task: yaml_stages.py:double\n"
        "    inputs: {value: numbers}\n    outputs: [doubled]\n    queue_size: 10\n"
    )
    pipeline = taskloom.Pipeline.load(file)
    assert [s.name for s in pipeline.stages] == ["double"]
    assert pipeline.get("double").queue_size == 10
    file.write_text("name: doubling\nstages:\n  - task: yaml_stages.py:double\n    inptus: {}\n")
    with pytest.raises(WiringError, match=r"stages\[0\]: unknown key\(s\) inptus"):
        taskloom.Pipeline.load(file)


# --- metadata taken from the config (streamtasks' examples/fntask.py) -------------------------
def test_metadata_comes_from_the_stages_config() -> None:
    p = taskloom.Pipeline("shifted")
    p.stage(stages.bgr24_red_shifter, inputs={"image": "raw"}, outputs=["shifted"],
            config={"width": 640, "height": 360})  # fmt: skip
    p.stage(stages.screen, inputs={"frame": "shifted"}, config={"width": 1280, "height": 360})
    assert problems_of(p) == [
        "topic 'shifted': stage 'bgr24_red_shifter' output 'result' -> stage 'screen' input "
        "'frame': metadata differs: width 640 != 1280"
    ]
    p.configure("screen", {"width": 640})
    assert p.check()["screen"] == stages.ScreenConfig(width=640, height=360)


async def test_the_guides_config_mapped_task_runs_as_a_stage() -> None:
    p = taskloom.Pipeline("shift")
    p.stage(stages.bgr24_red_shifter, inputs={"image": "raw"}, outputs=["shifted"],
            config={"scale": 2.0})  # fmt: skip
    async with taskloom.Engine("memory://") as engine:
        deployment = await engine.deploy(p)
        out = deployment.subscribe("shifted")
        await deployment.publish("raw", bytes([10, 20, 30, 40, 50, 200]), timestamp=1)
        message = await out.get()
        await deployment.stop()
    assert message.value == bytes([10, 20, 60, 40, 50, 255])


@dataclass
class Screen:
    width: int = 1280
    height: int = 720


def test_metadata_from_a_field_the_config_lacks_fails_at_definition() -> None:
    with pytest.raises(taskloom.TaskDefinitionError) as caught:

        @taskloom.task
        def viewer(frame: Annotated[bytes, {"content": "video"}, ["fps"]], config: Screen) -> None:
            return None

    assert str(caught.value) == (
        "task 'viewer': input 'frame': its metadata comes from config field 'fps', which "
        "Screen does not have (fields: height, width)"
    )


def test_metadata_from_the_config_of_a_task_without_one_fails_at_definition() -> None:
    with pytest.raises(taskloom.TaskDefinitionError, match=r"output 'result'.*'rate'.*no config"):

        @taskloom.task
        def camera(frame: int) -> Annotated[bytes, {"content": "video"}, ["rate"]]:
            return b""


def test_a_stage_class_is_checked_when_it_is_defined() -> None:
    with pytest.raises(taskloom.TaskDefinitionError) as caught:

        class Viewer(taskloom.streams.StreamStage):
            inputs = {"frame": Annotated[bytes, ["width"]]}

    assert "stage class" in str(caught.value)
    assert "input 'frame'" in str(caught.value)
    assert "'width'" in str(caught.value)
