"""Wiring checks: a mis-wired pipeline is refused before anything runs, naming what is wrong."""

from __future__ import annotations

from typing import Any

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
