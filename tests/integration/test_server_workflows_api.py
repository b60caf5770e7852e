"""Workflows and packages through the HTTP API in process (httpx against the ASGI app, an
engine on a real SQLite file, real pip for the package installs)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from json import loads as json_loads
from pathlib import Path
from typing import Any

import httpx
import pytest

import taskloom
from support import load_helper
from taskloom.packages.installs import PackageInstalls
from taskloom.server.app import create_app
from taskloom.server.events import EventFilter, EventHub
from taskloom.services.definition import services_in_module

pytestmark = pytest.mark.timeout(60)

tasks_module = load_helper("server_tasks")

#: Two additions, the second fed by the first: 1 + 2, then 3 + 10.
CHAIN: dict[str, Any] = {
    "name": "chain",
    "inputs": {"a": {"type": "integer"}},
    "steps": {
        "first": {"task": "adder", "inputs": {"a": "${inputs.a}", "b": 2}},
        "second": {"task": "adder", "inputs": {"a": "${steps.first.result}", "b": 10}},
    },
    "outputs": {"total": "${steps.second.result}"},
}


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
async def app_state(engine: taskloom.Engine, tmp_path: Path) -> AsyncIterator[Any]:
    app = create_app(engine, database="api.db", venvs_dir=tmp_path / "venvs")
    yield app
    await app.state.packages.wait_installs()
    app.state.events.close()


@pytest.fixture
async def api(app_state: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app_state)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost/api") as client:
        yield client


def error_of(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body


async def finished(api: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    response = await api.get(f"/runs/{run_id}/wait", params={"timeout": 20})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# --- submit and read --------------------------------------------------------------------------


async def test_a_workflow_runs_and_its_steps_draw_the_graph(api: httpx.AsyncClient) -> None:
    response = await api.post("/workflows", json={"workflow": CHAIN, "inputs": {"a": 1}})
    assert response.status_code == 201, response.text
    run = response.json()
    assert run["task"] == "workflow:chain"
    assert run["status"] == "running"
    done = await finished(api, run["id"])
    assert done["status"] == "completed"
    assert done["result"]["outputs"] == {"total": 13}

    shown = (await api.get(f"/workflows/{run['id']}")).json()
    assert shown["run"]["id"] == run["id"]
    assert shown["workflow"]["steps"]["second"]["task"] == "adder"
    first, second = shown["steps"]
    assert (first["name"], first["dependencies"], first["status"], first["result"]) == (
        "first",
        [],
        "completed",
        3,
    )
    assert (second["name"], second["dependencies"], second["result"]) == ("second", ["first"], 13)
    assert second["counts"] == {"completed": 1}
    (step_run,) = second["runs"]
    assert step_run["parent_id"] == run["id"]
    assert second["run_ids"] == [step_run["id"]]
    children = (await api.get("/runs", params={"parent_id": run["id"]})).json()["runs"]
    assert sorted(c["id"] for c in children) == sorted([*first["run_ids"], *second["run_ids"]])


async def test_a_workflow_given_as_yaml_text_runs(api: httpx.AsyncClient) -> None:
    text = """
name: doubled
steps:
  once: {task: adder, inputs: {a: 4, b: 4}}
  twice: {task: adder, inputs: {a: "${steps.once.result}", b: "${steps.once.result}"}}
