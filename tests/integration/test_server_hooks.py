"""Webhooks: a call signed with the hook's secret starts a run with validated inputs; a
missing or bad signature is a 401 and records nothing; a repeated `Idempotency-Key`
returns the same run; on SQLite and PostgreSQL, with and without API tokens."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

import taskloom
from taskloom.schedules.hooks import SIGNATURE_HEADER, sign
from taskloom.server.app import create_app

pytestmark = pytest.mark.timeout(60)


@taskloom.task
def deploy(site: str, replicas: int = 1) -> str:
    return f"{site} x{replicas}"


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[taskloom.Engine]:
    async with taskloom.Engine(database_url, tasks=[deploy], shutdown_grace=0.5) as engine:
        yield engine


@pytest.fixture
async def api(engine: taskloom.Engine) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(engine, auth_required=False) as client:
        yield client


@contextlib.asynccontextmanager
async def _client(
    engine: taskloom.Engine, *, auth_required: bool
) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(engine, database="hooks.db", auth_required=auth_required)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://localhost/api"
        ) as client:
            yield client
    finally:
        app.state.events.close()


def _signed(secret: str, payload: object) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, {SIGNATURE_HEADER: sign(secret, body), "Content-Type": "application/json"}


async def test_a_signed_call_starts_a_run_with_the_body_as_inputs(
    api: httpx.AsyncClient, engine: taskloom.Engine
) -> None:
    _, secret = engine.hooks.create("ship", "deploy")
    body, headers = _signed(secret, {"site": "docs", "replicas": 3})
    response = await api.post("/hooks/ship", content=body, headers=headers)
    assert response.status_code == 201, response.text
    run = response.json()
    assert (run["task"], run["inputs"]) == ("deploy", {"site": "docs", "replicas": 3})
    assert run["idempotency_key"].startswith("hook:ship@")
    done = await engine.wait(run["id"], timeout=20)
    assert done.result == "docs x3"


@pytest.mark.parametrize("signature", [None, "sha256=" + "0" * 64, "md5=abc"])
async def test_a_missing_or_bad_signature_is_a_401_and_records_nothing(
    api: httpx.AsyncClient, engine: taskloom.Engine, signature: str | None
) -> None:
    engine.hooks.create("ship", "deploy")
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers[SIGNATURE_HEADER] = signature
    response = await api.post("/hooks/ship", content=b'{"site": "docs"}', headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "SignatureError"
    assert await engine.list_runs() == []


async def test_a_body_signed_with_another_secret_or_changed_is_refused(
    api: httpx.AsyncClient, engine: taskloom.Engine
) -> None:
    _, secret = engine.hooks.create("ship", "deploy")
    body, headers = _signed("not the secret", {"site": "docs"})
    assert (await api.post("/hooks/ship", content=body, headers=headers)).status_code == 401
    body, headers = _signed(secret, {"site": "docs"})
    tampered = body.replace(b"docs", b"prod")
    assert (await api.post("/hooks/ship", content=tampered, headers=headers)).status_code == 401
    assert await engine.list_runs() == []


async def test_a_repeated_idempotency_key_returns_the_same_run(
    api: httpx.AsyncClient, engine: taskloom.Engine
) -> None:
    _, secret = engine.hooks.create("ship", "deploy")
    body, headers = _signed(secret, {"site": "docs"})
    headers["Idempotency-Key"] = "delivery-7"
    first = await api.post("/hooks/ship", content=body, headers=headers)
    again = await api.post("/hooks/ship", content=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert first.json()["idempotency_key"] == "hook:ship@delivery-7"
    assert len(await engine.list_runs()) == 1


@pytest.mark.parametrize(
    ("payload", "field"),
    [({"site": 5}, "site"), ({}, "site"), (["docs"], "body"), ("docs", "body")],
)
async def test_invalid_inputs_are_a_422_naming_the_field(
    api: httpx.AsyncClient, engine: taskloom.Engine, payload: object, field: str
) -> None:
    _, secret = engine.hooks.create("ship", "deploy")
    body, headers = _signed(secret, payload)
    response = await api.post("/hooks/ship", content=body, headers=headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["task"] == "deploy"
    assert [e["field"] for e in error["errors"]] == [field]
    assert await engine.list_runs() == []


async def test_an_unknown_hook_is_a_404(api: httpx.AsyncClient) -> None:
    headers = {SIGNATURE_HEADER: "x", "Content-Type": "application/json"}
    response = await api.post("/hooks/nope", content=b"{}", headers=headers)
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "HookNotFoundError"


async def test_a_server_with_tokens_takes_signed_calls_without_one(engine: taskloom.Engine) -> None:
    _, secret = engine.hooks.create("ship", "deploy")
    body, headers = _signed(secret, {"site": "docs"})
    async with _client(engine, auth_required=True) as api:
        assert (await api.get("/runs")).status_code == 401  # the rest of the API needs one
        response = await api.post("/hooks/ship", content=body, headers=headers)
        assert response.status_code == 201, response.text
        unsigned = await api.post(
            "/hooks/ship", content=body, headers={"Content-Type": "application/json"}
        )
        assert unsigned.status_code == 401
    assert len(await engine.list_runs()) == 1
