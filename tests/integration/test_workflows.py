"""Workflows on a real database: results flowing downstream, map and gather, failure and
skip, optional dependencies, validation before anything runs, rerun, cancel, recovery."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import taskloom
from support import until
from taskloom import Engine, InputValidationError, RunStatus, Workflow, WorkflowValidationError
from taskloom.runs import Run, new_run_id
from taskloom.store import open_store
from taskloom.workflows.operations import child_runs

pytestmark = pytest.mark.timeout(60)

CALLS: Counter[str] = Counter()
FLAKY = {"fail": True}
LIVE = {"now": 0, "peak": 0}


@taskloom.task
def numbers(n: int) -> list[int]:
    CALLS["numbers"] += 1
    return list(range(1, n + 1))


@taskloom.task
async def double(x: int) -> int:
    CALLS["double"] += 1
    return 2 * x


@taskloom.task
async def add(a: int, b: int = 100) -> int:
    CALLS["add"] += 1
    return a + b


@taskloom.task
def total(values: list[int]) -> int:
    CALLS["total"] += 1
    return sum(values)


@taskloom.task
def describe(value: int) -> str:
    return f"value {value}"


@taskloom.task
async def flaky(x: int) -> int:
    CALLS["flaky"] += 1
    if FLAKY["fail"]:
        raise ValueError("flaky failed")
    return x


@taskloom.task
async def fails_on_odd(x: int) -> int:
    if x % 2:
        raise ValueError(f"odd item {x}")
    return x


@taskloom.task
async def counted(x: int) -> int:
    LIVE["now"] += 1
    LIVE["peak"] = max(LIVE["peak"], LIVE["now"])
    await asyncio.sleep(0.002)
    LIVE["now"] -= 1
    return x


@taskloom.task
async def blocks(x: int) -> int:
    await asyncio.Event().wait()
    return x


FIRST_CALL_BLOCKS: list[int] = []


@taskloom.task
async def blocks_the_first_time(x: int) -> str:
    FIRST_CALL_BLOCKS.append(x)
    if len(FIRST_CALL_BLOCKS) == 1:
        await asyncio.Event().wait()
    return str(x)


ORDER: list[str] = []


@taskloom.task
async def record(label: str) -> str:
    ORDER.append(label)
    return label


@taskloom.task(retries=0, retry_backoff=0.01, retry_jitter=False)
async def fails_twice(context: taskloom.Context) -> int:
    if context.attempt < 3:
        raise ValueError(f"attempt {context.attempt}")
    return context.attempt


@pytest.fixture(autouse=True)
def _reset() -> None:
    ORDER.clear()
    CALLS.clear()
    FLAKY["fail"] = True
    LIVE.update(now=0, peak=0)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    """An engine on a SQLite file (the tests that matter most also run on PostgreSQL)."""
    async with Engine(str(tmp_path / "runs.db"), shutdown_grace=1.0, cancel_grace=1.0) as running:
        yield running


@pytest.fixture
async def any_engine(database_url: str) -> AsyncIterator[Engine]:
    """An engine on a SQLite file, and on PostgreSQL when it is reachable."""
    async with Engine(database_url, shutdown_grace=1.0, cancel_grace=1.0) as running:
        yield running


async def children(engine: Engine, run_id: str) -> dict[str, Run]:
    """The stored step runs of a workflow run, by the step part of their key."""
    await engine.flush()
    assert engine.store is not None
    found = await asyncio.to_thread(child_runs, engine.store, run_id)
    return {(r.idempotency_key or "").partition("/")[2]: r for r in found}


# --- results flow downstream ------------------------------------------------------------------


async def test_a_diamond_passes_results_to_the_join(any_engine: Engine) -> None:
    wf = Workflow("diamond", inputs={"x": int})
    top = wf.step(add, a=wf.input("x"), b=1, name="top")
    left = wf.step(double, x=top.result, name="left")
    right = wf.step(add, a=top.result, b=10, name="right")
    join = wf.step(add, a=left.result, b=right.result, name="join")
    wf.output("answer", join.result)

    run = await any_engine.submit(wf, {"x": 4})
    assert run.task == "workflow:diamond"
    done = await any_engine.wait(run.id, timeout=10)

    assert done.status == RunStatus.COMPLETED
    assert done.result["outputs"] == {"answer": (4 + 1) * 2 + (4 + 1 + 10)}
    assert done.result["steps"] == {"completed": 4}
    steps = await children(any_engine, run.id)
    assert set(steps) == {"top", "left", "right", "join"}
    assert all(s.parent_id == run.id and s.status == "completed" for s in steps.values())
    assert steps["join"].inputs == {"a": 10, "b": 15}
    stored = await any_engine.get_run(run.id)
    assert stored.status == "completed"
    assert stored.config is not None
    assert "join" in stored.config["workflow"]["steps"]


async def test_a_chain_hands_each_result_to_the_next(engine: Engine) -> None:
    wf = Workflow("chain")
    previous = wf.step(add, a=0, b=1, name="s0")
    for index in range(1, 30):
        previous = wf.step(add, a=previous.result, b=1, name=f"s{index}")
    done = await engine.wait((await engine.submit(wf)).id, timeout=10)
    assert done.status == "completed"
    assert done.result["outputs"] == {"s29": 30}
    assert CALLS["add"] == 30


async def test_a_map_runs_once_per_item_and_the_gather_gets_them_in_order(engine: Engine) -> None:
    wf = Workflow("fan")
    listing = wf.step(numbers, n=40)
    doubled = wf.map(counted, x=listing.result, concurrency=3, name="items")
    summed = wf.step(total, values=doubled.result)
    wf.output("items", doubled.result)
    wf.output("sum", summed.result)
    run = await engine.submit(wf)
    done = await engine.wait(run.id, timeout=10)

    assert done.status == "completed"
    assert done.result["outputs"] == {"items": list(range(1, 41)), "sum": 820}
    assert LIVE["peak"] == 3  # the step's concurrency limit held, and was used
    steps = await children(engine, run.id)
    assert sorted(k for k in steps if k.startswith("items/")) == sorted(
        f"items/{i}" for i in range(40)
    )
    assert steps["items/7"].inputs == {"x": 8}


async def test_a_reference_can_pick_an_item_of_a_result(engine: Engine) -> None:
    wf = Workflow("pick")
    listing = wf.step(numbers, n=5)
    wf.step(double, x=listing.result[-1], name="last")
    done = await engine.wait((await engine.submit(wf)).id, timeout=10)
    assert done.result["outputs"] == {"last": 10}


# --- failure, skip, optional ------------------------------------------------------------------


async def test_a_failing_step_skips_exactly_its_dependents(any_engine: Engine) -> None:
    wf = Workflow("breaks")
    root = wf.step(numbers, n=3, name="root")
    broken = wf.step(flaky, x=root.result[0], name="broken")
    after_broken = wf.step(double, x=broken.result, name="after_broken")
    wf.step(double, x=after_broken.result, name="two_after")
    wf.step(total, values=root.result, name="independent")

    done = await any_engine.wait((await any_engine.submit(wf)).id, timeout=10)

    assert done.status == RunStatus.FAILED
    assert done.error is not None
    assert "step 'broken' failed: ValueError: flaky failed" in done.error.message
    assert "skipped: after_broken, two_after" in done.error.message
    steps = await children(any_engine, done.id)
    statuses = {name: str(run.status) for name, run in steps.items()}
    assert statuses == {
        "root": "completed",
        "broken": "failed",
        "after_broken": "skipped",
        "two_after": "skipped",
        "independent": "completed",
    }
    assert CALLS["double"] == 0
    assert done.result["steps"] == {"completed": 2, "failed": 1, "skipped": 2}


async def test_an_optional_dependency_lets_its_dependent_run(engine: Engine) -> None:
    wf = Workflow("optional")
    broken = wf.step(flaky, x=1, name="broken")
    wf.step(add, a=5, b=broken.result, optional=[broken], name="tolerant")

    done = await engine.wait((await engine.submit(wf)).id, timeout=10)

    steps = await children(engine, done.id)
    assert steps["tolerant"].status == "completed"
    assert steps["tolerant"].result == 105  # the input's default stood in for the result
    assert done.status == "failed"
    assert done.error is not None
    assert "'broken'" in done.error.message


async def test_a_map_can_keep_its_successes(engine: Engine) -> None:
    wf = Workflow("partial")
    listing = wf.step(numbers, n=6)
    kept = wf.map(fails_on_odd, x=listing.result, on_failure="continue", name="kept")
    wf.step(total, values=kept.result, name="sum")
    done = await engine.wait((await engine.submit(wf)).id, timeout=10)

    assert done.status == "completed"
    assert done.result["outputs"] == {"sum": 2 + 4 + 6}
    failures = done.result["failures"]["kept"]
    assert [f["index"] for f in failures] == [0, 2, 4]
    assert "odd item 1" in failures[0]["error"]


async def test_a_map_fails_when_an_item_fails_by_default(engine: Engine) -> None:
    wf = Workflow("strict")
    listing = wf.step(numbers, n=4)
    items = wf.map(fails_on_odd, x=listing.result, name="items")
    wf.step(total, values=items.result, name="sum")
    done = await engine.wait((await engine.submit(wf)).id, timeout=10)

    assert done.status == "failed"
    assert done.error is not None
    assert "step 'items' failed: MapItemsFailed: 2 of 4 items failed" in done.error.message
    assert (await children(engine, done.id))["sum"].status == "skipped"


# --- per-step overrides ---------------------------------------------------------------------


async def test_steps_ready_together_run_higher_priority_first(tmp_path: Path) -> None:
    async with Engine(str(tmp_path / "runs.db"), concurrency=1) as engine:
        wf = Workflow("priorities")
        root = wf.step(record, label="root", name="root")
        for label, priority in (("ordinary", 0), ("urgent", 5), ("later", -1)):
            wf.step(record, label=label, after=[root], priority=priority, name=label)
        done = await engine.wait((await engine.submit(wf)).id, timeout=10)
        assert done.status == "completed"
        assert ORDER == ["root", "urgent", "ordinary", "later"]
        steps = await children(engine, done.id)
        assert steps["urgent"].priority == 5


async def test_a_step_overrides_retries_and_timeout(engine: Engine) -> None:
    wf = Workflow("overrides")
    wf.step(fails_twice, retries=2, name="retried")
    wf.step(blocks, x=1, timeout=0.05, name="timed_out")
    done = await engine.wait((await engine.submit(wf)).id, timeout=10)

    steps = await children(engine, done.id)
    assert steps["retried"].status == "completed"
    assert steps["retried"].attempts == 3
    assert steps["timed_out"].status == "failed"
    assert steps["timed_out"].error is not None
    assert steps["timed_out"].error.type == "TaskTimeoutError"
    assert blocks.options.timeout is None  # the task itself is left alone


# --- validation before anything runs ---------------------------------------------------------


async def _no_runs(engine: Engine) -> None:
    assert await engine.list_runs() == []


async def test_a_cycle_is_rejected_naming_its_steps(engine: Engine) -> None:
    wf = Workflow("loop")
    wf.step(add, a="${steps.second.result}", name="first")
    wf.step(add, a="${steps.first.result}", name="second")
    with pytest.raises(WorkflowValidationError, match="cycle") as caught:
        await engine.submit(wf)
    assert caught.value.step in {"first", "second"}
    assert "first" in str(caught.value)
    assert "second" in str(caught.value)
    await _no_runs(engine)


async def test_an_unknown_task_is_rejected_naming_the_step(engine: Engine) -> None:
    wf = Workflow("unknown")
    wf.step("no_such_task", name="mystery")
    with pytest.raises(WorkflowValidationError, match="step 'mystery': unknown task"):
        await engine.submit(wf)
    await _no_runs(engine)


async def test_a_dangling_reference_is_rejected_naming_the_step(engine: Engine) -> None:
    wf = Workflow("dangling")
    wf.step(double, x="${steps.nowhere.result}", name="lost")
    with pytest.raises(WorkflowValidationError) as caught:
        await engine.submit(wf)
    assert caught.value.step == "lost"
    assert "${steps.nowhere.result} refers to an unknown step" in str(caught.value)
    await _no_runs(engine)


async def test_a_reference_of_the_wrong_type_is_rejected(engine: Engine) -> None:
    wf = Workflow("types")
    text = wf.step(describe, value=1, name="text")
    wf.step(double, x=text.result, name="number")
    with pytest.raises(WorkflowValidationError) as caught:
        await engine.submit(wf)
    assert caught.value.step == "number"
    assert "gives string, but the input expects integer" in str(caught.value)
    await _no_runs(engine)


async def test_invalid_workflow_inputs_name_the_field(engine: Engine) -> None:
    wf = Workflow("typed", inputs={"x": int})
    wf.step(double, x=wf.input("x"))
    with pytest.raises(InputValidationError, match=r"workflow:typed.*'x'.*integer"):
        await engine.submit(wf, {"x": "many"})
    await _no_runs(engine)


# --- rerun ---------------------------------------------------------------------------------


async def test_rerun_reuses_completed_steps_and_runs_the_rest(any_engine: Engine) -> None:
    wf = Workflow("resumable")
    listing = wf.step(numbers, n=3, name="listing")
    doubled = wf.map(double, x=listing.result, name="doubled")
    first = wf.step(total, values=doubled.result, name="first")
    broken = wf.step(flaky, x=first.result, name="broken")
    wf.step(add, a=broken.result, b=1, name="last")

    failed = await any_engine.wait((await any_engine.submit(wf)).id, timeout=10)
    assert failed.status == "failed"
    assert dict(CALLS) == {"numbers": 1, "double": 3, "total": 1, "flaky": 1}

    FLAKY["fail"] = False
    again = await any_engine.rerun_workflow(failed.id)
    done = await any_engine.wait(again.id, timeout=10)

    assert done.status == "completed"
    assert done.result["outputs"] == {"last": 13}
    assert done.result["reused"] == 5  # listing, three items of doubled, first
    # Reused steps were not called again; the failed and the skipped ones ran.
    assert dict(CALLS) == {"numbers": 1, "double": 3, "total": 1, "flaky": 2, "add": 1}
    steps = await children(any_engine, again.id)
    assert all(s.status == "completed" for s in steps.values())
    assert steps["listing"].attempts == 0  # reused: no attempt was made


# --- cancel, close, recovery ------------------------------------------------------------------


async def test_cancel_leaves_no_step_running_or_pending(any_engine: Engine) -> None:
    wf = Workflow("cancelled")
    listing = wf.step(numbers, n=6)
    stuck = wf.map(blocks, x=listing.result, concurrency=2, name="stuck")
    wf.step(total, values=stuck.result, name="after")
    run = await any_engine.submit(wf)

    async def two_running() -> bool:
        steps = await children(any_engine, run.id)
        return sum(s.status == "running" for s in steps.values()) == 2

    await until(two_running)
    cancelled = await any_engine.cancel(run.id)

    assert cancelled.status == RunStatus.CANCELLED
    steps = await children(any_engine, run.id)
    assert not [s for s in steps.values() if s.status in ("running", "pending")]
    assert Counter(str(s.status) for s in steps.values()) == {"completed": 1, "cancelled": 7}
    assert (await any_engine.get_run(run.id)).status == "cancelled"


async def test_a_workflow_is_cancelled_from_another_engine(database_url: str) -> None:
    async with (
        Engine(database_url, heartbeat_interval=0.05, cancel_grace=1.0) as owner,
        Engine(database_url, recover=False) as other,
    ):
        wf = Workflow("remote")
        stuck = wf.step(blocks, x=1, name="stuck")
        wf.step(double, x=stuck.result, name="after")
        run = await owner.submit(wf)
        await until(lambda: _step_status(owner, run.id, "stuck", "running"))
        await other.cancel(run.id)  # only a request: the owner stops it on a heartbeat
        done = await owner.wait(run.id, timeout=10)
        assert done.status == "cancelled"
        steps = await children(owner, run.id)
        assert {name: str(r.status) for name, r in steps.items()} == {
            "stuck": "cancelled",
            "after": "cancelled",
        }


async def test_a_workflow_left_by_an_engine_that_closed_is_resumed_by_the_next(
    database_url: str,
) -> None:
    FIRST_CALL_BLOCKS.clear()
    wf = Workflow("closing")
    stuck = wf.step(blocks_the_first_time, x=1, name="stuck")
    wf.step(record, label=stuck.result, name="after")
    async with Engine(database_url, shutdown_grace=0.5, cancel_grace=0.5) as engine:
        run = await engine.submit(wf)
        await until(lambda: _step_status(engine, run.id, "stuck", "running"))
    async with Engine(database_url, recover=False) as reader:
        left = await reader.get_run(run.id)
        assert left.status == "running"  # let go of, not ended
        assert left.worker_id is None
        assert (await children(reader, run.id))["stuck"].status == "pending"
    ORDER.clear()
    async with Engine(database_url, tasks=[blocks_the_first_time, record]) as engine:
        done = await engine.wait(run.id, timeout=20)
        assert done.status == "completed", done.error
        assert done.result["outputs"] == {"after": "1"}
        steps = await children(engine, run.id)
        assert {name: str(r.status) for name, r in steps.items()} == {
            "stuck": "completed",
            "after": "completed",
        }
    assert FIRST_CALL_BLOCKS == [1, 1]  # interrupted once, then run to its end
    assert ORDER == ["1"]


async def _step_status(engine: Engine, run_id: str, step: str, status: str) -> bool:
    steps = await children(engine, run_id)
    return step in steps and steps[step].status == status


async def test_a_workflow_whose_engine_died_is_resumed_where_its_tasks_are_known(
    database_url: str,
) -> None:
    """Left `running` by an engine that is gone, with its first step's run pending: an
    engine that cannot resolve the step's task leaves it be; one that can resumes it,
    runs the step it finds (given back by the reaper) and inserts the rest."""
    store = open_store(database_url)
    now = time.time()
    steps: dict[str, dict[str, Any]] = {
        "a": {"task": "double", "inputs": {"x": 1}},
        "b": {"task": "double"},
    }
    steps["b"]["inputs"] = {"x": "${steps.a.result}"}
    workflow_run = Run(
        id=new_run_id(),
        task="workflow:orphan",
        inputs={},
        status=RunStatus.RUNNING,
        worker_id="dead-worker",
        created_at=now,
        config={"workflow": {"name": "orphan", "steps": steps}},
    )
    step = Run(
        id=new_run_id(),
        task="double",
        inputs={"x": 1},
        parent_id=workflow_run.id,
        idempotency_key=f"{workflow_run.id}/a",
        worker_id="dead-worker",
        created_at=now,
    )
    from taskloom.store import WriteBatch

    store.write(WriteBatch(new_runs=[workflow_run, step]))
    store.close()

    async with Engine(database_url) as engine:  # `double` is unknown here
        assert engine.store is not None
        await until(lambda: _owner_is(engine, workflow_run.id, None))
        assert (await engine.get_run(workflow_run.id)).status == "running"

    async with Engine(database_url, tasks=[double]) as engine:
        done = await engine.wait(workflow_run.id, timeout=20)
        assert done.status == "completed", done.error
        assert done.result["outputs"] == {"b": 4}
        found = await children(engine, workflow_run.id)
        assert found["a"].id == step.id  # the step run it found, not a second one
        assert found["a"].result == 2
        assert found["b"].inputs == {"x": 2}


async def _owner_is(engine: Engine, run_id: str, owner: str | None) -> bool:
    return (await engine.get_run(run_id)).worker_id == owner


# --- the data form --------------------------------------------------------------------------


async def test_a_yaml_workflow_runs_like_a_python_one(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "sums.yaml"
    module = __name__
    path.write_text(
        f"""
name: sums
inputs:
  n: {{type: integer}}
  bonus: {{type: integer, default: 7}}
steps:
  listing:
    task: {module}:numbers
    inputs: {{n: "${{inputs.n}}"}}
  doubled:
    task: {module}:double
    map: x
    inputs: {{x: "${{steps.listing.result}}"}}
    priority: 5
  summed:
    task: {module}:add
    inputs: {{a: "${{steps.doubled.result[0]}}", b: "${{inputs.bonus}}"}}
outputs:
  first_plus_bonus: "${{steps.summed.result}}"
  all: "${{steps.doubled.result}}"
""",
        encoding="utf-8",
    )
    wf = taskloom.load_workflow(path)
    done = await engine.wait((await engine.submit(wf, {"n": 3})).id, timeout=10)
    assert done.status == "completed"
    assert done.result["outputs"] == {"first_plus_bonus": 9, "all": [2, 4, 6]}
    steps = await children(engine, done.id)
    assert steps["doubled/0"].priority == 5
    assert Workflow.from_dict(wf.to_dict()).to_dict() == wf.to_dict()
