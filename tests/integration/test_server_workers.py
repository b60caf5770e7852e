"""`GET /api/workers` and the clients' `workers()`: the workers recorded on the database,
the server's own alive and one whose process is gone lost, on SQLite and PostgreSQL; a
viewer may read them; a store that cannot answer is a 503."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import taskloom
from support import load_helper, until
from taskloom.exceptions import StoreUnavailableError
from taskloom.runs import RunStatus
from taskloom.server.app import create_app
from taskloom.server.http import HttpServer
from taskloom.server.settings import ServerSettings
from taskloom.server.tokens import create_token
from taskloom.store import Store, WorkerRecord, open_store

pytestmark = pytest.mark.timeout(30)

tasks_module = load_helper("server_tasks")

#: What each listed worker holds, whatever the store.
FIELDS = {
    "id",
    "name",
    "hostname",
    "pid",
    "queues",
    "concurrency",
    "started_at",
    "heartbeat_at",
    "expires_at",
    "holds",
    "alive",
    "state",
}
#: What does not change while a worker lives (its heartbeat and lease move on).
STEADY = ("id", "name", "hostname", "pid", "queues", "concurrency", "started_at")

LOST = "lost-worker"


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[taskloom.Engine]:
    async with taskloom.Engine(database_url, tasks=[tasks_module], shutdown_grace=0.5) as engine:
        yield engine


@pytest.fixture
async def app(engine: taskloom.Engine) -> AsyncIterator[FastAPI]:
    app = create_app(engine, database="workers.db")
    yield app
    app.state.events.close()


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost/api") as client:
        yield client


def _register_and_leave(url: str, worker_id: str) -> None:
    """A worker of another store, closed without unregistering: its record stays, its lock
    is released, as when its process dies."""
    other = open_store(url)
    try:
        other.register_worker(worker_id, hostname="elsewhere", pid=4242)
    finally:
        other.close()


def _store(engine: taskloom.Engine) -> Store:
    assert engine.store is not None
    return engine.store


def _steady(worker: dict[str, Any]) -> dict[str, Any]:
    return {key: worker[key] for key in STEADY}


async def test_the_servers_worker_is_alive_and_a_gone_one_lost(
    api: httpx.AsyncClient, engine: taskloom.Engine, database_url: str
) -> None:
    await asyncio.to_thread(_register_and_leave, database_url, LOST)
    response = await api.get("/workers")
    assert response.status_code == 200
    listed = {worker["id"]: worker for worker in response.json()}
    assert set(listed) == {engine.worker_id, LOST}
    assert all(set(worker) == FIELDS for worker in listed.values())

    mine = listed[engine.worker_id]
    assert (mine["state"], mine["alive"]) == ("alive", True)
    assert (mine["hostname"], mine["pid"]) == (socket.gethostname(), os.getpid())
    assert mine["started_at"] <= mine["heartbeat_at"]
    lost = listed[LOST]
    assert (lost["state"], lost["alive"], lost["holds"]) == ("lost", False, 0)
    assert (lost["hostname"], lost["pid"]) == ("elsewhere", 4242)

    # The API answers what the store records: the same fields, the same values.
    stored = {w.id: w for w in await asyncio.to_thread(_store(engine).list_workers)}
    assert listed[LOST] == {**dataclasses.asdict(stored[LOST]), "state": "lost"}
    assert _steady(mine) == _steady(dataclasses.asdict(stored[engine.worker_id]))


async def test_the_runs_a_worker_holds_are_counted(
    api: httpx.AsyncClient, engine: taskloom.Engine
) -> None:
    made = await api.post("/runs", json={"task": "nap", "inputs": {"seconds": 30}})
    run_id = made.json()["id"]

    async def running() -> bool:
        return (await engine.get_run(run_id)).status is RunStatus.RUNNING

    await until(running)
    listed = {worker["id"]: worker for worker in (await api.get("/workers")).json()}
    assert listed[engine.worker_id]["holds"] == 1
    await api.post(f"/runs/{run_id}/cancel")


async def test_the_document_describes_each_worker(api: httpx.AsyncClient) -> None:
    document = (await api.get("/openapi.json")).json()
    answer = document["paths"]["/api/workers"]["get"]["responses"]["200"]
    schema = answer["content"]["application/json"]["schema"]
    assert schema["type"] == "array"
    worker = document["components"]["schemas"][schema["items"]["$ref"].rsplit("/", 1)[1]]
    assert set(worker["required"]) == FIELDS
    assert worker["properties"]["state"]["enum"] == ["alive", "lost"]


async def test_the_clients_give_worker_records_over_http(
    engine: taskloom.Engine, database_url: str
) -> None:
    await asyncio.to_thread(_register_and_leave, database_url, LOST)
    server = HttpServer(ServerSettings(port=0))
    await server.start(engine)
    try:
        async with taskloom.AsyncClient(server.url) as client:
            got = await client.workers()

        def sync_workers() -> list[WorkerRecord]:
            with taskloom.Client(server.url) as client:
                return client.workers()

        # The synchronous client blocks: it runs in a thread, so the server's loop goes on.
        got_sync = await asyncio.to_thread(sync_workers)
    finally:
        await server.stop()
    stored = {w.id: w for w in await asyncio.to_thread(_store(engine).list_workers)}
    for found in (got, got_sync):
        assert all(isinstance(worker, WorkerRecord) for worker in found)
        by_id = {worker.id: worker for worker in found}
        assert set(by_id) == {engine.worker_id, LOST}
        assert by_id[LOST] == stored[LOST]
        assert by_id[LOST].state == "lost"
        mine = by_id[engine.worker_id]
        assert mine.state == "alive"
        assert _steady(dataclasses.asdict(mine)) == _steady(
            dataclasses.asdict(stored[engine.worker_id])
        )


async def test_a_viewer_may_read_the_workers(engine: taskloom.Engine) -> None:
    secret, _record = await asyncio.to_thread(create_token, _store(engine), "viewer")
    app = create_app(engine, auth_required=True)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost/api") as http:
            assert (await http.get("/workers")).status_code == 401
            viewer = {"Authorization": f"Bearer {secret}"}
            response = await http.get("/workers", headers=viewer)
            assert response.status_code == 200
            assert [w["id"] for w in response.json()] == [engine.worker_id]
        async with taskloom.AsyncClient(
            "http://localhost", token=secret, transport=transport
        ) as client:
            assert [w.id for w in await client.workers()] == [engine.worker_id]
    finally:
        app.state.events.close()


async def test_a_store_that_cannot_answer_is_a_503(
    app: FastAPI, api: httpx.AsyncClient, engine: taskloom.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable() -> list[WorkerRecord]:
        raise StoreUnavailableError("the database is away", retry_after=2.0)

    monkeypatch.setattr(_store(engine), "list_workers", unavailable)
    response = await api.get("/workers")
    assert (response.status_code, response.headers["retry-after"]) == (503, "2")
    error = response.json()["error"]
    assert (error["type"], error["retry_after"]) == ("StoreUnavailableError", 2.0)
    transport = httpx.ASGITransport(app=app)
    async with taskloom.AsyncClient("http://localhost", transport=transport) as client:
        with pytest.raises(StoreUnavailableError, match="away"):
            await client.workers()
