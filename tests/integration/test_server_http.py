"""The HTTP server for real: uvicorn on a socket in the engine's loop, live events, stop."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import taskloom
from support import WAIT, load_helper
from taskloom.server.http import HttpServer, ServerStartError
from taskloom.server.settings import ServerSettings
from taskloom.services.definition import services_in_module

pytestmark = pytest.mark.timeout(30)

tasks_module = load_helper("server_tasks")


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[taskloom.Engine]:
    async with taskloom.Engine(
        f"sqlite:///{tmp_path / 'http.db'}",
        tasks=[tasks_module],
        services=services_in_module(tasks_module),
        shutdown_grace=0.5,
    ) as engine:
        yield engine


@pytest.fixture
async def server(engine: taskloom.Engine) -> AsyncIterator[HttpServer]:
    server = HttpServer(ServerSettings(port=0))
    await server.start(engine)
    yield server
    await server.stop()


class EventReader:
    """Reads the server-sent events of one response, line by line, with deadlines."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.aiter_lines()

    async def subscribed(self) -> None:
        async with asyncio.timeout(WAIT):
            async for line in self._lines:
                if line.startswith(": subscribed"):
                    return

    async def until(self, done: Any) -> list[tuple[str, dict[str, Any]]]:
        """Events until `done(events)` holds; fails after the deadline."""
        seen: list[tuple[str, dict[str, Any]]] = []
        kind = ""
        async with asyncio.timeout(WAIT):
            async for line in self._lines:
                if line.startswith("event:"):
                    kind = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    seen.append((kind, json.loads(line.split(":", 1)[1])))
                    if done(seen):
                        return seen
        raise AssertionError(f"the stream ended before the events came: {seen}")


async def test_a_run_is_followed_live_with_its_log_lines(server: HttpServer) -> None:
    async with httpx.AsyncClient(base_url=server.url + "/api") as http:
        params = {"task": "chatty"}
        async with http.stream("GET", "/events", params=params) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            events = EventReader(stream)
            await events.subscribed()
            other = await http.post("/runs", json={"task": "adder", "inputs": {"a": 1, "b": 1}})
            assert other.status_code == 201
            made = await http.post("/runs", json={"task": "chatty", "inputs": {"lines": 2}})
            run_id = made.json()["id"]
            seen = await events.until(lambda s: any(d.get("kind") == "finished" for _k, d in s))
    kinds = [(k, d.get("kind")) for k, d in seen if k == "run"]
    assert kinds[0] == ("run", "submitted")
    assert ("run", "started") in kinds
    assert kinds[-1] == ("run", "finished")
    assert all(d.get("run", d).get("task", "chatty") == "chatty" for _k, d in seen)
    lines = [d["line"]["message"] for k, d in seen if k == "log"]
    assert lines == ["line 1", "line 2"]
    finished = seen[-1][1]["run"]
    assert (finished["id"], finished["status"], finished["result"]) == (run_id, "completed", 2)


async def test_service_changes_are_events(server: HttpServer) -> None:
    async with httpx.AsyncClient(base_url=server.url + "/api") as http:
        params = {"type": "service", "service": "ticker"}
        async with http.stream("GET", "/events", params=params) as stream:
            events = EventReader(stream)
            await events.subscribed()
            assert (await http.post("/services/ticker/start")).status_code == 200
            seen = await events.until(lambda s: s[-1][1]["state"] == "running")
            assert (await http.post("/services/ticker/stop")).status_code == 200
            seen += await events.until(lambda s: s[-1][1]["state"] == "stopped")
    assert {k for k, _d in seen} == {"service"}
    assert [d["state"] for _k, d in seen][-1] == "stopped"


async def test_service_log_lines_are_events(server: HttpServer) -> None:
    async with httpx.AsyncClient(base_url=server.url + "/api") as http:
        params = {"type": "service_log", "service": "ticker"}
        async with http.stream("GET", "/events", params=params) as stream:
            events = EventReader(stream)
            await events.subscribed()
            started = await http.post("/services/ticker/start", json={"config": {"period": 0.05}})
            assert started.status_code == 200
            seen = await events.until(lambda s: len(s) >= 3)
            assert (await http.post("/services/ticker/stop")).status_code == 200
    assert {k for k, _d in seen} == {"service_log"}
    assert [d["message"] for _k, d in seen[:3]] == ["tick 1", "tick 2", "tick 3"]
    assert {(d["service"], d["start_number"]) for _k, d in seen} == {("ticker", 1)}


async def test_stop_ends_open_event_streams_in_bounded_time(engine: taskloom.Engine) -> None:
    server = HttpServer(ServerSettings(port=0))
    await server.start(engine)
    async with (
        httpx.AsyncClient(base_url=server.url + "/api") as http,
        http.stream("GET", "/events") as stream,
    ):
        await EventReader(stream).subscribed()
        began = time.monotonic()
        await server.stop()
        assert time.monotonic() - began < 8
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(base_url=server.url) as http:
            await http.get("/api/health")


async def test_a_port_in_use_is_a_clear_error(server: HttpServer, engine: taskloom.Engine) -> None:
    assert server.port is not None
    second = HttpServer(ServerSettings(port=server.port))
    with pytest.raises(ServerStartError, match=f"cannot listen on 127.0.0.1:{server.port}"):
        await second.start(engine)
