"""Tokens and roles: 401 without a valid token, 403 with the wrong role, per role."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

import taskloom
from support import load_helper
from taskloom.server.app import create_app
from taskloom.server.http import HttpServer
from taskloom.server.settings import ServerSettings, is_loopback
from taskloom.server.tokens import AuthError, Role, auth_required, create_token, hash_token
from taskloom.services.definition import services_in_module
from taskloom.store import MemoryStore, open_store

pytestmark = pytest.mark.timeout(30)

tasks_module = load_helper("server_tasks")


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[taskloom.Engine]:
    async with taskloom.Engine(
        f"sqlite:///{tmp_path / 'auth.db'}",
        tasks=[tasks_module],
        services=services_in_module(tasks_module),
        shutdown_grace=0.5,
    ) as engine:
        yield engine


@pytest.fixture
async def api(engine: taskloom.Engine) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(engine, auth_required=True)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost/api") as client:
        yield client
    app.state.events.close()


@pytest.fixture
def tokens(engine: taskloom.Engine) -> dict[str, str]:
    assert engine.store is not None
    return {role.value: create_token(engine.store, role.value)[0] for role in Role}


#: (method, path, body, the least role that may call it)
ROUTES: list[tuple[str, str, dict[str, object] | None, Role]] = [
    ("GET", "/tasks", None, Role.VIEWER),
    ("GET", "/tasks/adder", None, Role.VIEWER),
    ("GET", "/runs", None, Role.VIEWER),
    ("POST", "/runs", {"task": "adder", "inputs": {"a": 1, "b": 2}}, Role.OPERATOR),
    ("GET", "/services", None, Role.VIEWER),
    ("GET", "/services/ticker", None, Role.VIEWER),
    ("POST", "/services/ticker/stop", None, Role.OPERATOR),
    ("GET", "/tokens", None, Role.ADMIN),
    ("POST", "/tokens", {"role": "viewer"}, Role.ADMIN),
    (
        "POST",
        "/workflows",
        {"workflow": {"name": "w", "steps": {"s": {"task": "adder", "inputs": {"a": 1, "b": 2}}}}},
        Role.OPERATOR,
    ),
    ("GET", "/packages", None, Role.VIEWER),
]


#: Admin routes of packages: (method, path, body, what an admin gets: the request is read).
PACKAGE_ROUTES: list[tuple[str, str, dict[str, object] | None, int]] = [
    ("POST", "/packages", {"source": "./no/such/folder"}, 422),
    ("POST", "/packages/nope/reinstall", None, 404),
    ("DELETE", "/packages/nope", None, 404),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), PACKAGE_ROUTES)
async def test_package_changes_need_an_admin(
    api: httpx.AsyncClient,
    tokens: dict[str, str],
    method: str,
    path: str,
    body: dict[str, object] | None,
    status: int,
) -> None:
    assert (await api.request(method, path, json=body)).status_code == 401
    for role in (Role.VIEWER, Role.OPERATOR):
        response = await api.request(method, path, json=body, headers=headers(tokens[role.value]))
        assert response.status_code == 403, role
        assert "needs the admin role" in response.json()["error"]["message"]
    response = await api.request(method, path, json=body, headers=headers(tokens["admin"]))
    assert response.status_code == status, response.text


async def test_workflow_reads_need_a_viewer_and_changes_an_operator(
    api: httpx.AsyncClient, engine: taskloom.Engine, tokens: dict[str, str]
) -> None:
    workflow = taskloom.Workflow("pair")
    workflow.step("adder", a=1, b=2)
    run = await engine.submit(workflow)
    await engine.wait(run.id)
    viewer, operator = headers(tokens["viewer"]), headers(tokens["operator"])
    path = f"/workflows/{run.id}"
    assert (await api.get(path)).status_code == 401
    assert (await api.get(path, headers=viewer)).json()["steps"][0]["result"] == 3
    for action in ("rerun", "cancel"):
        assert (await api.post(f"{path}/{action}")).status_code == 401
        assert (await api.post(f"{path}/{action}", headers=viewer)).status_code == 403
    assert (await api.post(f"{path}/rerun", headers=operator)).status_code == 201
    assert (await api.post(f"{path}/cancel", headers=operator)).status_code == 200


def headers(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.mark.parametrize(("method", "path", "body", "needed"), ROUTES)
async def test_each_route_needs_a_token_and_its_role(
    api: httpx.AsyncClient,
    tokens: dict[str, str],
    method: str,
    path: str,
    body: dict[str, object] | None,
    needed: Role,
) -> None:
    anonymous = await api.request(method, path, json=body)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert anonymous.json()["error"]["type"] == "AuthError"
    wrong = await api.request(method, path, json=body, headers=headers("tl_not-a-token"))
    assert wrong.status_code == 401

    for role in Role:
        response = await api.request(method, path, json=body, headers=headers(tokens[role.value]))
        if role.allows(needed):
            assert response.status_code in {200, 201}, (role, response.text)
        else:
            assert response.status_code == 403, role
            error = response.json()["error"]
            assert error["type"] == "ForbiddenError"
            assert f"needs the {needed.value} role" in error["message"]


async def test_run_reads_by_id_need_a_viewer_and_cancel_an_operator(
    api: httpx.AsyncClient, engine: taskloom.Engine, tokens: dict[str, str]
) -> None:
    run = await engine.run("adder", {"a": 1, "b": 2})
    viewer, operator = headers(tokens["viewer"]), headers(tokens["operator"])
    assert (await api.get(f"/runs/{run.id}")).status_code == 401
    assert (await api.get(f"/runs/{run.id}", headers=viewer)).json()["result"] == 3
    assert (await api.post(f"/runs/{run.id}/cancel", headers=viewer)).status_code == 403
    assert (await api.post(f"/runs/{run.id}/cancel", headers=operator)).status_code == 200


async def test_health_is_open_and_says_tokens_are_needed(api: httpx.AsyncClient) -> None:
    response = await api.get("/health")
    assert response.status_code == 200
    assert response.json()["auth"] is True


async def test_a_token_in_the_query_is_not_taken(
    api: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    # Tokens go in the Authorization header only: a URL ends up in logs and histories.
    response = await api.get("/tasks", params={"token": tokens["viewer"]})
    assert response.status_code == 401
    assert (await api.get("/events", params={"token": tokens["viewer"]})).status_code == 401


async def test_a_revoked_token_is_refused(api: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    admin = headers(tokens["admin"])
    made = await api.post("/tokens", json={"role": "operator", "name": "ci"}, headers=admin)
    assert made.status_code == 201
    created = made.json()
    assert (created["name"], created["role"]) == ("ci", "operator")
    assert created["token"].startswith("tl_")
    assert "token_hash" not in created
    listed = (await api.get("/tokens", headers=admin)).json()
    assert created["id"] in [t["id"] for t in listed]
    assert all("token" not in t and "token_hash" not in t for t in listed)

    assert (await api.get("/runs", headers=headers(created["token"]))).status_code == 200
    assert (await api.delete(f"/tokens/{created['id']}", headers=admin)).status_code == 204
    assert (await api.get("/runs", headers=headers(created["token"]))).status_code == 401
    again = await api.delete(f"/tokens/{created['id']}", headers=admin)
    assert again.status_code == 404
    assert again.json()["error"]["type"] == "TokenNotFoundError"


async def test_a_token_with_an_unknown_role_is_refused(
    api: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    response = await api.post("/tokens", json={"role": "root"}, headers=headers(tokens["admin"]))
    assert response.status_code == 422
    assert response.json()["error"]["errors"][0]["field"] == "role"


def test_only_the_hash_of_a_token_is_stored(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'hash.db'}")
    try:
        secret, record = create_token(store, "viewer", "desk")
        assert record.token_hash == hash_token(secret)
        assert secret not in (tmp_path / "hash.db").read_bytes().decode("latin-1")
        assert store.find_api_token(hash_token(secret)) == record
    finally:
        store.close()


def test_tokens_are_needed_off_loopback_or_once_one_exists() -> None:
    store = MemoryStore()
    assert auth_required(store, loopback=True) is False
    with pytest.raises(AuthError, match="taskloom token create"):
        auth_required(store, loopback=False)
    _secret, record = create_token(store, "admin")
    assert auth_required(store, loopback=True) is True
    assert auth_required(store, loopback=False) is True
    store.revoke_api_token(record.id)
    assert auth_required(store, loopback=True) is False


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.7", False),
        ("example.org", False),
    ],
)
def test_which_addresses_are_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


async def test_the_server_refuses_a_public_address_without_a_token(
    engine: taskloom.Engine,
) -> None:
    server = HttpServer(ServerSettings(host="0.0.0.0", port=0))
    with pytest.raises(AuthError, match="refusing to listen"):
        await server.start(engine)
    assert server.port is None  # nothing was bound


async def test_whoami_says_the_callers_role(api: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    assert (await api.get("/whoami")).status_code == 401
    for role, secret in tokens.items():
        response = await api.get("/whoami", headers={"Authorization": f"Bearer {secret}"})
        assert response.status_code == 200
        assert response.json()["role"] == role
