"""A local server cannot be driven by a web page, reads bounded strict JSON only, and says
so in its OpenAPI document: a real uvicorn on a free port, over real HTTP.

This module also runs against the oldest FastAPI the project allows (`.ci/oldest-fastapi`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest

import taskloom
from support import WAIT, load_helper
from taskloom.exceptions import StoreUnavailableError
from taskloom.server.guard import STATE_CHANGING, BodyTooLargeError, HostPolicy, RequestGuard
from taskloom.server.http import HttpServer
from taskloom.server.openapi import SIGNED
from taskloom.server.settings import ServerSettings
from taskloom.server.tokens import create_token
from taskloom.services.definition import services_in_module

pytestmark = pytest.mark.timeout(60)

tasks_module = load_helper("server_tasks")

MiB = 1024 * 1024


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[taskloom.Engine]:
    async with taskloom.Engine(
        f"sqlite:///{tmp_path / 'security.db'}",
        tasks=[tasks_module],
        services=services_in_module(tasks_module),
        shutdown_grace=0.5,
    ) as engine:
        yield engine


async def _serve(engine: taskloom.Engine, **settings: Any) -> HttpServer:
    server = HttpServer(ServerSettings(port=0, **settings))
    await server.start(engine)
    return server


@pytest.fixture
async def server(engine: taskloom.Engine) -> AsyncIterator[HttpServer]:
    """A loopback server with no token that also answers to `taskloom.test` and `*.lab.test`."""
    server = await _serve(engine, allowed_hosts=("taskloom.test", "*.lab.test"))
    yield server
    await server.stop()


@pytest.fixture
async def http(server: HttpServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as client:
        yield client


def _state_changing_routes(document: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Every state-changing operation of the OpenAPI document, with made-up path values."""
    for path, item in document["paths"].items():
        for method in item:
            if method.upper() in STATE_CHANGING:
                concrete = path
                for name in ("run_id", "name", "token_id", "topic"):
                    concrete = concrete.replace("{" + name + "}", "nothing-here")
                yield method.upper(), concrete


# Host -----------------------------------------------------------------------------------


async def test_a_foreign_host_is_refused_on_every_route(http: httpx.AsyncClient) -> None:
    document = (await http.get("/api/openapi.json")).json()
    routes = [*_state_changing_routes(document), ("GET", "/api/runs"), ("GET", "/")]
    assert len(routes) >= 16
    for method, path in routes:
        response = await http.request(method, path, headers={"Host": "evil.example"}, json={})
        assert response.status_code == 421, (method, path, response.text)
        error = response.json()["error"]
        assert error["type"] == "MisdirectedRequest"
        assert "'evil.example'" in error["message"]
        assert "--allowed-host" in error["message"]


async def test_a_token_cannot_be_made_through_a_rebound_name(http: httpx.AsyncClient) -> None:
    refused = await http.post(
        "/api/tokens", json={"role": "admin"}, headers={"Host": "evil.example:8321"}
    )
    assert refused.status_code == 421
    assert (await http.get("/api/tokens")).json() == []


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "LOCALHOST:9",
        "127.0.0.1",
        "127.0.0.1:1",
        "127.8.0.1:80",
        "[::1]",
        "[::1]:8321",
        "taskloom.test",
        "taskloom.test:443",
        "a.lab.test",
        "b.c.lab.test:1",
    ],
)
async def test_loopback_names_and_allowed_ones_are_served(
    http: httpx.AsyncClient, host: str
) -> None:
    response = await http.get("/api/health", headers={"Host": host})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "host", ["evil.example", "lab.test", "localhost.evil.example", "127.0.0.1.nip.io", "a b", ""]
)
async def test_other_names_are_refused(http: httpx.AsyncClient, host: str) -> None:
    assert (await http.get("/api/health", headers={"Host": host})).status_code == 421


def test_off_loopback_any_host_is_served_unless_names_are_given() -> None:
    anywhere = HostPolicy.for_server(bind="0.0.0.0", loopback=False)
    assert anywhere.allows("evil.example")
    listed = HostPolicy.for_server(bind="192.168.1.20", loopback=False, allowed=["tl.example"])
    assert listed.allows("tl.example")
    assert listed.allows("192.168.1.20")
    assert listed.allows("localhost")
    assert not listed.allows("evil.example")


# Origin ---------------------------------------------------------------------------------


