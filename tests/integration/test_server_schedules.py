"""`/api/schedules` and `POST /api/runs` with a due time, on SQLite and PostgreSQL: what the
API lists, adds, pauses, resumes, triggers and removes; bad input is a 422 naming the
field and records nothing; a viewer reads but does not change."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import taskloom
from support import until
from taskloom.server.app import create_app
from taskloom.server.tokens import create_token

pytestmark = pytest.mark.timeout(60)


@taskloom.task(schedule=taskloom.Cron("30 2 * * *", timezone="Europe/Zurich"))
def nightly() -> str:
    return "night"


@taskloom.task
def report(region: str) -> str:
    return region


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[taskloom.Engine]:
    async with taskloom.Engine(database_url, tasks=[nightly, report], shutdown_grace=0.5) as e:
        yield e


@pytest.fixture
async def app(engine: taskloom.Engine) -> AsyncIterator[FastAPI]:
    app = create_app(engine, database="schedules.db")
    yield app
    app.state.events.close()


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost/api") as client:
        yield client


HOURLY = {
    "name": "hourly-report",
    "task": "report",
    "cron": "0 * * * *",
    "inputs": {"region": "us"},
}


async def test_schedules_are_listed_added_paused_resumed_and_removed(
    api: httpx.AsyncClient,
) -> None:
    listed = (await api.get("/schedules")).json()
    assert [(s["name"], s["source"], s["recorded"]) for s in listed] == [
        ("nightly", "task", True)  # recorded when the engine started
    ]
    added = await api.post("/schedules", json={**HOURLY, "timezone": "America/New_York"})
    assert added.status_code == 201, added.text
    body = added.json()
    assert (body["task"], body["timezone"], body["paused"]) == ("report", "America/New_York", False)
    assert len(body["next_fires"]) == 5
    assert datetime.fromisoformat(body["next_fire"].replace("Z", "+00:00")).minute == 0

    fires = (await api.get("/schedules/hourly-report/next", params={"count": 3})).json()
    assert fires["fires"] == body["next_fires"][:3]
    paused = (await api.post("/schedules/hourly-report/pause")).json()
    assert (paused["paused"], paused["next_fires"]) == (True, [])
    assert (await api.get("/schedules/hourly-report/next")).json() == {"fires": []}
    resumed = (await api.post("/schedules/hourly-report/resume")).json()
    assert resumed["paused"] is False
    assert len(resumed["next_fires"]) == 5

    again = await api.post("/schedules", json=HOURLY)
    assert again.status_code == 422
    assert again.json()["error"]["field"] == "name"
    assert (await api.delete("/schedules/hourly-report")).status_code == 204
    missing = await api.get("/schedules/hourly-report")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "ScheduleNotFoundError"


async def test_a_trigger_makes_a_run_listed_among_the_schedule_s_runs(
    api: httpx.AsyncClient, engine: taskloom.Engine
) -> None:
    assert (await api.post("/schedules", json=HOURLY)).status_code == 201
    triggered = await api.post("/schedules/hourly-report/trigger")
    assert triggered.status_code == 202
    key = triggered.json()["idempotency_key"]
    assert key.startswith("schedule:hourly-report@manual:")

    async def listed() -> bool:
        detail = (await api.get("/schedules/hourly-report")).json()
        return [r["idempotency_key"] for r in detail["runs"]] == [key]

    await until(listed, timeout=20)
    (run,) = (await api.get("/schedules/hourly-report")).json()["runs"]
    done = await engine.wait(run["id"], timeout=20)
    assert (done.status, done.result) == ("completed", "us")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"cron": "0 25 * * *"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"cron": None, "interval": 30, "start": "tomorrow"}, "start"),
        ({"cron": None}, "cron"),
    ],
)
async def test_a_bad_schedule_is_a_422_naming_the_field(
    api: httpx.AsyncClient, change: dict[str, Any], field: str
) -> None:
    response = await api.post("/schedules", json={**HOURLY, **change})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["type"], error["field"]) == ("ScheduleError", field)
    assert error["message"].startswith(f"{field}:")
    assert [s["name"] for s in (await api.get("/schedules")).json()] == ["nightly"]


async def test_bad_inputs_or_an_unknown_task_record_no_schedule(api: httpx.AsyncClient) -> None:
    bad_inputs = await api.post("/schedules", json={**HOURLY, "inputs": {"region": 5}})
    assert bad_inputs.status_code == 422
    assert bad_inputs.json()["error"]["type"] == "InputValidationError"
    unknown = await api.post("/schedules", json={**HOURLY, "task": "nope"})
    assert unknown.status_code == 404
    assert [s["name"] for s in (await api.get("/schedules")).json()] == ["nightly"]


async def test_a_run_posted_with_a_delay_or_a_time_waits_for_it(
    api: httpx.AsyncClient, engine: taskloom.Engine
) -> None:
    delayed = await api.post(
        "/runs", json={"task": "report", "inputs": {"region": "eu"}, "delay": 0.5}
    )
    assert delayed.status_code == 201, delayed.text
    run = delayed.json()
    assert run["status"] == "pending"
    assert run["scheduled_at"] - run["created_at"] == pytest.approx(0.5, abs=0.05)
    done = await engine.wait(run["id"], timeout=10)
    assert done.started_at is not None
    assert done.started_at >= run["scheduled_at"]
    at = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)
    later = await api.post(
        "/runs",
        json={"task": "report", "inputs": {"region": "eu"}, "run_at": "2031-05-01T12:00:00Z"},
    )
    assert later.json()["scheduled_at"] == at.timestamp()
    bad = await api.post(
        "/runs", json={"task": "report", "inputs": {"region": "eu"}, "run_at": "soon"}
    )
    assert bad.status_code == 422
    error = bad.json()["error"]
    assert (error["type"], error["task"]) == ("InputValidationError", "report")
    assert [e["field"] for e in error["errors"]] == ["run_at"]


async def test_a_viewer_reads_schedules_but_does_not_change_them(
    engine: taskloom.Engine, database_url: str
) -> None:
    assert engine.store is not None
    viewer, _ = create_token(engine.store, "viewer", name="desk")
    operator, _ = create_token(engine.store, "operator", name="ops")
    app = create_app(engine, database="schedules.db", auth_required=True)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost/api") as api:
            seen = await api.get("/schedules", headers={"Authorization": f"Bearer {viewer}"})
            assert seen.status_code == 200
            refused = await api.post(
                "/schedules/nightly/pause", headers={"Authorization": f"Bearer {viewer}"}
            )
            assert refused.status_code == 403
            allowed = await api.post(
                "/schedules/nightly/pause", headers={"Authorization": f"Bearer {operator}"}
            )
            assert allowed.status_code == 200
    finally:
        app.state.events.close()


async def test_the_python_client_drives_schedules_and_delayed_runs(
    app: FastAPI, engine: taskloom.Engine
) -> None:
    transport = httpx.ASGITransport(app=app)
    async with taskloom.AsyncClient("http://localhost", transport=transport) as client:
        added = await client.add_schedule(
            "every-minute", "report", interval=60, inputs={"region": "us"}
        )
        assert (added["kind"], added["rule"]) == ("interval", "60")
        assert [s["name"] for s in await client.schedules()] == ["every-minute", "nightly"]
        assert len(await client.schedule_next("every-minute", 3)) == 3
        assert (await client.pause_schedule("every-minute"))["paused"] is True
        assert await client.schedule_next("every-minute") == []
        assert (await client.resume_schedule("every-minute"))["paused"] is False
        key = await client.trigger_schedule("every-minute")
        assert key.startswith("schedule:every-minute@manual:")
        await client.remove_schedule("every-minute")
        with pytest.raises(taskloom.ScheduleNotFoundError):
            await client.schedule("every-minute")
        with pytest.raises(taskloom.ScheduleError) as caught:
            await client.add_schedule("bad", "report", cron="61 * * * *", inputs={"region": "x"})
        assert caught.value.field == "cron"
        run = await client.submit("report", {"region": "eu"}, delay=0.3)
        assert run.status == "pending"
        assert run.scheduled_at is not None
        done = await client.wait(run.id, timeout=10)
        assert done.result == "eu"
