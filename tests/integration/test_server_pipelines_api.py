"""Pipelines and topics through the HTTP API in process (httpx against the ASGI app, an
engine on a real SQLite file, the stages running in the app's process)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import taskloom
from support import load_helper, until
from taskloom.server.app import create_app
from taskloom.server.tokens import Role, create_token

pytestmark = pytest.mark.timeout(30)

stages = load_helper("stream_stages")

#: numbers -> running_total -> totals -> stamp -> labels
CHAIN: dict[str, Any] = {
    "name": "chain",
    "stages": [
        {"task": "running_total", "inputs": {"value": "numbers"}, "outputs": ["totals"]},
        {"task": "stamp", "inputs": {"value": "totals"}, "outputs": ["labels"]},
    ],
}

SERVED = taskloom.Pipeline("served")
SERVED.stage(stages.running_total, inputs={"value": "numbers"}, outputs=["totals"])


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[taskloom.Engine]:
    async with taskloom.Engine(
        f"sqlite:///{tmp_path / 'pipelines.db'}", tasks=[stages], shutdown_grace=0.5
    ) as engine:
        yield engine


def make_api(engine: taskloom.Engine, *, auth: bool = False) -> httpx.AsyncClient:
    app = create_app(engine, auth_required=auth, pipelines=[SERVED])
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://localhost/api")


@pytest.fixture
async def api(engine: taskloom.Engine) -> AsyncIterator[httpx.AsyncClient]:
    async with make_api(engine) as client:
        yield client


def error_of(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body


async def test_deploy_publish_and_the_status_counts(api: httpx.AsyncClient) -> None:
    response = await api.post("/pipelines", json={"pipeline": CHAIN, "status_interval": 0.1})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "chain"
    assert body["state"] == "running"
    assert body["here"] is True
    assert [s["stage"] for s in body["stages"]] == ["running_total", "stamp"]
    assert set(body["topics"]) == {"numbers", "totals", "labels"}

    for value in (5, 7):
        published = await api.post("/pipelines/chain/topics/numbers", json={"value": value})
        assert published.status_code == 202, published.text

    async def counted() -> bool:
        status = (await api.get("/pipelines/chain")).json()
        by_stage = {s["stage"]: s for s in status["stages"]}
        stamped: int = by_stage["stamp"]["messages_out"]
        return stamped == 2

    await until(counted)
    status = (await api.get("/pipelines/chain")).json()
    total = status["stages"][0]
    assert (total["messages_in"], total["messages_out"], total["errors"]) == (2, 2, 0)
    listed = (await api.get("/pipelines")).json()
    assert [d["name"] for d in listed] == ["chain"]

    stopped = await api.post("/pipelines/chain/stop")
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["state"] == "stopped"
    again = (await api.get("/pipelines/chain")).json()
    assert again["state"] == "stopped"
    assert again["here"] is False
    assert again["stages"][1]["messages_out"] == 2
    # Stopped: its topics are not reachable any more.
    late = await api.post("/pipelines/chain/topics/numbers", json={"value": 1})
    assert late.status_code == 409, late.text


async def test_a_served_pipeline_deploys_by_name(api: httpx.AsyncClient) -> None:
    available = (await api.get("/pipelines/available")).json()
    assert [p["name"] for p in available] == ["served"]
    response = await api.post("/pipelines", json={"pipeline": "served", "name": "copy"})
    assert response.status_code == 201, response.text
    assert response.json()["pipeline"] == "served"
    assert response.json()["name"] == "copy"
    twice = await api.post("/pipelines", json={"pipeline": "served", "name": "copy"})
    assert twice.status_code == 409, twice.text
    assert "running already" in error_of(twice)["message"]
    assert (await api.post("/pipelines/copy/stop")).status_code == 200


async def test_a_published_value_is_checked_against_the_input_it_feeds(
    api: httpx.AsyncClient,
) -> None:
    assert (await api.post("/pipelines", json={"pipeline": CHAIN})).status_code == 201
    response = await api.post("/pipelines/chain/topics/numbers", json={"value": "many"})
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["type"] == "PortValidationError"
    assert error["task"] == "running_total"
    assert [e["field"] for e in error["errors"]] == ["value"]
    assert "topic 'numbers'" in error["message"]
    status = (await api.get("/pipelines/chain")).json()
    assert status["stages"][0]["messages_in"] == 0
    unknown = await api.post("/pipelines/chain/topics/nowhere", json={"value": 1})
    assert unknown.status_code == 404, unknown.text
    assert "topics: labels, numbers, totals" in error_of(unknown)["message"]
    tail = await api.get("/pipelines/chain/topics/nowhere/tail")
    assert tail.status_code == 404, tail.text
    await api.post("/pipelines/chain/stop")


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("os:system", "unknown task 'os:system'"),
        ("evil.py:adder", "unknown task 'evil.py:adder'"),
        ("nothing", "unknown task 'nothing'"),
    ],
)
async def test_a_stage_names_only_served_tasks(
    api: httpx.AsyncClient, task: str, expected: str
) -> None:
    pipeline = {"name": "bad", "stages": [{"task": task, "inputs": {"value": "numbers"}}]}
    response = await api.post("/pipelines", json={"pipeline": pipeline})
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["type"] == "WiringError"
    assert error["pipeline"] == "bad"
    assert "stages[0]" in error["message"]
    assert expected in error["message"]
    assert (await api.get("/pipelines")).json() == []


async def test_mis_wiring_and_unknown_names_are_refused(api: httpx.AsyncClient) -> None:
    text = "name: loose\nstages:\n  - task: stamp\n    inputs: {nope: numbers}\n"
    response = await api.post("/pipelines", json={"pipeline": text})
    assert response.status_code == 422, response.text
    assert "nope" in error_of(response)["message"]
    unknown = await api.post("/pipelines", json={"pipeline": "nosuch"})
    assert unknown.status_code == 422, unknown.text
    assert "served: served" in error_of(unknown)["message"]
    bus = await api.post("/pipelines", json={"pipeline": CHAIN, "bus": "carrier://pigeon"})
    assert bus.status_code == 422, bus.text
    assert "carrier://pigeon" in error_of(bus)["message"]
    for path in ("/pipelines/ghost", "/pipelines/ghost/topics/numbers/tail"):
        missing = await api.get(path)
        assert missing.status_code in (404, 409), missing.text
    assert (await api.get("/pipelines/ghost")).status_code == 404
    assert (await api.post("/pipelines/ghost/stop")).status_code == 404


#: (method, path, body, the least role that may call it)
ROUTES: list[tuple[str, str, dict[str, Any] | None, Role]] = [
    ("GET", "/pipelines", None, Role.VIEWER),
    ("GET", "/pipelines/available", None, Role.VIEWER),
    ("GET", "/pipelines/chain", None, Role.VIEWER),
    ("POST", "/pipelines", {"pipeline": CHAIN}, Role.OPERATOR),
    ("POST", "/pipelines/chain/topics/numbers", {"value": 1}, Role.OPERATOR),
    ("GET", "/pipelines/chain/topics/numbers/tail", None, Role.VIEWER),
    ("POST", "/pipelines/chain/stop", None, Role.OPERATOR),
]
RANK = [Role.VIEWER, Role.OPERATOR, Role.ADMIN]


@pytest.mark.parametrize(("method", "path", "body", "least"), ROUTES)
async def test_roles_per_route(
    engine: taskloom.Engine,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    least: Role,
) -> None:
    assert engine.store is not None
    async with make_api(engine, auth=True) as api:
        assert (await api.request(method, path, json=body)).status_code == 401
        bad = {"Authorization": "Bearer not-a-token"}
        assert (await api.request(method, path, json=body, headers=bad)).status_code == 401
        for role in RANK:
            if RANK.index(role) >= RANK.index(least):
                continue
            token = create_token(engine.store, role.value)[0]
            headers = {"Authorization": f"Bearer {token}"}
            response = await api.request(method, path, json=body, headers=headers)
            assert response.status_code == 403, (role, response.text)
        # The least role gets past the check (to a 2xx, or to 404/409 for a deployment
        # that does not exist here; never 401/403). The tail is not opened: it never ends.
        if path.endswith("/tail"):
            return
        token = create_token(engine.store, least.value)[0]
        headers = {"Authorization": f"Bearer {token}"}
        response = await api.request(method, path, json=body, headers=headers)
        assert response.status_code not in (401, 403), response.text
        if method == "POST" and path == "/pipelines":
            assert response.status_code == 201
            assert (await api.post("/pipelines/chain/stop", headers=headers)).status_code == 200


async def test_the_async_client_deploys_publishes_and_stops(engine: taskloom.Engine) -> None:
    app = create_app(engine, pipelines=[SERVED])
    transport = httpx.ASGITransport(app=app)
    async with taskloom.AsyncClient("http://localhost", transport=transport) as client:
        deployed = await client.deploy_pipeline("served", status_interval=0.1)
        assert deployed["name"] == "served"
        await client.publish("served", "numbers", 4)

        async def counted() -> bool:
            status = await client.pipeline_status("served")
            return bool(status["stages"][0]["messages_out"] == 1)

        await until(counted)
        assert [d["name"] for d in await client.pipelines()] == ["served"]
        with pytest.raises(taskloom.streams.PortValidationError) as invalid:
            await client.publish("served", "numbers", [1])
        assert invalid.value.deployment == "served"
        assert invalid.value.topic == "numbers"
        assert (await client.stop_pipeline("served"))["state"] == "stopped"
        with pytest.raises(taskloom.streams.PipelineError, match="not running in this server"):
            await client.publish("served", "numbers", 4)
    app.state.events.close()