async def test_a_foreign_origin_is_refused_on_every_state_changing_route(
    http: httpx.AsyncClient,
) -> None:
    document = (await http.get("/api/openapi.json")).json()
    for origin in ["http://evil.example", "null", "http://localhost:3000", "file://"]:
        for method, path in _state_changing_routes(document):
            response = await http.request(method, path, headers={"Origin": origin})
            assert response.status_code == 403, (origin, method, path, response.text)
            error = response.json()["error"]
            assert error["type"] == "ForbiddenError"
            assert "another origin" in error["message"]


async def test_a_body_less_cross_site_post_changes_nothing(
    http: httpx.AsyncClient, server: HttpServer
) -> None:
    assert (await http.post("/api/services/ticker/start")).status_code == 200
    made = await http.post("/api/runs", json={"task": "nap", "inputs": {"seconds": 30}})
    run_id = made.json()["id"]
    for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        assert (await http.post("/api/services/ticker/stop", headers=headers)).status_code == 403
        cancel = await http.post(f"/api/runs/{run_id}/cancel", headers=headers)
        assert cancel.status_code == 403
    assert (await http.get("/api/services/ticker")).json()["state"] == "running"
    assert (await http.get(f"/api/runs/{run_id}")).json()["status"] in {"pending", "running"}
    # The server's own pages may: same host and port as the request was sent to.
    own = {"Origin": server.url, "Sec-Fetch-Site": "same-origin"}
    assert (await http.post(f"/api/runs/{run_id}/cancel", headers=own)).status_code == 200
    assert (await http.post("/api/services/ticker/stop", headers=own)).status_code == 200


async def test_reads_from_any_origin_are_answered_without_cors(http: httpx.AsyncClient) -> None:
    # A page of another site cannot read these (no CORS headers); a rebound name is
    # refused by the Host check.
    response = await http.get("/api/runs", headers={"Origin": "http://evil.example"})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


# JSON bodies ----------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_a_body_not_sent_as_json_gets_415(
    http: httpx.AsyncClient, content_type: str | None
) -> None:
    body = json.dumps({"task": "adder", "inputs": {"a": 1, "b": 2}}).encode()
    headers = {"Content-Type": content_type} if content_type else {}
    for path in ["/api/runs", "/api/tokens", "/api/services/ticker/start"]:
        response = await http.post(path, content=body, headers=headers)
        assert response.status_code == 415, (path, response.text)
        error = response.json()["error"]
        assert error["type"] == "UnsupportedMediaType"
        assert "Content-Type: application/json" in error["message"]
    assert (await http.get("/api/runs")).json()["runs"] == []
    assert (await http.get("/api/tokens")).json() == []


