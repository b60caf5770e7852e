"""One bad value never harms other runs, on a SQLite file and on PostgreSQL.

Tasks return text UTF-8 cannot encode (a lone surrogate), log it, log NUL (which
PostgreSQL text cannot hold) and raise with both in the message, among a thousand good
runs. Every good run completes with its attempt row, no good submit is refused, and each
bad run ends the way the docs promise: a result that cannot be stored fails its run naming
the task and the run; log lines, progress messages and errors are stored escaped. Inputs
with such text are refused before anything is recorded. Below the engine, the writer
itself is checked with values that skip those checks: the database refuses one change and
only that change's run is affected.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest

import taskloom
from taskloom import Context, Engine, InputValidationError, Run, RunStatus
from taskloom.engine.writer import BatchWriter, ReplacedOutcome
from taskloom.runs import Attempt, LogLine, new_run_id
from taskloom.store import SqlStore

pytestmark = pytest.mark.timeout(120)

SURROGATE = "\ud800"


@taskloom.task
async def good(n: int) -> int:
    return n


@taskloom.task
async def returns_surrogate(n: int) -> dict[str, Any]:
    return {"n": n, "text": f"bad {SURROGATE} text"}


@taskloom.task
async def logs_surrogate(n: int, context: Context) -> int:
    context.logger.info("a line with %s in it", SURROGATE)
    context.progress(0.5, f"half {SURROGATE}")
    return n


@taskloom.task
async def logs_nul(n: int, context: Context) -> int:
    context.logger.info("a line with \x00 in it")
    return n


@taskloom.task
async def raises_bad_text(n: int) -> int:
    raise ValueError(f"broken {SURROGATE} and \x00")


BAD: list[taskloom.TaskDefinition] = [returns_surrogate, logs_surrogate, logs_nul, raises_bad_text]
TASKS: list[taskloom.TaskDefinition] = [good, *BAD]


async def test_a_thousand_good_runs_survive_the_bad_values_among_them(database_url: str) -> None:
    async with Engine(database_url) as engine:
        for task in TASKS:
            engine.register(task)
        chosen = [BAD[(i // 25) % len(BAD)] if i % 25 == 0 else good for i in range(1_200)]
        submits = [engine.submit(task, {"n": i}) for i, task in enumerate(chosen)]
        runs = await asyncio.gather(*submits)  # no submit is refused: gather raises on one
        ended = await engine.wait_many([r.id for r in runs], timeout=60)
        outcome = Counter((run.task, run.status.value) for run in ended)
        assert outcome["good", "completed"] == sum(task is good for task in chosen) >= 1_000
        for task in (logs_surrogate, logs_nul):
            assert outcome[task.name, "completed"] == sum(t is task for t in chosen)
        for task in (returns_surrogate, raises_bad_text):
            assert outcome[task.name, "failed"] == sum(t is task for t in chosen)

        by_task: dict[str, Run] = {}
        for run in ended:
            by_task.setdefault(run.task, run)
            assert run.attempts == 1
            attempts = await engine.get_attempts(run.id)
            assert [(a.number, a.status) for a in attempts] == [(1, run.status.value)]

        failed = by_task[returns_surrogate.name]
        assert failed.error is not None
        assert failed.error.type == "UnstorableValueError"
        assert failed.error.message.startswith(
            f"task 'returns_surrogate': run {failed.id}: result could not be stored: text:"
        )
        assert "lone surrogate '\\ud800' at position 4" in failed.error.message

        raised = by_task[raises_bad_text.name]
        assert raised.error is not None
        assert raised.error.message == "broken \\ud800 and \\x00"  # escaped, not lost

        logged = by_task[logs_surrogate.name]
        lines = [line.message for line in await engine.get_logs(logged.id)]
        assert "a line with \\ud800 in it" in lines
        assert logged.progress_message == "half \\ud800"
        nul_run = by_task[logs_nul.name]
        assert "a line with \\x00 in it" in [
            line.message for line in await engine.get_logs(nul_run.id)
        ]
        # What the engine told is what the store holds.
        for run in by_task.values():
            stored = await engine.get_run(run.id)
            assert (stored.status, stored.result, stored.error) == (
                run.status,
                run.result,
                run.error,
            )
        ids = [run.id for run in ended]

    # A new engine on the same database takes over nothing: every run is finished.
    async with Engine(database_url) as engine:
        for task in TASKS:
            engine.register(task)
        again = [await engine.get_run(run_id) for run_id in ids]
        assert [run.status for run in again] == [run.status for run in ended]
        assert not [r for r in again if r.error and r.error.type == "WorkerLostError"]


async def test_inputs_with_a_lone_surrogate_are_refused_naming_the_field(
    database_url: str,
) -> None:
    @taskloom.task(name="echo_items")
    async def echo(items: list[dict[str, str]], note: str = "") -> int:
        return len(items)

    async with Engine(database_url) as engine:
        engine.register(echo)
        with pytest.raises(InputValidationError) as caught:
            await engine.submit(echo, {"items": [{"a": "ok"}, {"b": f"x{SURROGATE}"}]})
        assert str(caught.value) == (
            "task 'echo_items': input 'items[1].b': text holds a lone surrogate '\\ud800' "
            "at position 1, which UTF-8 cannot encode: send valid Unicode (UTF-8) text"
        )
        with pytest.raises(InputValidationError, match=r"input '\[1\]\.note'"):
            await engine.submit_many(echo, [{"items": []}, {"items": [], "note": SURROGATE}])
        assert await engine.list_runs() == []  # nothing was recorded
        run = await engine.submit(echo, {"items": [{"a": "ünïcode ✓"}]})
        assert (await engine.wait(run.id, timeout=10)).result == 1


# --- the writer alone ---------------------------------------------------------------------


class Collected:
    """Callbacks of the writer, resolved on the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.futures: dict[str, asyncio.Future[Any]] = {}

    def callback(self, name: str) -> Any:
        future = self.futures[name] = self.loop.create_future()

        def done(value: Any) -> None:
            if not future.done():
                future.set_result(value)

        return done

    async def value(self, name: str) -> Any:
        return await asyncio.wait_for(self.futures[name], 20)


