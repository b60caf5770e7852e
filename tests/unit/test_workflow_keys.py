"""The keys of step runs: written by `step_key`, read back by `StepKey`, grouped by step."""

from __future__ import annotations

from taskloom.runs import Run
from taskloom.workflows.keys import StepKey, item_index, runs_by_step, step_key


def _run(key: str | None) -> Run:
    return Run(id=f"r-{key}", task="t", inputs={}, idempotency_key=key)


def test_a_key_reads_back_as_it_was_written() -> None:
    assert StepKey.parse(step_key("wf1", "resize")) == StepKey("wf1", "resize", None)
    assert StepKey.parse(step_key("wf1", "resize", 7)) == StepKey("wf1", "resize", 7)
    assert StepKey("wf1", "resize", 7).key == "wf1/resize/7"
    assert StepKey("wf1", "resize", 7).within == "resize/7"
    assert StepKey("wf1", "resize", None).within == "resize"


def test_keys_of_other_runs_are_not_step_keys() -> None:
    for key in ("", "schedule:nightly@2026-12-01", "wf1/", "wf1/resize/x"):
        assert StepKey.parse(key) is None, key
    assert StepKey.of(_run(None)) is None


def test_runs_are_grouped_by_step_with_map_items_in_item_order() -> None:
    children = [
        _run("wf1/thumb/10"),
        _run("wf1/list"),
        _run("wf1/thumb/2"),
        _run("other/list"),  # another workflow's step
        _run(None),
    ]
    steps = runs_by_step("wf1", children)
    assert sorted(steps) == ["list", "thumb"]
    assert [item_index(r) for r in steps["thumb"]] == [2, 10]
    assert [item_index(r) for r in steps["list"]] == [-1]
