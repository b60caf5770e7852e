"""The live attributes of a service class over HTTP, on a SQLite file and PostgreSQL:
read, set (validated, with who set them), their changes, their events, and the Python
clients' proxies; the running config of every service in its answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import taskloom
from support import WAIT, load_helper, until
from taskloom.server.app import create_app
from taskloom.server.http import HttpServer
from taskloom.server.settings import ServerSettings
from taskloom.server.tokens import create_token
from taskloom.services.definition import services_in_module

pytestmark = pytest.mark.timeout(40)

attribute_services = load_helper("attribute_services")
server_tasks = load_helper("server_tasks")
Thermostat: Any = attribute_services.Thermostat


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[taskloom.Engine]:
    services = [*services_in_module(attribute_services), *services_in_module(server_tasks)]
    async with taskloom.Engine(database_url, services=services, shutdown_grace=0.5) as engine:
        await engine.supervisor.start_autostart()
        yield engine


@pytest.fixture
async def api(engine: taskloom.Engine) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(engine, database="attributes.db")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost/api") as client:
        yield client
    app.state.events.close()


def thermostat(engine: taskloom.Engine) -> Any:
    return engine.supervisor.instance("Thermostat")


async def test_attributes_are_read_and_set_while_the_loop_runs(
    api: httpx.AsyncClient, engine: taskloom.Engine
) -> None:
    read = await api.get("/services/Thermostat/attributes")
    assert read.status_code == 200
    body = read.json()
    assert body["values"] == {"target": 20.0, "mode": "auto", "heating": False}
    assert body["loops"] == ["Thermostat.regulate"]
    assert body["updated"] == {}
    target = body["schema"]["properties"]["target"]
    assert (target["minimum"], target["maximum"], target["default"]) == (-50, 100, 20.0)

    running = thermostat(engine)
    running._turns.put_nowait(None)
    await until(lambda: _true(running._seen == [20.0]))
    changed = await api.patch("/services/Thermostat/attributes", json={"target": 18.5})
    assert changed.status_code == 200
    assert changed.json()["values"]["target"] == 18.5
    assert changed.json()["updated"]["target"]["by"] == "http"
    # The loop reads the new target at its next turn, without a restart.
    running._turns.put_nowait(None)
    await until(lambda: _true(running._seen == [20.0, 18.5]))
    assert engine.service_status("Thermostat.regulate").starts == 1

    changes = (await api.get("/services/Thermostat/attributes/changes")).json()["changes"]
    assert [(c["name"], c["value"], c["changed_by"]) for c in changes] == [("target", 18.5, "http")]
    assert engine.store is not None
    stored = {r.name: r for r in engine.store.get_service_attributes("Thermostat")}
    assert (stored["target"].value, stored["target"].updated_by) == (18.5, "http")
    # The loop's own assignment (heating off at 18.5) is saved too, by the class itself.
    await until(lambda: _true(_stored(engine, "heating") == (False, "service")))


async def test_an_invalid_value_is_a_422_naming_each_attribute_and_nothing_is_set(
    api: httpx.AsyncClient,
) -> None:
    refused = await api.patch(
        "/services/Thermostat/attributes", json={"target": 500, "mode": "eco", "speed": 2}
    )
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["type"] == "AttributeValidationError"
    assert [e["field"] for e in error["errors"]] == ["target", "speed"]
    assert error["message"].splitlines() == [
        "service 'Thermostat': attribute 'target': input should be less than or equal to 100, "
        "got 500",
        "service 'Thermostat': attribute 'speed': unknown attribute; attributes: target, mode, "
        "heating",
    ]
    after = (await api.get("/services/Thermostat/attributes")).json()["values"]
    assert after["mode"] == "auto"  # the valid value was not set either

    not_an_object = await api.patch("/services/Thermostat/attributes", json=[1, 2])
    assert not_an_object.status_code == 422
    unknown = await api.patch("/services/Boiler/attributes", json={"target": 1})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"] == (
        "unknown service class 'Boiler'; service classes served: Thermostat"
    )
    loop = await api.get("/services/Thermostat.regulate/attributes")
    assert loop.status_code == 404
    assert "attributes belong to the class: 'Thermostat'" in loop.json()["error"]["message"]


async def test_the_service_answer_holds_its_running_config_and_its_class(
    api: httpx.AsyncClient,
) -> None:
    started = await api.post("/services/ticker/start", json={"config": {"period": 0.5}})
    assert started.status_code == 200
    assert started.json()["config"] == {"period": 0.5}
    again = (await api.get("/services/ticker")).json()
    assert (again["config"], again["instance"]) == ({"period": 0.5}, None)
    loop = (await api.get("/services/Thermostat.regulate")).json()
    assert (loop["config"], loop["instance"]) == (None, "Thermostat")
    listed = {s["name"]: s for s in (await api.get("/services")).json()}
    assert listed["ticker"]["config"] == {"period": 0.5}


async def test_a_change_over_http_is_recorded_with_the_token_that_made_it(
    engine: taskloom.Engine,
) -> None:
    assert engine.store is not None
    operator, _ = create_token(engine.store, "operator", "ops")
    viewer, _ = create_token(engine.store, "viewer", "watcher")
    app = create_app(engine, auth_required=True)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost/api") as api:
        watched = await api.get(
            "/services/Thermostat/attributes", headers={"Authorization": f"Bearer {viewer}"}
        )
        assert watched.status_code == 200
        denied = await api.patch(
            "/services/Thermostat/attributes",
            json={"target": 19.0},
            headers={"Authorization": f"Bearer {viewer}"},
        )
        assert denied.status_code == 403
        done = await api.patch(
            "/services/Thermostat/attributes",
            json={"target": 19.0},
            headers={"Authorization": f"Bearer {operator}"},
        )
        assert done.status_code == 200
        assert done.json()["updated"]["target"]["by"] == "token:ops (operator)"
    app.state.events.close()
    [change] = engine.store.get_service_attribute_changes("Thermostat")
    assert change.changed_by == "token:ops (operator)"


async def test_changes_are_events_and_the_clients_set_them_like_pydase(
    engine: taskloom.Engine,
) -> None:
    server = HttpServer(ServerSettings(port=0))
    await server.start(engine)
    try:
        async with httpx.AsyncClient(base_url=server.url + "/api") as http:
            params = {"type": "service_attribute", "service": "Thermostat"}
            async with http.stream("GET", "/events", params=params) as stream:
                lines = stream.aiter_lines()
                await _line(lines, lambda line: line.startswith(": subscribed"))
                # The sync client blocks: it runs in a thread while the loop serves it.
                await asyncio.to_thread(_set_with_the_sync_client, server.url)
                event = await _line(lines, lambda line: line.startswith("data:"))
        assert '"values":{"target":21.0}' in event
        assert '"changed_by":"http"' in event
        assert thermostat(engine).target == 21.0

        async with taskloom.AsyncClient(server.url) as client:
            proxy = client.service("Thermostat")
            assert (await proxy.set(mode="eco"))["mode"] == "eco"
            assert (await proxy.values())["target"] == 21.0
            with pytest.raises(taskloom.AttributeValidationError) as caught:
                await proxy.set({"target": "warm"})
            assert caught.value.errors[0].field == "target"
            changes = await client.service_attribute_changes("Thermostat", limit=1)
            assert [(c["name"], c["value"]) for c in changes] == [("mode", "eco")]
    finally:
        await server.stop()


def _set_with_the_sync_client(url: str) -> None:
    with taskloom.Client(url) as client:
        sensor = client.service("Thermostat")
        assert sensor.target == 20.0
        sensor.target = 21.0
        assert sensor.target == 21.0
        with pytest.raises(taskloom.AttributeValidationError, match="attribute 'target'"):
            sensor.target = 1000
        with pytest.raises(AttributeError, match="has no attribute 'speed'"):
            _ = sensor.speed


async def _line(lines: AsyncIterator[str], wanted: Any) -> str:
    async with asyncio.timeout(WAIT):
        async for line in lines:
            if wanted(line):
                return line
    raise AssertionError("the event stream ended")


def _stored(engine: taskloom.Engine, name: str) -> tuple[Any, str | None] | None:
    assert engine.store is not None
    for record in engine.store.get_service_attributes("Thermostat"):
        if record.name == name:
            return record.value, record.updated_by
    return None


async def _true(value: bool) -> bool:
    return value