def _run(task: str, inputs: dict[str, Any]) -> Run:
    return Run(id=new_run_id(), task=task, inputs=inputs, created_at=time.time())


async def test_the_writer_fails_only_the_change_the_database_refuses(database_url: str) -> None:
    # Values are set after construction, past the checks at the engine's edges, so that
    # the database itself refuses them.
    store = SqlStore(database_url)
    store.open()
    loop = asyncio.get_running_loop()
    writer = BatchWriter(store, loop)
    writer.start_thread()
    got = Collected(loop)
    try:
        good_runs = [_run("good", {"n": i}) for i in range(300)]
        bad_input = _run("good", {"n": 0, "text": SURROGATE})
        for run in good_runs[:150]:
            writer.submit_run(run, got.callback(run.id))
        writer.submit_run(bad_input, got.callback("bad input"))
        for run in good_runs[150:]:
            writer.submit_run(run, got.callback(run.id))
        for run in good_runs:
            assert await got.value(run.id) is None
        refused = await got.value("bad input")
        assert isinstance(refused, InputValidationError)
        assert "input 'text': text holds a lone surrogate" in str(refused)
        assert store.get_run(bad_input.id) is None

        now = time.time()
        for run in good_runs[:20]:
            writer.start(
                run.id,
                {"status": RunStatus.RUNNING, "attempts": 1},
                Attempt(run.id, 1, now),
                got.callback(f"start {run.id}"),
            )
        target = good_runs[5]
        for run in good_runs[:20]:
            result = f"bad {SURROGATE}" if run is target else run.inputs["n"]
            fields = {"status": RunStatus.COMPLETED, "result": result, "finished_at": now}
            writer.finish(
                run.id,
                fields,
                1,
                {"finished_at": now, "status": "completed", "error": None},
                got.callback(f"end {run.id}"),
                task="good",
            )
        nul_line = LogLine(good_runs[6].id, 1, now, "info", "fine")
        nul_line.message = "NUL \x00 here"  # only PostgreSQL refuses this one
        writer.log(nul_line)
        writer.log(LogLine(good_runs[6].id, 1, now, "info", "the line after"))
        for run in good_runs[:20]:
            assert await got.value(f"start {run.id}") is None
            outcome = await got.value(f"end {run.id}")
            if run is target:
                assert isinstance(outcome, ReplacedOutcome)
            else:
                assert outcome is None
        barrier = got.callback("barrier")
        writer.barrier(barrier)
        assert await got.value("barrier") is None

        stored = store.get_run(target.id)
        assert stored is not None
        assert stored.status == RunStatus.FAILED
        assert stored.result is None
        assert stored.error is not None
        assert stored.error.message.startswith(
            f"task 'good': run {target.id}: result could not be stored:"
        )
        assert [a.status for a in store.get_attempts(target.id)] == ["failed"]
        for run in good_runs[:20]:
            if run is not target:
                again = store.get_run(run.id)
                assert again is not None
                assert (again.status, again.result) == (RunStatus.COMPLETED, run.inputs["n"])
                assert [a.status for a in store.get_attempts(run.id)] == ["completed"]
        lines = [line.message for line in store.get_logs(good_runs[6].id)]
        # SQLite keeps the NUL line (read back escaped); PostgreSQL refused it alone.
        expected = (
            ["NUL \\x00 here", "the line after"]
            if database_url.endswith(".db")
            else ["the line after"]
        )
        assert lines == expected
    finally:
        await asyncio.to_thread(writer.close)
        store.close()
