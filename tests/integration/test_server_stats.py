"""`GET /api/stats` and the clients' `stats()`: the runs an engine finished, counted per
bucket and task on SQLite and PostgreSQL; the runs pending and running now; a bad window
is a 422 naming it; a viewer may read them when tokens are required."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import taskloom
from support import load_helper, until
from taskloom.client import ClientError
from taskloom.runs import RunStatus
from taskloom.server.app import create_app
from taskloom.server.http import HttpServer
from taskloom.server.settings import ServerSettings
from taskloom.server.tokens import create_token
from taskloom.store import Store

pytestmark = pytest.mark.timeout(60)

tasks_module = load_helper("server_tasks")

WINDOWS = {"15m": (15, 60), "1h": (60, 60), "6h": (72, 300), "1d": (96, 900), "7d": (168, 3600)}


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[taskloom.Engine]:
    async with taskloom.Engine(
        database_url, tasks=[tasks_module], concurrency=2, shutdown_grace=0.5
    ) as engine:
        yield engine


@pytest.fixture
async def app(engine: taskloom.Engine) -> AsyncIterator[FastAPI]:
    app = create_app(engine, database="stats.db")
    yield app
    app.state.events.close()


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost/api") as client:
        yield client


def _store(engine: taskloom.Engine) -> Store:
    assert engine.store is not None
    return engine.store


async def _finish_runs(engine: taskloom.Engine, completed: int, failed: int) -> None:
    runs = [await engine.submit("adder", {"a": i, "b": 1}) for i in range(completed)]
    runs += [await engine.submit("broken", {"message": f"no {i}"}) for i in range(failed)]
    ended = await engine.wait_many([run.id for run in runs])
    assert sorted(r.status for r in ended) == sorted(
        [RunStatus.COMPLETED] * completed + [RunStatus.FAILED] * failed
    )


def _stored_counts(store: Store) -> dict[str, int]:
    runs = store.list_runs(limit=1000)
    return {s: sum(1 for r in runs if r.status == s) for s in ("completed", "failed", "cancelled")}


async def test_the_counts_are_those_the_database_holds(
    api: httpx.AsyncClient, engine: taskloom.Engine
) -> None:
    await _finish_runs(engine, completed=40, failed=10)
    response = await api.get("/stats", params={"window": "1h"})
    assert response.status_code == 200
    stats = response.json()
    stored = await asyncio.to_thread(_stored_counts, _store(engine))
    assert stored == {"completed": 40, "failed": 10, "cancelled": 0}
    assert stats["totals"] == {**stored, "finished": 50}
    assert stats["failure_rate"] == pytest.approx(0.2)
    assert (stats["window"], stats["bucket_seconds"], len(stats["buckets"])) == ("1h", 60, 60)
    assert stats["until"] - stats["since"] <= 3600
    assert stats["since"] % 60 == 0
    starts = [bucket["start"] for bucket in stats["buckets"]]
    assert starts == [stats["since"] + 60 * i for i in range(60)]
    assert sum(b["completed"] + b["failed"] for b in stats["buckets"]) == 50
    by_task = {t["task"]: t for t in stats["tasks"]}
    assert [t["task"] for t in stats["tasks"]] == ["adder", "broken"]  # most runs first
    adder, broken = by_task["adder"], by_task["broken"]
    assert (adder["finished"], adder["completed"], adder["failure_rate"]) == (40, 40, 0.0)
    assert (broken["finished"], broken["failed"], broken["failure_rate"]) == (10, 10, 1.0)
    for task in (adder, broken):
        assert 0 < task["p50_seconds"] <= task["p95_seconds"] <= task["max_seconds"]
    assert (stats["pending"], stats["running"]) == (0, 0)

    narrowed = (await api.get("/stats", params={"window": "1h", "task": "broken"})).json()
    assert narrowed["totals"] == {"completed": 0, "failed": 10, "cancelled": 0, "finished": 10}
    assert [t["task"] for t in narrowed["tasks"]] == ["broken"]
    default = (await api.get("/stats")).json()
    assert (default["window"], default["totals"]) == ("1h", stats["totals"])


@pytest.mark.parametrize("window", list(WINDOWS))
async def test_each_window_has_its_buckets(api: httpx.AsyncClient, window: str) -> None:
    stats = (await api.get("/stats", params={"window": window})).json()
    count, seconds = WINDOWS[window]
    assert (len(stats["buckets"]), stats["bucket_seconds"]) == (count, seconds)
    assert stats["since"] <= stats["until"] < stats["since"] + count * seconds


async def test_the_runs_pending_and_running_now_are_counted(
    api: httpx.AsyncClient, engine: taskloom.Engine
) -> None:
    naps = [await engine.submit("nap", {"seconds": 30}) for _ in range(3)]

    async def two_running() -> bool:
        stats = (await api.get("/stats")).json()
        return (stats["pending"], stats["running"]) == (1, 2)  # concurrency 2

    await until(two_running)
    for run in naps:
        await engine.cancel(run.id)
    stats = (await api.get("/stats")).json()
    assert (stats["pending"], stats["running"]) == (0, 0)
    assert stats["totals"]["cancelled"] == 3
    [nap] = stats["tasks"]
    assert (nap["task"], nap["cancelled"], nap["failure_rate"]) == ("nap", 3, 0.0)


@pytest.mark.parametrize("window", ["2h", "1H", "", "60"])
async def test_a_bad_window_is_a_422_naming_it_and_the_accepted_ones(
    api: httpx.AsyncClient, window: str
) -> None:
    response = await api.get("/stats", params={"window": window})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "RequestValidationError"
    [field] = error["errors"]
    assert field["field"] == "window"
    for accepted in WINDOWS:
        assert f"'{accepted}'" in field["message"]


async def test_a_bad_task_is_a_422_naming_it(api: httpx.AsyncClient) -> None:
    response = await api.get("/stats", params={"task": "x" * 201})
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["error"]["errors"]] == ["task"]


async def test_a_viewer_may_read_the_stats_when_tokens_are_required(
    engine: taskloom.Engine,
) -> None:
    secret, _record = await asyncio.to_thread(create_token, _store(engine), "viewer")
    app = create_app(engine, auth_required=True)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost/api") as http:
            assert (await http.get("/stats")).status_code == 401
            wrong = {"Authorization": "Bearer not-a-token"}
            assert (await http.get("/stats", headers=wrong)).status_code == 401
            viewer = {"Authorization": f"Bearer {secret}"}
            response = await http.get("/stats", headers=viewer)
            assert response.status_code == 200
            assert response.json()["totals"]["finished"] == 0
        async with taskloom.AsyncClient(
            "http://localhost", token=secret, transport=transport
        ) as client:
            assert (await client.stats("15m"))["window"] == "15m"
    finally:
        app.state.events.close()


async def test_the_clients_read_the_stats_over_http(engine: taskloom.Engine) -> None:
    await _finish_runs(engine, completed=3, failed=1)
    server = HttpServer(ServerSettings(port=0))
    await server.start(engine)
    try:
        async with taskloom.AsyncClient(server.url) as client:
            got = await client.stats(window="1d", task="adder")
            with pytest.raises(ClientError, match="window") as refused:
                await client.stats(window="1w")
            assert refused.value.status_code == 422

        def sync_stats() -> dict[str, Any]:
            with taskloom.Client(server.url) as client:
                return client.stats("1d")

        # The synchronous client blocks: it runs in a thread, so the server's loop goes on.
        got_sync = await asyncio.to_thread(sync_stats)
    finally:
        await server.stop()
    assert (got["window"], got["bucket_seconds"], len(got["buckets"])) == ("1d", 900, 96)
    assert got["totals"] == {"completed": 3, "failed": 0, "cancelled": 0, "finished": 3}
    assert got_sync["totals"] == {"completed": 3, "failed": 1, "cancelled": 0, "finished": 4}
    direct = await engine.stats("1d")
    assert direct.totals == got_sync["totals"]
    with pytest.raises(ValueError, match="window must be one of 15m, 1h, 6h, 1d, 7d"):
        await engine.stats("1w")


async def test_the_document_describes_the_stats(api: httpx.AsyncClient) -> None:
    document = (await api.get("/openapi.json")).json()
    operation = document["paths"]["/api/stats"]["get"]
    [window] = [p for p in operation["parameters"] if p["name"] == "window"]
    assert window["schema"]["enum"] == list(WINDOWS)
    assert {"200", "422"} <= set(operation["responses"])