"""
    response = await api.post("/workflows", json={"workflow": text})
    assert response.status_code == 201, response.text
    done = await finished(api, response.json()["id"])
    assert done["result"]["outputs"] == {"twice": 16}


@pytest.mark.parametrize("number", [".nan", ".inf", "-.Inf"])
async def test_yaml_nan_and_infinity_are_refused_with_422(
    api: httpx.AsyncClient, number: str
) -> None:
    text = f"name: odd\nsteps:\n  once: {{task: adder, inputs: {{a: {number}, b: 1}}}}\n"
    response = await api.post("/workflows", json={"workflow": text})
    assert response.status_code == 422, response.text
    assert "is not a finite number (JSON has no NaN or Infinity)" in response.text
    assert (await api.get("/runs")).json()["runs"] == []


async def test_a_map_step_lists_its_items_in_order(api: httpx.AsyncClient) -> None:
    workflow = {
        "name": "mapped",
        "steps": {"sums": {"task": "adder", "map": "a", "inputs": {"a": [1, 2, 3], "b": 1}}},
    }
    response = await api.post("/workflows", json={"workflow": workflow})
    await finished(api, response.json()["id"])
    (step,) = (await api.get(f"/workflows/{response.json()['id']}")).json()["steps"]
    assert step["map"] == "a"
    assert step["status"] == "completed"
    assert step["result"] == [2, 3, 4]
    assert [r["inputs"]["a"] for r in step["runs"]] == [1, 2, 3]


async def test_a_workflow_read_is_exactly_what_its_model_says(api: httpx.AsyncClient) -> None:
    """The read is made without the model's check (for speed): the model takes every
    field of it and gives back the same, so nothing is missing, extra or differently
    typed."""
    from taskloom.server.api.models import WorkflowOut

    workflow = {
        "name": "shapes",
        "steps": {
            "sums": {"task": "adder", "map": "a", "inputs": {"a": [1, 2, 3], "b": 1}},
            "total": {"task": "adder", "inputs": {"a": "${steps.sums.result[0]}", "b": 5}},
            "oops": {"task": "broken", "inputs": {"message": "no"}, "after": ["total"]},
        },
    }
    response = await api.post("/workflows", json={"workflow": workflow})
    done = await finished(api, response.json()["id"])
    assert done["status"] == "failed"
    read = await api.get(f"/workflows/{done['id']}")
    assert read.status_code == 200
    assert read.headers["content-type"] == "application/json"
    shown = read.json()
    assert WorkflowOut.model_validate(shown).model_dump(mode="json") == shown
    statuses = {step["name"]: step["status"] for step in shown["steps"]}
    assert statuses == {"sums": "completed", "total": "completed", "oops": "failed"}
    (oops,) = [step for step in shown["steps"] if step["name"] == "oops"]
    assert oops["runs"][0]["error"]["message"] == "no"
    # Read again (the workflow's shape is kept): the same answer.
    assert (await api.get(f"/workflows/{done['id']}")).json() == shown


# --- invalid workflows --------------------------------------------------------------------------


async def test_every_step_naming_an_unserved_task_is_listed(
    api: httpx.AsyncClient, engine: taskloom.Engine, tmp_path: Path
) -> None:
    marker = tmp_path / "imported"
    module = tmp_path / "evil.py"
    module.write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('x')\n"
        "import taskloom\n@taskloom.task\ndef boom() -> int:\n    return 1\n"
    )
    workflow = {
        "name": "bad",
        "steps": {
            "ok": {"task": "adder", "inputs": {"a": 1, "b": 2}},
            "lost": {"task": "no_such_task"},
            "outside": {"task": f"{module}:boom"},
        },
    }
    response = await api.post("/workflows", json={"workflow": workflow})
    assert response.status_code == 422
    error = error_of(response)
    assert error["type"] == "WorkflowValidationError"
    assert error["workflow"] == "bad"
    assert [(e["step"], e["field"]) for e in error["errors"]] == [
        ("lost", "steps.lost"),
        ("outside", "steps.outside"),
    ]
    assert (
        "this server runs only the tasks it serves (adder, broken, chatty, nap)"
        in (error["errors"][0]["message"])
    )
    assert error["message"].startswith("workflow 'bad': step 'lost': unknown task 'no_such_task'")
    assert not marker.exists(), "the server imported a module a client named"
    assert await engine.list_runs() == []


@pytest.mark.parametrize(
    ("workflow", "step", "field", "problem"),
    [
        (
            {
                "name": "loop",
                "steps": {
                    "x": {"task": "adder", "inputs": {"a": "${steps.y.result}", "b": 1}},
                    "y": {"task": "adder", "inputs": {"a": "${steps.x.result}", "b": 1}},
                },
            },
            "x",
            None,
            "steps form a cycle",
        ),
        (
            {"name": "short", "steps": {"add": {"task": "adder", "inputs": {"a": 1}}}},
            "add",
            "steps.add.inputs.b",
            "missing required input of task 'adder'",
        ),
        (
            {"name": "odd", "steps": {"add": {"task": "adder", "colour": "red"}}},
            "add",
            "steps.add",
            "unknown keys ['colour']",
        ),
        ({"steps": {}}, None, "workflow", "'name' is missing"),
    ],
)
async def test_an_invalid_workflow_is_a_422_naming_the_step(
    api: httpx.AsyncClient,
    engine: taskloom.Engine,
    workflow: dict[str, Any],
    step: str | None,
    field: str | None,
    problem: str,
) -> None:
    response = await api.post("/workflows", json={"workflow": workflow})
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["type"] == "WorkflowValidationError"
    (entry,) = error["errors"]
    assert entry["step"] == step
    if field is not None:
        assert entry["field"] == field
    assert problem in entry["message"]
    assert await engine.list_runs() == []


async def test_invalid_workflow_inputs_name_the_field(api: httpx.AsyncClient) -> None:
    response = await api.post("/workflows", json={"workflow": CHAIN, "inputs": {"a": "x"}})
    assert response.status_code == 422
    error = error_of(response)
    assert error["type"] == "InputValidationError"
    assert error["task"] == "workflow:chain"
    assert [e["field"] for e in error["errors"]] == ["a"]


async def test_unparsable_text_and_bad_bodies_are_422s(api: httpx.AsyncClient) -> None:
    response = await api.post("/workflows", json={"workflow": "steps: [unclosed"})
    assert response.status_code == 422
    assert "cannot parse the text" in error_of(response)["message"]
    aliased = "name: w\nsteps:\n  a: &x {task: adder, inputs: {a: 1, b: 2}}\n  b: *x\n"
    response = await api.post("/workflows", json={"workflow": aliased})
    assert response.status_code == 422
    assert "aliases (*name) are not accepted" in error_of(response)["message"]
    response = await api.post("/workflows", json={"workflow": 3})
    assert response.status_code == 422
    assert error_of(response)["type"] == "RequestValidationError"


async def test_unknown_and_non_workflow_runs_are_404s(
    api: httpx.AsyncClient, engine: taskloom.Engine
) -> None:
    response = await api.get("/workflows/nope")
    assert response.status_code == 404
    assert error_of(response)["type"] == "RunNotFoundError"
    plain = await engine.run("adder", {"a": 1, "b": 1})
    for method, path in (
        ("GET", f"/workflows/{plain.id}"),
        ("POST", f"/workflows/{plain.id}/rerun"),
        ("POST", f"/workflows/{plain.id}/cancel"),
    ):
        response = await api.request(method, path)
        assert response.status_code == 404, path
        error = error_of(response)
        assert error["type"] == "NotAWorkflowRunError"
        assert "is not a workflow run" in error["message"]


# --- cancel, rerun, events ------------------------------------------------------------------------

SLOW: dict[str, Any] = {
    "name": "slow",
    "steps": {
        "rest": {"task": "nap", "inputs": {"seconds": 30}},
        "after_rest": {"task": "adder", "inputs": {"a": 1, "b": 1}, "after": ["rest"]},
    },
}


async def test_cancelling_a_workflow_cancels_its_steps(api: httpx.AsyncClient) -> None:
    run = (await api.post("/workflows", json={"workflow": SLOW})).json()
    cancelled = await api.post(f"/workflows/{run['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    steps = (await api.get(f"/workflows/{run['id']}")).json()["steps"]
    assert {s["name"]: s["status"] for s in steps} == {
        "rest": "cancelled",
        "after_rest": "cancelled",
    }


async def test_a_failed_workflow_reruns_and_a_running_one_cannot(
    api: httpx.AsyncClient,
) -> None:
    slow = (await api.post("/workflows", json={"workflow": SLOW})).json()
    busy = await api.post(f"/workflows/{slow['id']}/rerun")
    assert busy.status_code == 409
    assert error_of(busy)["type"] == "WorkflowError"
    await api.post(f"/workflows/{slow['id']}/cancel")

    failing = {
        "name": "failing",
        "steps": {
            "sum": {"task": "adder", "inputs": {"a": 1, "b": 2}},
            "fail": {"task": "broken", "inputs": {"message": "no"}, "after": ["sum"]},
        },
    }
    first = (await api.post("/workflows", json={"workflow": failing})).json()
    assert (await finished(api, first["id"]))["status"] == "failed"
    again = await api.post(f"/workflows/{first['id']}/rerun")
    assert again.status_code == 201
    second = await finished(api, again.json()["id"])
    assert second["status"] == "failed"
    assert second["result"]["reused"] == 1
    steps = {s["name"]: s for s in (await api.get(f"/workflows/{second['id']}")).json()["steps"]}
    assert steps["sum"]["runs"][0]["attempts"] == 0  # reused, not run again
    assert steps["fail"]["status"] == "failed"


async def test_events_follow_one_workflow_by_parent_id(
    api: httpx.AsyncClient, app_state: Any
) -> None:
    hub: EventHub = app_state.state.events
    run = (await api.post("/workflows", json={"workflow": SLOW})).json()
    subscription = hub.subscribe(EventFilter(parent_id=run["id"]))
    other = hub.subscribe(EventFilter(types=frozenset({"run"})))
    try:
        plain = (await api.post("/runs", json={"task": "adder", "inputs": {"a": 1, "b": 1}})).json()
        await api.post(f"/workflows/{run['id']}/cancel")
        seen: list[tuple[str | None, str]] = []
        while not any(rid == run["id"] and kind == "finished" for rid, kind in seen):
            event = await asyncio.wait_for(subscription.queue.get(), 10)
            assert event.type == "run"
            data = json_loads(event.json())
            assert run["id"] in (event.run_id, data["run"]["parent_id"])
            seen.append((event.run_id, data["kind"]))
        step_events = [rid for rid, _ in seen if rid != run["id"]]
        assert step_events, "no event of a step"
        # The plain run's events reached the other subscriber, and only it.
        others = [other.queue.get_nowait().run_id for _ in range(other.queue.qsize())]
        assert plain["id"] in others
        assert plain["id"] not in [rid for rid, _ in seen]
    finally:
        hub.unsubscribe(subscription)
        hub.unsubscribe(other)


# --- packages ---------------------------------------------------------------------------------


async def test_no_packages_then_an_unknown_one_is_a_404(api: httpx.AsyncClient) -> None:
    assert (await api.get("/packages")).json() == []
    for method, path in (
        ("GET", "/packages/nope"),
        ("POST", "/packages/nope/reinstall"),
        ("DELETE", "/packages/nope"),
    ):
        response = await api.request(method, path)
        assert response.status_code == 404, path
        assert error_of(response)["type"] == "UnknownPackageError"


async def test_an_invalid_source_is_a_422_and_records_nothing(api: httpx.AsyncClient) -> None:
    response = await api.post("/packages", json={"source": "./no/such/folder"})
    assert response.status_code == 422
    error = error_of(response)
    assert [e["field"] for e in error["errors"]] == ["source"]
    assert "expected NAME[==VERSION], a wheel file or a package folder" in error["message"]
    assert (await api.get("/packages")).json() == []


async def test_a_failed_install_keeps_its_log_and_can_be_removed(
    api: httpx.AsyncClient, app_state: Any, tmp_path: Path
) -> None:
    installs: PackageInstalls = app_state.state.packages
    body = {"source": "no-such-task-package==9.9", "pip_args": ["--no-index"]}
    response = await api.post("/packages", json=body)
    assert response.status_code == 202
    assert response.json()["state"] == "installing"
    assert response.json()["name"] == "no-such-task-package"
    await installs.wait_installs()
    package = (await api.get("/packages/no-such-task-package")).json()
    assert package["state"] == "failed"
    assert "No matching distribution found for no-such-task-package==9.9" in package["log"]
    assert "exited with 1" in package["error"]
    assert package["tasks"] == []
    assert [p["name"] for p in (await api.get("/packages")).json()] == ["no-such-task-package"]
    assert not any((tmp_path / "venvs").glob("no-such-task-package*"))

    removed = await api.delete("/packages/no-such-task-package")
    assert removed.status_code == 200
    assert removed.json()["state"] == "failed"
    assert (await api.get("/packages/no-such-task-package")).status_code == 404


async def test_a_package_installing_cannot_be_added_reinstalled_or_removed(
    api: httpx.AsyncClient, app_state: Any
) -> None:
    installs: PackageInstalls = app_state.state.packages
    body = {"source": "no-such-task-package==9.9", "pip_args": ["--no-index"]}
    assert (await api.post("/packages", json=body)).status_code == 202
    # Each request takes milliseconds; making the venv and starting pip takes far longer.
    for method, path, json in (
        ("POST", "/packages", body),
        ("POST", "/packages/no-such-task-package/reinstall", None),
        ("DELETE", "/packages/no-such-task-package", None),
    ):
        assert installs.installing == 1
        response = await api.request(method, path, json=json)
        assert response.status_code == 409, (path, response.text)
        assert error_of(response)["type"] == "PackageError"
    await installs.wait_installs()