async def test_json_with_a_charset_or_a_json_suffix_is_read(http: httpx.AsyncClient) -> None:
    body = json.dumps({"task": "adder", "inputs": {"a": 1, "b": 2}}).encode()
    for content_type in ["application/json; charset=utf-8", "application/vnd.taskloom+json"]:
        made = await http.post("/api/runs", content=body, headers={"Content-Type": content_type})
        assert made.status_code == 201, made.text


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
async def test_nan_and_infinity_are_refused_with_422(
    http: httpx.AsyncClient, constant: str
) -> None:
    bodies = {
        "/api/runs": '{"task": "adder", "inputs": {"a": %s, "b": 1}}',
        "/api/workflows": '{"workflow": {"name": "w", "steps": {}}, "inputs": {"x": %s}}',
        "/api/services/ticker/start": '{"config": {"period": %s}}',
    }
    for path, template in bodies.items():
        response = await http.post(
            path, content=template % constant, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422, (path, response.text)
        error = response.json()["error"]
        assert f"{constant.lstrip('-')} is not a JSON number" in error["message"]
        assert error["errors"][0]["field"] == "body"
    assert (await http.get("/api/runs")).json()["runs"] == []
    assert (await http.get("/api/services/ticker")).json()["state"] != "running"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"task": "adder",', "the body is not JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[" * 100_000, "nested too deeply"),
    ],
)
async def test_an_unparseable_body_gets_422(
    http: httpx.AsyncClient, body: bytes, says: str
) -> None:
    response = await http.post(
        "/api/runs", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert says in response.json()["error"]["message"]


# Body size ------------------------------------------------------------------------------


async def test_a_17_mib_body_gets_413(http: httpx.AsyncClient) -> None:
    body = b'{"task": "adder", "inputs": {"a": "' + b"x" * (17 * MiB) + b'"}}'
    response = await http.post(
        "/api/runs", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["type"] == "BodyTooLarge"
    assert "16 MiB" in error["message"]
    assert "--max-body" in error["message"]
    # Just under the limit is read (and refused for what it holds, not for its size).
    fits = b'{"task": "adder", "inputs": {"a": "' + b"x" * (15 * MiB) + b'"}}'
    response = await http.post(
        "/api/runs", content=fits, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422


async def test_a_chunked_body_is_refused_once_it_passes_the_limit(
    engine: taskloom.Engine,
) -> None:
    server = await _serve(engine, max_body=64 * 1024)
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"task": "adder", "inputs": {"a": "'
        for _ in range(64):  # 4 MiB in all, never announced in a Content-Length
            sent += 64 * 1024
            yield b"x" * (64 * 1024)
        yield b'"}}'

    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
            response = await http.post(
                "/api/runs", content=chunks(), headers={"Content-Type": "application/json"}
            )
            assert "content-length" not in response.request.headers
            assert response.status_code == 413
            assert "64 KiB" in response.json()["error"]["message"]
            small = await http.post("/api/runs", json={"task": "adder", "inputs": {"a": 1, "b": 2}})
            assert small.status_code == 201
    finally:
        await server.stop()


async def test_the_guard_never_hands_on_more_than_the_limit() -> None:
    # In process, to see what the app is handed: chunks up to the limit, then the refusal.
    handed: list[int] = []
    sent: list[MutableMapping[str, Any]] = []
    asked = 0

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            handed.append(len(message["body"]))

    async def receive() -> dict[str, Any]:
        nonlocal asked
        asked += 1
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    policy = HostPolicy.for_server(bind="127.0.0.1", loopback=True)
    guard = RequestGuard(app, hosts=policy, max_body=4500)
    headers = [(b"host", b"localhost"), (b"content-type", b"application/json")]
    scope = {"type": "http", "method": "POST", "path": "/api/runs", "headers": headers}
    await guard(scope, receive, send)
    assert sum(handed) == 4000
    assert asked == 5
    assert sent[0]["status"] == 413
    assert b"4500 bytes" in sent[1]["body"]
    assert BodyTooLargeError(4500).status_code == 413


# Packages -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"source": "anything", "pip_args": ["--index-url", "http://evil.example/simple"]},
        {"source": "anything", "pip_args": ["--extra-index-url=http://evil.example/simple"]},
        {"source": "anything", "pip_args": ["-r", "/tmp/requirements.txt"]},
        {"source": "anything @ https://evil.example/anything-1.0.whl"},
        {"source": "git+https://evil.example/anything.git"},
    ],
)
async def test_package_options_that_fetch_elsewhere_need_a_token(
    http: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    response = await http.post("/api/packages", json=body)
    assert response.status_code == 403, response.text
    message = response.json()["error"]["message"]
    assert "needs an admin token" in message
    assert "taskloom package add" in message
    assert (await http.get("/api/packages")).json() == []


async def test_package_options_that_narrow_pip_need_no_token(http: httpx.AsyncClient) -> None:
    body = {"source": "./no/such/folder", "pip_args": ["--no-index", "--no-deps"]}
    response = await http.post("/api/packages", json=body)
    assert response.status_code == 422  # read, and refused for the source it names


# Methods, OpenAPI -----------------------------------------------------------------------


async def test_options_and_other_methods_get_405_with_every_allowed_method(
    http: httpx.AsyncClient,
) -> None:
    for method in ["OPTIONS", "PUT", "PATCH"]:
        response = await http.request(method, "/api/runs")
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, POST"
        assert response.json()["error"]["type"] == "MethodNotAllowed"
    preflight = await http.options(
        "/api/runs",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 405
    assert not any(h.startswith("access-control-") for h in preflight.headers)
    unknown = await http.get("/api/no/such/route")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["type"] == "NotFound"


async def test_the_openapi_of_a_server_without_tokens_declares_no_security(
    http: httpx.AsyncClient,
) -> None:
    document = (await http.get("/api/openapi.json")).json()
    assert "securitySchemes" not in document.get("components", {})
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            codes = set(operation["responses"])
            assert "security" not in operation, (method, path)
            # A webhook call's credential is its signature, with tokens or without.
            assert ("401" in codes) == (path in SIGNED), (method, path)
            assert "421" in codes
            if method.upper() in STATE_CHANGING:
                assert "403" in codes, (method, path)
            if "requestBody" in operation:
                assert {"413", "415", "422"} <= codes, (method, path)
            for code, response in operation["responses"].items():
                if code >= "400":
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (method, path)


async def test_the_openapi_of_a_server_with_tokens_declares_bearer_and_401(
    engine: taskloom.Engine,
) -> None:
    assert engine.store is not None
    create_token(engine.store, "viewer")
    server = await _serve(engine)
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            document = (await http.get("/api/openapi.json")).json()
    finally:
        await server.stop()
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    secured = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if path in {"/api/health", "/api/ready"}:  # the probes: they carry no token
                assert "security" not in operation
                continue
            if path in SIGNED:  # its signature is the credential, not a token
                assert "security" not in operation
                assert "401" in operation["responses"]
                continue
            assert operation.get("security") == [{"HTTPBearer": []}], (method, path)
            assert {"401", "403"} <= set(operation["responses"]), (method, path)
            secured += 1
    assert secured >= 20


# Store unavailable ----------------------------------------------------------------------


async def test_a_store_that_cannot_commit_gets_503_with_retry_after(
    http: httpx.AsyncClient,
    engine: taskloom.Engine,
    server: HttpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def unavailable(*_args: Any, **_kwargs: Any) -> Any:
        raise StoreUnavailableError("the database is locked: nothing was accepted", retry_after=2.2)

    monkeypatch.setattr(engine, "submit", unavailable)
    response = await http.post("/api/runs", json={"task": "adder", "inputs": {"a": 1, "b": 2}})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "3"
    error = response.json()["error"]
    assert (error["type"], error["retry_after"]) == ("StoreUnavailableError", 2.2)
    async with taskloom.AsyncClient(server.url) as client:
        with pytest.raises(StoreUnavailableError, match="locked") as raised:
            await client.submit("adder", {"a": 1, "b": 2})
    assert raised.value.retry_after == 2.2


async def test_retry_after_is_at_least_one_second(
    http: httpx.AsyncClient, engine: taskloom.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unavailable(*_args: Any, **_kwargs: Any) -> Any:
        raise StoreUnavailableError(retry_after=0.05)

    monkeypatch.setattr(engine, "submit", unavailable)
    response = await http.post("/api/runs", json={"task": "adder", "inputs": {"a": 1, "b": 2}})
    assert (response.status_code, response.headers["retry-after"]) == (503, "1")


# Revoked tokens end their streams -------------------------------------------------------


async def _subscribed(stream: httpx.Response) -> AsyncIterator[str]:
    lines = stream.aiter_lines()
    async with asyncio.timeout(WAIT):
        async for line in lines:
            if line.startswith(": subscribed"):
                break
    return lines


async def _ends_within(lines: AsyncIterator[str], seconds: float) -> float:
    began = time.monotonic()
    async with asyncio.timeout(seconds):
        async for _line in lines:
            pass
    return time.monotonic() - began


@pytest.mark.parametrize("revoke_by", ["api", "store"])
async def test_a_revoked_token_s_stream_ends_within_a_second(
    engine: taskloom.Engine, tmp_path: Path, revoke_by: str
) -> None:
    assert engine.store is not None
    admin, _ = create_token(engine.store, "admin")
    viewer, record = create_token(engine.store, "viewer")
    server = await _serve(engine)
    try:
        async with (
            httpx.AsyncClient(base_url=server.url + "/api", timeout=WAIT) as http,
            http.stream("GET", "/events", headers={"Authorization": f"Bearer {viewer}"}) as doomed,
            http.stream("GET", "/events", headers={"Authorization": f"Bearer {admin}"}) as kept,
        ):
            assert doomed.status_code == kept.status_code == 200
            doomed_lines = await _subscribed(doomed)
            kept_lines = await _subscribed(kept)
            if revoke_by == "api":
                response = await http.delete(
                    f"/tokens/{record.id}", headers={"Authorization": f"Bearer {admin}"}
                )
                assert response.status_code == 204
            else:  # another process's `taskloom token revoke`: the store alone knows
                other = taskloom.store.open_store(f"sqlite:///{tmp_path / 'security.db'}")
                try:
                    assert other.revoke_api_token(record.id)
                finally:
                    other.close()
            took = await _ends_within(doomed_lines, 1.0)
            assert took < 1.0
            # The other token's stream goes on: it still gets events.
            made = await http.post(
                "/runs",
                json={"task": "adder", "inputs": {"a": 1, "b": 2}},
                headers={"Authorization": f"Bearer {admin}"},
            )
            assert made.status_code == 201
            async with asyncio.timeout(WAIT):
                async for line in kept_lines:
                    if line.startswith("data:") and made.json()["id"] in line:
                        break
            refused = await http.get("/events", headers={"Authorization": f"Bearer {viewer}"})
            assert refused.status_code == 401
    finally:
        await server.stop()
