"""`Client` and `AsyncClient`: the same operations from one description, against an
in-memory server (`httpx.MockTransport`)."""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any, get_args, get_origin

import httpx
import pytest

import taskloom
from taskloom import AsyncClient, Client, ClientError, Run, RunStatus
from taskloom.client_plans import Iteration, Operation
from taskloom.endpoints import Operations
from taskloom.http_errors import ERRORS
from taskloom.server.encoding import jsonable
from taskloom.server.tokens import AuthError

#: The methods of one client that the other names its own way.
_RENAMED = {"close": "aclose"}
#: Methods that return an object standing for something on the server, one of its own
#: class for each client (whose methods are plain or coroutines as the client's are).
_PROXIES = {"service": ("ServiceProxy", "AsyncServiceProxy")}


def _public(cls: type) -> dict[str, Any]:
    return {
        name: member
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def test_both_clients_have_the_same_public_methods() -> None:
    synchronous = _public(Client)
    asynchronous = _public(AsyncClient)
    assert sorted(_RENAMED.get(name, name) for name in synchronous) == sorted(asynchronous)


@pytest.mark.parametrize("name", sorted(_public(Client)))
def test_each_method_has_the_same_signature_modulo_async(name: str) -> None:
    synchronous = inspect.signature(getattr(Client, name))
    asynchronous = inspect.signature(getattr(AsyncClient, _RENAMED.get(name, name)))
    assert synchronous.parameters == asynchronous.parameters
    returns = synchronous.return_annotation
    if name in _PROXIES:
        assert (returns, asynchronous.return_annotation) == _PROXIES[name]
        assert not inspect.iscoroutinefunction(getattr(AsyncClient, name))
    elif get_origin(returns) is Iterator:
        assert get_origin(asynchronous.return_annotation) is AsyncIterator
        assert get_args(asynchronous.return_annotation) == get_args(returns)
    else:
        assert asynchronous.return_annotation == returns
        assert inspect.iscoroutinefunction(getattr(AsyncClient, _RENAMED.get(name, name)))


@pytest.mark.parametrize("cls", [Client, AsyncClient])
def test_every_public_method_has_a_docstring(cls: type) -> None:
    undocumented = [name for name, member in _public(cls).items() if not inspect.getdoc(member)]
    assert undocumented == []


def test_every_operation_is_a_method_of_each_client_with_its_docstring() -> None:
    declared = {
        name: member
        for name, member in vars(Operations).items()
        if isinstance(member, Operation | Iteration)
    }
    assert "iter_runs" in declared
    assert "tail" in declared
    for name, member in declared.items():
        doc = inspect.cleandoc(member.plan.__doc__ or "")
        assert doc, name
        for cls in (Client, AsyncClient):
            method = vars(cls)[name]
            assert (method.__doc__ or "").startswith(doc)
            assert method.__qualname__ == f"{cls.__name__}.{name}"


def test_every_error_an_operation_names_is_one_the_client_raises() -> None:
    rebuilt = set(ERRORS.rebuilt_classes())
    for name, member in vars(Operations).items():
        if isinstance(member, Operation | Iteration):
            assert set(member.raises) <= rebuilt, name


# against an in-memory server ------------------------------------------------------------
def _run_json(run_id: str = "r-1", **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = jsonable(Run(id=run_id, task="adder", inputs={"a": 1}).as_dict())
    data.update(fields)
    return data


def _refusal(error: taskloom.TaskloomError) -> httpx.Response:
    return httpx.Response(ERRORS.status(error), json=ERRORS.body(error))


class FakeServer:
    """Answers the routes the tests use, and records the requests."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.waits = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = (request.method, request.url.path)
        if route == ("POST", "/api/runs"):
            body = json.loads(request.content)
            if body["task"] != "adder":
                return _refusal(taskloom.UnknownTaskError(body["task"], ["adder"]))
            return httpx.Response(201, json=_run_json(inputs=body["inputs"]))
        if route == ("GET", "/api/runs/r-1/wait"):
            self.waits += 1
            if self.waits == 1:
                return _refusal(taskloom.WaitTimeoutError("not yet"))
            return httpx.Response(200, json=_run_json(status="completed", result=3))
        if route == ("GET", "/api/runs"):
            return httpx.Response(200, json=self._page(request.url.params.get("cursor")))
        if route == ("GET", "/api/tasks"):
            return _refusal(AuthError())
        if route == ("GET", "/api/pipelines/ticking/topics/totals/tail"):
            return httpx.Response(200, text=_TAIL, headers={"content-type": "text/event-stream"})
        return httpx.Response(404, json={"error": {"type": "NotFound", "message": "no route"}})

    @staticmethod
    def _page(cursor: str | None) -> dict[str, Any]:
        if cursor is None:
            return {"runs": [_run_json("r-3"), _run_json("r-2")], "next_cursor": "r-2"}
        return {"runs": [_run_json("r-1")], "next_cursor": None}


_TAIL = (
    ": subscribed\n\n"
    'data: {"timestamp": 1, "value": 10, "metadata": {}}\n\n'
    "event: lagged\n"
    'data: {"dropped": 4}\n\n'
    'data: {"timestamp": 2, "value": 20, "metadata": {}}\n\n'
    'data: {"timestamp": 3, "value": 30, "metadata": {}}\n\n'
)


def test_the_sync_client_carries_out_each_kind_of_plan() -> None:
    server = FakeServer()
    with Client("http://server", transport=httpx.MockTransport(server)) as client:
        submitted = client.submit("adder", {"a": 1}, priority=2)
        assert submitted.status is RunStatus.PENDING
        assert json.loads(server.requests[0].content) == {
            "task": "adder",
            "inputs": {"a": 1},
            "priority": 2,
        }
        finished = client.run("adder", {"a": 1})
        assert (finished.status, finished.result) == (RunStatus.COMPLETED, 3)
        assert server.waits == 2  # the first wait ran out, and was asked again
        assert [r.id for r in client.iter_runs(task="adder")] == ["r-3", "r-2", "r-1"]
        assert [r.id for r in client.list_runs()] == ["r-3", "r-2"]
        tail = list(client.tail("ticking", "totals", count=2))
        assert [(m["value"], m["dropped"]) for m in tail] == [(10, 0), (20, 4)]


async def test_the_async_client_carries_out_each_kind_of_plan() -> None:
    server = FakeServer()
    async with AsyncClient("http://server", transport=httpx.MockTransport(server)) as client:
        submitted = await client.submit("adder", {"a": 1}, priority=2)
        assert submitted.status is RunStatus.PENDING
        finished = await client.run("adder", {"a": 1})
        assert (finished.status, finished.result) == (RunStatus.COMPLETED, 3)
        assert server.waits == 2
        assert [r.id async for r in client.iter_runs(task="adder")] == ["r-3", "r-2", "r-1"]
        tail = [m async for m in client.tail("ticking", "totals")]
        assert [(m["value"], m["dropped"]) for m in tail] == [(10, 0), (20, 4), (30, 4)]


def test_the_sync_client_raises_the_servers_errors() -> None:
    with Client("http://server", transport=httpx.MockTransport(FakeServer())) as client:
        with pytest.raises(taskloom.UnknownTaskError) as unknown:
            client.submit("nope")
        assert unknown.value.name == "nope"
        assert unknown.value.message == "unknown task 'nope'; registered tasks: adder"
        with pytest.raises(ClientError) as refused:
            client.tasks()
        assert refused.value.status_code == 401
        with pytest.raises(ClientError, match="NotFound: no route"):
            client.get_run("r-9")


async def test_the_async_client_raises_the_servers_errors() -> None:
    async with AsyncClient("http://server", transport=httpx.MockTransport(FakeServer())) as client:
        with pytest.raises(taskloom.UnknownTaskError):
            await client.submit("nope")
        with pytest.raises(ClientError) as refused:
            await client.tasks()
        assert refused.value.status_code == 401


def _unreachable(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def test_a_server_out_of_reach_is_a_client_error() -> None:
    with Client("http://server", transport=httpx.MockTransport(_unreachable)) as client:
        with pytest.raises(ClientError, match="cannot reach the taskloom server at http://server"):
            client.health()
        with pytest.raises(ClientError, match="cannot reach"):
            list(client.tail("ticking", "totals"))


async def test_a_server_out_of_reach_is_a_client_error_of_the_async_client() -> None:
    async with AsyncClient("http://server", transport=httpx.MockTransport(_unreachable)) as client:
        with pytest.raises(ClientError, match="cannot reach"):
            await client.health()
        with pytest.raises(ClientError, match="cannot reach"):
            [m async for m in client.iter_runs()]


def test_an_answer_that_is_no_error_body_is_a_client_error() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>bad gateway</html>")

    with Client("http://server", transport=httpx.MockTransport(broken)) as client:
        with pytest.raises(ClientError, match="GET /api/health: HTTP 502") as failed:
            client.health()
        assert failed.value.status_code == 502


def test_a_retry_after_header_stands_in_for_the_bodys_figure() -> None:
    def locked(request: httpx.Request) -> httpx.Response:
        body = {"error": {"type": "StoreUnavailableError", "message": "locked"}}
        return httpx.Response(503, json=body, headers={"Retry-After": "7"})

    with Client("http://server", transport=httpx.MockTransport(locked)) as client:
        with pytest.raises(taskloom.StoreUnavailableError) as unavailable:
            client.submit("adder")
        assert unavailable.value.retry_after == 7.0


def test_a_subclass_of_a_client_keeps_the_methods_it_defines() -> None:
    class Counting(Client):
        def health(self) -> dict[str, Any]:
            """The server's health, counted."""
            self.asked = getattr(self, "asked", 0) + 1
            return super().health()

    assert Counting.submit is Client.submit
    with Counting("http://server", transport=httpx.MockTransport(FakeServer())) as client:
        with pytest.raises(ClientError, match="NotFound"):
            client.health()
        assert client.asked == 1


def test_attempts_keep_their_executor_and_leave_out_a_newer_servers_fields() -> None:
    attempt = {
        "run_id": "r-1",
        "number": 1,
        "started_at": 1.0,
        "finished_at": 2.0,
        "status": "failed",
        "error": {"type": "RuntimeError", "message": "boom"},
        "worker_id": "w1",
        "executor": "dask tcp://10.0.0.5:8786",
        "dashboard": "http://10.0.0.5:8787/status",
        "field_of_a_newer_server": True,
    }

    def server(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/runs/r-1/attempts"
        return httpx.Response(200, json=[attempt])

    with Client("http://server", transport=httpx.MockTransport(server)) as client:
        (got,) = client.get_attempts("r-1")
    assert (got.executor, got.dashboard) == ("dask tcp://10.0.0.5:8786", attempt["dashboard"])
    assert got.error is not None
    assert got.error.message == "boom"
