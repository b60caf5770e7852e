"""The HTTP API in process: httpx against the ASGI app, an engine on a real SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import taskloom
from support import load_helper, until
from taskloom.server.app import create_app
from taskloom.services.definition import services_in_module

pytestmark = pytest.mark.timeout(30)

tasks_module = load_helper("server_tasks")


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[taskloom.Engine]:
    async with taskloom.Engine(
        f"sqlite:///{tmp_path / 'api.db'}",
        tasks=[tasks_module],
        services=services_in_module(tasks_module),
        shutdown_grace=0.5,
    ) as engine:
        yield engine


@pytest.fixture
async def api(engine: taskloom.Engine) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(engine, database="api.db")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost/api") as client:
        yield client
    app.state.events.close()


def error_of(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body


# --- health and tasks ------------------------------------------------------------------------


async def test_health_says_what_is_served(api: httpx.AsyncClient) -> None:
    response = await api.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "version": taskloom.__version__,
        "database": "api.db",
        "auth": False,
        "tasks": 4,
        "services": 1,
    }


async def test_tasks_are_listed_with_their_schemas(api: httpx.AsyncClient) -> None:
    listed = (await api.get("/tasks")).json()
    assert [t["name"] for t in listed] == ["adder", "broken", "chatty", "nap"]
    adder = (await api.get("/tasks/adder")).json()
    assert adder["description"] == "Add two numbers."
    assert adder["input_schema"]["required"] == ["a", "b"]
    assert adder["input_schema"]["properties"]["a"]["type"] == "integer"


async def test_an_unknown_task_is_a_404_naming_it(api: httpx.AsyncClient) -> None:
    response = await api.get("/tasks/nope")
    assert response.status_code == 404
    error = error_of(response)
    assert error["type"] == "UnknownTaskError"
    assert error["name"] == "nope"
    assert "unknown task 'nope'" in error["message"]


# --- runs ------------------------------------------------------------------------------------


async def test_submit_records_a_run_that_completes(
    api: httpx.AsyncClient, engine: taskloom.Engine
) -> None:
    response = await api.post("/runs", json={"task": "adder", "inputs": {"a": 1, "b": 2}})
    assert response.status_code == 201
    run = response.json()
    assert (run["task"], run["inputs"]) == ("adder", {"a": 1, "b": 2})
    # The snapshot is taken once the run is committed; by then the engine may have started
    # it (or even finished it, when its end joined the same commit).
    assert run["status"] in {"pending", "running", "completed"}
    waited = (await api.get(f"/runs/{run['id']}/wait", params={"timeout": 10})).json()
    assert (waited["status"], waited["result"], waited["attempts"]) == ("completed", 3, 1)
    stored = await engine.get_run(run["id"])
    assert stored.result == 3


async def test_invalid_inputs_are_a_422_per_field_and_record_nothing(
    api: httpx.AsyncClient, engine: taskloom.Engine
) -> None:
    response = await api.post("/runs", json={"task": "adder", "inputs": {"a": "x", "c": 1}})
    assert response.status_code == 422
    error = error_of(response)
    assert error["type"] == "InputValidationError"
    assert error["task"] == "adder"
    fields = {e["field"]: e["message"] for e in error["errors"]}
    assert set(fields) == {"a", "b", "c"}
    assert "integer" in fields["a"]
    assert await engine.list_runs() == []


async def test_submitting_an_unknown_task_is_a_404(api: httpx.AsyncClient) -> None:
    response = await api.post("/runs", json={"task": "nope", "inputs": {}})
    assert response.status_code == 404
    assert error_of(response)["type"] == "UnknownTaskError"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"inputs": {}}, "task"),
        ({"task": "adder", "inputs": [1, 2]}, "inputs"),
        ({"task": "adder", "inputs": {}, "colour": "red"}, "colour"),
        ({"task": "adder", "priority": "high"}, "priority"),
    ],
)
async def test_a_malformed_body_is_a_422_naming_the_field(
    api: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await api.post("/runs", json=body)
    assert response.status_code == 422
    error = error_of(response)
    assert error["type"] == "RequestValidationError"
    assert [e["field"] for e in error["errors"]] == [field]


async def test_a_body_that_is_not_json_is_a_422(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/runs", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


async def test_runs_are_listed_newest_first_filtered_and_paged(
    api: httpx.AsyncClient, engine: taskloom.Engine
) -> None:
    made = [await engine.submit("adder", {"a": i, "b": 0}) for i in range(5)]
    failed = await engine.run("broken", {"message": "no"})
    await engine.wait_many([r.id for r in made])

    page = (await api.get("/runs", params={"task": "adder", "limit": 2})).json()
    assert [r["id"] for r in page["runs"]] == [made[4].id, made[3].id]
    second = (
        await api.get("/runs", params={"task": "adder", "limit": 2, "cursor": page["next_cursor"]})
    ).json()
    assert [r["id"] for r in second["runs"]] == [made[2].id, made[1].id]
    last = (
        await api.get(
            "/runs", params={"task": "adder", "limit": 2, "cursor": second["next_cursor"]}
        )
    ).json()
    assert [r["id"] for r in last["runs"]] == [made[0].id]
    assert last["next_cursor"] is None

    by_status = (await api.get("/runs", params={"status": "failed"})).json()
    assert [r["id"] for r in by_status["runs"]] == [failed.id]
    assert by_status["runs"][0]["error"]["type"] == "RuntimeError"
    both = (await api.get("/runs", params=[("status", "failed"), ("status", "completed")])).json()
    assert len(both["runs"]) == 6


async def test_listing_checks_its_parameters(api: httpx.AsyncClient) -> None:
    wrong_status = await api.get("/runs", params={"status": "done"})
    assert wrong_status.status_code == 422
    assert error_of(wrong_status)["errors"][0]["field"].startswith("status")
    assert (await api.get("/runs", params={"limit": 0})).status_code == 422
    assert (await api.get("/runs", params={"limit": 100_000})).status_code == 422


async def test_runs_by_parent(api: httpx.AsyncClient, engine: taskloom.Engine) -> None:
    parent = await engine.run("adder", {"a": 1, "b": 1})
    child = await engine.submit("adder", {"a": 2, "b": 2}, parent_id=parent.id)
    page = (await api.get("/runs", params={"parent_id": parent.id})).json()
    assert [r["id"] for r in page["runs"]] == [child.id]


async def test_an_unknown_run_is_a_404_everywhere(api: httpx.AsyncClient) -> None:
    for method, path in [
        ("GET", "/runs/missing"),
        ("GET", "/runs/missing/wait"),
        ("GET", "/runs/missing/logs"),
        ("GET", "/runs/missing/attempts"),
        ("POST", "/runs/missing/cancel"),
    ]:
        response = await api.request(method, path)
        assert response.status_code == 404, path
        assert error_of(response) == {
            "type": "RunNotFoundError",
            "message": "no run with id 'missing'",
            "run_id": "missing",
        }


async def test_cancel_stops_a_running_run(api: httpx.AsyncClient, engine: taskloom.Engine) -> None:
    run = await engine.submit("nap", {"seconds": 30})

    async def running() -> bool:
        return (await engine.get_run(run.id)).status == "running"

    await until(running)
    response = await api.post(f"/runs/{run.id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"


async def test_a_wait_that_times_out_is_a_408(
    api: httpx.AsyncClient, engine: taskloom.Engine
) -> None:
    run = await engine.submit("nap", {"seconds": 30})
    response = await api.get(f"/runs/{run.id}/wait", params={"timeout": 0.05})
    assert response.status_code == 408
    assert error_of(response)["type"] == "WaitTimeoutError"
    await engine.cancel(run.id)


async def test_logs_and_attempts_of_a_run(api: httpx.AsyncClient, engine: taskloom.Engine) -> None:
    run = await engine.run("chatty", {"lines": 3})
    logs = (await api.get(f"/runs/{run.id}/logs")).json()
    assert [line["message"] for line in logs["lines"]] == ["line 1", "line 2", "line 3"]
    newer = await api.get(f"/runs/{run.id}/logs", params={"after_id": logs["lines"][0]["id"]})
    assert [line["message"] for line in newer.json()["lines"]] == ["line 2", "line 3"]
    assert newer.json()["next_after_id"] == logs["lines"][-1]["id"]
    attempts = (await api.get(f"/runs/{run.id}/attempts")).json()
    assert [(a["number"], a["status"]) for a in attempts] == [(1, "completed")]
    # An async function's call is made on the engine's loop; no Dask, no dashboard.
    assert (attempts[0]["executor"], attempts[0]["dashboard"]) == ("loop", None)


async def test_the_openapi_document_describes_an_attempts_executor(
    api: httpx.AsyncClient,
) -> None:
    document = (await api.get("/openapi.json")).json()
    answer = document["paths"]["/api/runs/{run_id}/attempts"]["get"]["responses"]["200"]
    items = answer["content"]["application/json"]["schema"]["items"]
    attempt = document["components"]["schemas"][items["$ref"].rsplit("/", 1)[1]]
    for field in ("executor", "dashboard"):
        assert field not in attempt.get("required", [])
        assert {"type": "string"} in attempt["properties"][field]["anyOf"]
        assert attempt["properties"][field]["description"]


# --- services --------------------------------------------------------------------------------


async def test_services_start_stop_restart_through_the_api(api: httpx.AsyncClient) -> None:
    listed = (await api.get("/services")).json()
    assert [(s["name"], s["state"]) for s in listed] == [("ticker", "stopped")]
    assert listed[0]["config_schema"]["properties"]["period"]["default"] == 0.05

    started = await api.post("/services/ticker/start", json={"config": {"period": 0.02}})
    assert started.status_code == 200
    assert started.json()["state"] in {"starting", "running"}

    again = await api.post("/services/ticker/start")
    assert again.status_code == 409
    assert error_of(again)["type"] == "ServiceRunningError"

    async def logged() -> bool:
        lines = (await api.get("/services/ticker/logs")).json()["lines"]
        return len(lines) >= 2

    await until(logged)
    restarted = await api.post("/services/ticker/restart", json={"config": None})
    assert restarted.status_code == 200

    async def started_twice() -> bool:
        return bool((await api.get("/services/ticker")).json()["starts"] == 2)

    await until(started_twice)
    stopped = (await api.post("/services/ticker/stop")).json()
    assert stopped["state"] == "stopped"
    status = (await api.get("/services/ticker")).json()
    assert [h["exit_reason"] for h in status["history"]] == ["stopped", "stopped"]


async def test_an_invalid_service_config_is_a_422_and_nothing_starts(
    api: httpx.AsyncClient,
) -> None:
    response = await api.post("/services/ticker/start", json={"config": {"period": "soon"}})
    assert response.status_code == 422
    error = error_of(response)
    assert error["what"] == "config"
    assert [e["field"] for e in error["errors"]] == ["period"]
    assert (await api.get("/services/ticker")).json()["state"] == "stopped"


async def test_an_unknown_service_is_a_404(api: httpx.AsyncClient) -> None:
    for method, path in [
        ("GET", "/services/nope"),
        ("POST", "/services/nope/start"),
        ("POST", "/services/nope/stop"),
        ("POST", "/services/nope/restart"),
        ("GET", "/services/nope/logs"),
    ]:
        response = await api.request(method, path)
        assert response.status_code == 404, path
        assert error_of(response)["type"] == "UnknownServiceError"


# --- the dashboard and unknown paths ---------------------------------------------------------


async def test_the_dashboard_is_served_at_the_root(api: httpx.AsyncClient) -> None:
    page = await api.get("http://localhost/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "taskloom" in page.text


async def test_an_unknown_api_path_is_a_json_404(api: httpx.AsyncClient) -> None:
    response = await api.get("/nothing-here")
    assert response.status_code == 404
    assert error_of(response)["type"] == "NotFound"


async def test_the_openapi_document_lists_the_routes(api: httpx.AsyncClient) -> None:
    document = (await api.get("/openapi.json")).json()
    assert {"/api/health", "/api/tasks", "/api/runs", "/api/runs/{run_id}/cancel"} <= set(
        document["paths"]
    )
    assert "422" in document["paths"]["/api/runs"]["post"]["responses"]


async def test_a_bug_in_the_server_is_a_500_in_the_same_shape(
    engine: taskloom.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(engine, dashboard=None)  # the dashboard's mount at / would take the route

    async def broken_route() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/api/broken", broken_route)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost/api") as client:
        response = await client.get("/broken")
    app.state.events.close()
    assert response.status_code == 500
    assert error_of(response) == {
        "type": "InternalServerError",
        "message": "the server failed: RuntimeError: a bug",
    }
    assert "GET /api/broken failed" in caplog.text
