"""Bounded workflows on a real SQLite file: limits on steps and map items, deep data
refused, and large maps taken in slices (concurrency, cancel, rerun and item order kept
across slices)."""

from __future__ import annotations

import asyncio
import json
import resource
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import taskloom
from support import until
from taskloom import Engine, RunStatus, Workflow, WorkflowValidationError
from taskloom.workflows import WorkflowLimitError, WorkflowLimits, load_workflow
from taskloom.workflows.execution import ITEMS_PER_TURN
from taskloom.workflows.operations import child_runs

pytestmark = pytest.mark.timeout(60)

LIVE = {"now": 0, "peak": 0}


@taskloom.task
def numbers(n: int) -> list[int]:
    return list(range(n))


@taskloom.task
async def double(x: int) -> int:
    return 2 * x


@taskloom.task
async def counted(x: int) -> int:
    LIVE["now"] += 1
    LIVE["peak"] = max(LIVE["peak"], LIVE["now"])
    await asyncio.sleep(0)
    LIVE["now"] -= 1
    return x


@taskloom.task
async def blocks(x: int) -> int:
    await asyncio.Event().wait()
    return x


@taskloom.task
def total(values: list[int]) -> int:
    return sum(values)


@pytest.fixture(autouse=True)
def _reset() -> None:
    LIVE.update(now=0, peak=0)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    async with Engine(
        str(tmp_path / "runs.db"),
        concurrency=50,  # a window of 50 + one slice: a map of thousands takes many slices
        shutdown_grace=1.0,
        cancel_grace=1.0,
        workflow_limits=WorkflowLimits(max_steps=20, max_map_items=5_000),
    ) as running:
        yield running


def fan(n: int, *, concurrency: int | None = None) -> Workflow:
    wf = Workflow("fan")
    listing = wf.step(numbers, n=n)
    mapped = wf.map(counted, x=listing.result, name="items", concurrency=concurrency)
    wf.step(total, values=mapped.result)
    return wf


# --- limits -------------------------------------------------------------------------------------


def test_limits_must_be_positive_integers() -> None:
    with pytest.raises(ValueError, match="max_steps must be an integer >= 1"):
        WorkflowLimits(max_steps=0)
    with pytest.raises(ValueError, match="max_map_items"):
        WorkflowLimits(max_map_items=True)


def test_the_default_limits_are_stated() -> None:
    assert WorkflowLimits() == WorkflowLimits(max_steps=10_000, max_map_items=100_000)


async def test_too_many_steps_are_refused_naming_the_limit_and_count(engine: Engine) -> None:
    wf = Workflow("wide")
    for index in range(21):
        wf.step(double, x=index, name=f"s{index}")

    with pytest.raises(WorkflowLimitError) as caught:
        await engine.submit(wf)

    message = str(caught.value)
    assert "workflow 'wide': steps: has 21 steps; the limit is 20 steps" in message
    assert "--max-workflow-steps" in message
    assert "WorkflowLimits(max_steps=" in message
    assert await engine.list_runs() == []  # nothing recorded


def test_a_data_form_over_the_limit_is_refused_before_a_step_is_read() -> None:
    # The steps are not even valid: the count is checked first, so nothing is built.
    data = {"name": "big", "steps": {f"s{i}": None for i in range(100_001)}}
    with pytest.raises(WorkflowLimitError, match="has 100,001 steps; the limit is 10,000"):
        Workflow.from_dict(data, limits=WorkflowLimits())


def test_a_million_step_object_is_refused_fast_and_without_building_it() -> None:
    data = {"name": "huge", "steps": {f"s{i}": {"task": "double"} for i in range(1_000_000)}}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(WorkflowLimitError, match="1,000,000 steps"):
        Workflow.from_dict(data, limits=WorkflowLimits())
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 10 * 1024


def test_a_yaml_file_over_the_limit_stops_being_read_at_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "wide.yaml"
    lines = ["name: wide", "steps:"]
    lines += [f"  s{i}:\n    task: double\n    inputs: {{x: {i}}}" for i in range(50)]
    path.write_text("\n".join(lines), encoding="utf-8")

    with pytest.raises(WorkflowLimitError) as caught:
        load_workflow(path, limits=WorkflowLimits(max_steps=20))
    assert "steps: has more than 20; the limit is 20 steps" in str(caught.value)
    assert load_workflow(path, limits=WorkflowLimits(max_steps=50)).steps.keys() >= {"s49"}


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_deeply_nested_files_are_refused_with_a_clear_error(tmp_path: Path, suffix: str) -> None:
    deep = {"name": "deep", "steps": {"a": {"task": "double", "inputs": {"x": 1}}}}
    value: object = 1
    for _ in range(900):
        value = [value]
    deep["steps"]["a"]["inputs"]["y"] = value  # type: ignore[index]
    path = tmp_path / f"deep{suffix}"
    text = json.dumps(deep)  # JSON is YAML too
    path.write_text(text, encoding="utf-8")

    with pytest.raises(WorkflowValidationError, match="nested deeper than 64 levels"):
        load_workflow(path)


