"""`on_success` and `on_failure`: the task named runs once per final outcome, with the
finished run's summary, never once per attempt; on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

import taskloom
from support import until
from taskloom import Engine, TaskDefinitionError

pytestmark = pytest.mark.timeout(60)


@taskloom.task
def noted(run: dict[str, Any]) -> str:
    """What a follow-up is given."""
    return f"{run['task']} {run['status']}"


@taskloom.task(retries=2, retry_backoff=0.0, on_failure="noted", on_success=noted)
def flaky(fail: bool) -> str:
    if fail:
        raise RuntimeError("it broke")
    return "fine"


async def _follow_ups(engine: Engine) -> list[taskloom.Run]:
    return await engine.list_runs(task="noted")


async def test_on_failure_runs_once_after_the_last_attempt(database_url: str) -> None:
    async with Engine(database_url, tasks=[noted, flaky]) as engine:
        run = await engine.run("flaky", {"fail": True})
        assert (run.status, run.attempts) == ("failed", 3)

        async def followed() -> bool:
            runs = await _follow_ups(engine)
            return len(runs) == 1 and runs[0].is_finished

        await until(followed, timeout=20)
        (follow_up,) = await _follow_ups(engine)
        assert follow_up.idempotency_key == f"on_failure:{run.id}"
        assert follow_up.result == "flaky failed"
        summary = follow_up.inputs["run"]
        assert (summary["id"], summary["attempts"], summary["inputs"]) == (
            run.id,
            3,
            {"fail": True},
        )
        assert summary["error"]["type"] == "RuntimeError"
        assert summary["error"]["message"] == "it broke"
        # A run that succeeds afterwards: its on_success, and still one on_failure.
        ok = await engine.run("flaky", {"fail": False})

        async def both() -> bool:
            return len(await _follow_ups(engine)) == 2

        await until(both, timeout=20)
        keys = sorted(r.idempotency_key or "" for r in await _follow_ups(engine))
        assert keys == sorted([f"on_failure:{run.id}", f"on_success:{ok.id}"])


def test_a_follow_up_option_must_name_a_task() -> None:
    with pytest.raises(TaskDefinitionError, match="option 'on_failure' expects a task"):

        @taskloom.task(on_failure=42)
        def broken() -> None: ...
