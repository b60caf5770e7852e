"""A package added, reinstalled and removed through the HTTP API (in process, real pip):
the server serves its tasks once it is ready, and forgets them once it is removed."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import build_wheel, write_taskloom_package

import taskloom
from taskloom.packages.installs import PackageInstalls
from taskloom.server.app import create_app
from taskloom.server.tokens import create_token

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, PackageInstalls]]:
    async with taskloom.Engine(f"sqlite:///{tmp_path / 'api.db'}") as engine:
        assert engine.store is not None
        # `--find-links` makes pip look outside its index: that needs an admin token.
        secret, _record = create_token(engine.store, "admin")
        app = create_app(engine, venvs_dir=tmp_path / "venvs", auth_required=True)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://localhost/api",
            headers={"Authorization": f"Bearer {secret}"},
        ) as client:
            yield client, app.state.packages
        await app.state.packages.wait_installs()
        app.state.events.close()


async def test_a_package_added_over_http_serves_its_tasks_until_removed(
    served: tuple[httpx.AsyncClient, PackageInstalls], tmp_path: Path, wheelhouse: Path
) -> None:
    api, installs = served
    wheel = build_wheel(write_taskloom_package(tmp_path), tmp_path / "dist")
    body = {"source": str(wheel), "pip_args": ["--no-index", f"--find-links={wheelhouse}"]}
    response = await api.post("/packages", json=body)
    assert response.status_code == 202, response.text
    assert (response.json()["name"], response.json()["state"]) == ("mypkg", "installing")
    assert (await api.post("/packages", json=body)).status_code == 409
    await installs.wait_installs()

    package: dict[str, Any] = (await api.get("/packages/mypkg")).json()
    assert package["state"] == "ready", package["log"]
    assert package["tasks"] == ["mypkg/explode", "mypkg/threshold"]
    assert "tasks: mypkg/explode, mypkg/threshold" in package["log"]
    served_tasks = [t["name"] for t in (await api.get("/tasks")).json()]
    assert "mypkg/threshold" in served_tasks

    async def threshold(url: str) -> dict[str, Any]:
        made = await api.post(
            "/runs", json={"task": "mypkg/threshold", "inputs": {"zarr_url": url}}
        )
        assert made.status_code == 201, made.text
        done = await api.get(f"/runs/{made.json()['id']}/wait", params={"timeout": 60})
        result: dict[str, Any] = done.json()
        return result

    first = await threshold("/data/a.zarr")
    assert first["status"] == "completed", first["error"]
    assert first["result"]["zarr_url"] == "/data/a.zarr"

    again = await api.post("/packages/mypkg/reinstall")
    assert again.status_code == 202
    assert again.json()["state"] == "installing"
    await installs.wait_installs()
    assert (await api.get("/packages/mypkg")).json()["state"] == "ready"
    second = await threshold("/data/b.zarr")
    assert second["status"] == "completed", second["error"]

    removed = await api.delete("/packages/mypkg")
    assert removed.status_code == 200
    assert not os.path.exists(package["venv"])  # noqa: ASYNC240 (one stat)
    assert "mypkg/threshold" not in [t["name"] for t in (await api.get("/tasks")).json()]
    refused = await api.post("/runs", json={"task": "mypkg/threshold", "inputs": {"zarr_url": "x"}})
    assert refused.status_code == 404
    assert (await api.get("/packages")).json() == []