async def test_deep_inputs_of_a_python_workflow_are_refused(engine: Engine) -> None:
    value: object = 1
    for _ in range(70):
        value = [value]
    wf = Workflow("deep")
    wf.step(total, values=value)
    with pytest.raises(WorkflowValidationError, match="step 'total': inputs nested deeper"):
        await engine.submit(wf)


async def test_a_literal_map_over_the_limit_is_refused_before_it_runs(engine: Engine) -> None:
    wf = Workflow("literal")
    wf.map(double, x=list(range(5_001)), name="items")
    with pytest.raises(WorkflowLimitError, match="step 'items': input 'x': maps over 5,001"):
        await engine.submit(wf)


async def test_a_map_over_a_result_over_the_limit_fails_its_step(engine: Engine) -> None:
    run = await engine.submit(fan(5_001))
    done = await engine.wait(run.id, timeout=30)

    assert done.status == RunStatus.FAILED
    assert done.error is not None
    assert "step 'items' failed: WorkflowLimitError" in done.error.message
    assert "maps over 5,001 items; the limit is 5,000 items in one map" in done.error.message
    assert "--max-map-items" in done.error.message
    await engine.flush()
    assert engine.store is not None
    steps = Counter(
        (r.idempotency_key or "").split("/")[1]
        for r in await asyncio.to_thread(child_runs, engine.store, run.id)
    )
    assert steps == {"numbers": 1, "items": 1, "total": 1}  # no item was inserted


# --- large maps in slices ------------------------------------------------------------------


async def test_a_map_larger_than_its_window_keeps_item_order(engine: Engine) -> None:
    n = 5_000  # 100 slices of the window of this engine
    run = await engine.submit(fan(n))
    done = await engine.wait(run.id, timeout=50)

    assert done.status == RunStatus.COMPLETED, done.error
    assert done.result["outputs"]["total"] == sum(range(n))
    assert LIVE["peak"] <= engine.concurrency
    await engine.flush()
    assert engine.store is not None
    items = [
        r
        for r in await asyncio.to_thread(child_runs, engine.store, run.id)
        if (r.idempotency_key or "").split("/")[1] == "items"
    ]
    assert len(items) == n
    assert all(r.inputs == {"x": int((r.idempotency_key or "").split("/")[2])} for r in items)


async def test_a_map_concurrency_holds_across_slices(engine: Engine) -> None:
    run = await engine.submit(fan(3 * ITEMS_PER_TURN, concurrency=7))
    done = await engine.wait(run.id, timeout=30)

    assert done.status == RunStatus.COMPLETED, done.error
    assert LIVE["peak"] == 7


async def test_cancel_of_a_large_map_ends_with_nothing_running(engine: Engine) -> None:
    wf = Workflow("stuck")
    listing = wf.step(numbers, n=3_000)
    wf.map(blocks, x=listing.result, name="items")
    run = await engine.submit(wf)

    async def all_slots_taken() -> bool:
        return engine._queue.active == engine.concurrency

    await until(all_slots_taken)
    cancelled = await engine.cancel(run.id)

    assert cancelled.status == RunStatus.CANCELLED
    await engine.flush()
    assert engine.store is not None
    stored = await asyncio.to_thread(child_runs, engine.store, run.id)
    assert not [r for r in stored if not r.is_finished]
    items = [r for r in stored if (r.idempotency_key or "").split("/")[1] == "items"]
    # Only the window was ever inserted; the items after it were never recorded.
    assert engine.concurrency <= len(items) < 3_000
    assert {r.status for r in items} == {RunStatus.CANCELLED}


async def test_rerun_reuses_the_items_of_every_slice(engine: Engine) -> None:
    first = await engine.submit(fan(1_000))
    assert (await engine.wait(first.id, timeout=30)).status == RunStatus.COMPLETED

    again = await engine.rerun_workflow(first.id)
    done = await engine.wait(again.id, timeout=30)

    assert done.status == RunStatus.COMPLETED, done.error
    assert done.result["reused"] == 1_002  # the listing, every item, the total
    assert LIVE["peak"] > 0  # the first run did run them
