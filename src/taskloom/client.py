"""The HTTP client: the engine's operations on a `taskloom serve` server, from Python.

`Client` is synchronous, `AsyncClient` asynchronous; both have the same operations, each
written once in `endpoints` (`submit`, `wait`, `get_run`, `list_runs`, `iter_runs`,
`cancel`, `get_logs`, `get_attempts`, `tasks`, the service operations, `submit_workflow`,
`get_workflow`, `rerun_workflow`, the package operations, and the pipelines':
`deploy_pipeline`, `pipelines`, `pipeline_status`, `stop_pipeline`, `publish`, `tail`).
Runs come back as `Run` objects, workers as `WorkerRecord`s, service statuses, workflow
runs with their steps, packages and deployments as dictionaries. `Client.service(name)`
shows a service class's live attributes as pydase's client does:
`client.service("SensorService").readout_frequency = 2.0` (`AsyncClient.service(name)`:
`await proxy.set(readout_frequency=2.0)`, `await proxy.values()`).

They raise the exceptions the server's engine raised, rebuilt from the answer by the
table of `http_errors` (`InputValidationError` with its `FieldError`s, `UnknownTaskError`,
`RunNotFoundError`, `WorkflowValidationError`, `PortValidationError`, ...), and
`ClientError` for a refusal that is no engine error (401, 403) or a server out of reach.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from .client_plans import Call, Course, Page, Plan, Stream
from .endpoints import Operations
from .exceptions import TaskloomError
from .http_errors import ERRORS

__all__ = ["AsyncClient", "AsyncServiceProxy", "Client", "ClientError", "ServiceProxy"]

T = TypeVar("T")


class ClientError(TaskloomError):
    """The server refused the request or could not be reached (see `status_code`)."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


def _error_from(response: httpx.Response) -> TaskloomError:
    """The exception an error answer tells: the engine's own, else a `ClientError`."""
    try:
        error = dict(response.json()["error"])
        kind, message = str(error["type"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return ClientError(
            f"{response.request.method} {response.request.url.path}: HTTP "
            f"{response.status_code}: {response.text[:200]}",
            status_code=response.status_code,
        )
    if error.get("retry_after") is None and "retry-after" in response.headers:
        error["retry_after"] = response.headers["retry-after"]
    rebuilt = ERRORS.rebuild(error)
    if rebuilt is not None:
        return rebuilt
    return ClientError(f"{kind}: {message}", status_code=response.status_code)


def _answer_of(response: httpx.Response) -> Any:
    """What a plan goes on with: the answer's JSON (None for a 204), or the error it tells."""
    if response.is_error:
        return _error_from(response)
    return None if response.status_code == 204 else response.json()


@contextmanager
def _reaching(url: str) -> Iterator[None]:
    """A server out of reach as a `ClientError`."""
    try:
        yield
    except httpx.TransportError as exc:
        raise ClientError(f"cannot reach the taskloom server at {url}: {exc}") from exc


def _streaming(timeout: httpx.Timeout) -> httpx.Timeout:
    # A stream may be quiet for long: only connecting is bounded.
    return httpx.Timeout(timeout.connect, read=None)


class Client(Operations[httpx.BaseTransport, httpx.Client]):
    """A synchronous client: `Client("http://127.0.0.1:8321", token=...)`.

    Use it as a context manager, or call `close()`. `timeout` bounds each request (a
    `wait` is made of requests of at most 30 s each); `transport` is an httpx transport
    (`httpx.ASGITransport(app)` in tests).
    """

    @staticmethod
    def _open(**options: Any) -> httpx.Client:
        return httpx.Client(**options)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the client's connections."""
        self._http.close()

    def service(self, name: str) -> ServiceProxy:
        """A service class on the server (`name` is the class's), its live attributes read
        and set as attributes of the object this returns."""
        return ServiceProxy(self, name)

    @staticmethod
    def _method(plan: Callable[..., Plan[Any]]) -> Callable[..., Any]:
        def method(self: Client, *args: Any, **kwargs: Any) -> Any:
            return self._carry_out(plan(self, *args, **kwargs))

        return method

    def _carry_out(self, plan: Plan[T]) -> T:
        course = Course(plan)
        while course.call is not None:
            course.resume(self._answer(course.call))
        return course.result

    def _answer(self, call: Call[Any]) -> Any:
        with _reaching(self.url):
            response = self._http.request(
                call.method, call.path, params=call.params, json=call.body
            )
        return _answer_of(response)

    def _pages(self, first: Call[Page[T]]) -> Iterator[T]:
        call: Call[Page[T]] | None = first
        while call is not None:
            page = self._carry_out(call)
            yield from page.items
            call = page.next

    def _listen(self, stream: Stream[T]) -> Iterator[T]:
        timeout = _streaming(self._http.timeout)
        with _reaching(self.url), self._http.stream("GET", stream.path, timeout=timeout) as answer:
            if answer.is_error:
                answer.read()
                raise _error_from(answer)
            for line in answer.iter_lines():
                yield from stream.feed(line)
                if stream.done:
                    return


class ServiceProxy:
    """A service class on the server, as pydase's client shows a service: reading an
    attribute asks the server for its value now (`proxy.readout_frequency`), assigning one
    sets it while the loops run (`proxy.readout_frequency = 2.0`; `AttributeValidationError`
    naming it when the value is invalid). `proxy.values()` gives them all at once.
    """

    def __init__(self, client: Client, name: str) -> None:
        object.__setattr__(self, "_client", client)
        object.__setattr__(self, "_name", name)

    def values(self) -> dict[str, Any]:
        """Every attribute's value now."""
        values: dict[str, Any] = self._client.service_attributes(self._name)["values"]
        return values

    def set(self, values: dict[str, Any] | None = None, /, **more: Any) -> dict[str, Any]:
        """Set several attributes at once (all or none); return every value now."""
        answer = self._client.set_service_attributes(self._name, values, **more)
        current: dict[str, Any] = answer["values"]
        return current

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("_"):
            raise AttributeError(attribute)
        values = self.values()
        if attribute not in values:
            raise AttributeError(
                f"service class {self._name!r} has no attribute {attribute!r}; "
                f"attributes: {', '.join(values) or 'none'}"
            )
        return values[attribute]

    def __setattr__(self, attribute: str, value: Any) -> None:
        self._client.set_service_attributes(self._name, {attribute: value})

    def __dir__(self) -> list[str]:
        return sorted(self.values())

    def __repr__(self) -> str:
        return f"<service class {self._name!r} on {self._client.url}>"


class AsyncServiceProxy:
    """A service class on the server, for `AsyncClient`: `await proxy.values()` reads its
    attributes, `await proxy.set(readout_frequency=2.0)` sets some (all or none)."""

    def __init__(self, client: AsyncClient, name: str) -> None:
        self._client = client
        self._name = name

    async def values(self) -> dict[str, Any]:
        """Every attribute's value now."""
        answer = await self._client.service_attributes(self._name)
        values: dict[str, Any] = answer["values"]
        return values

    async def set(self, values: dict[str, Any] | None = None, /, **more: Any) -> dict[str, Any]:
        """Set several attributes at once (all or none); return every value now."""
        answer = await self._client.set_service_attributes(self._name, values, **more)
        current: dict[str, Any] = answer["values"]
        return current

    def __repr__(self) -> str:
        return f"<service class {self._name!r} on {self._client.url}>"


class AsyncClient(Operations[httpx.AsyncBaseTransport, httpx.AsyncClient]):
    """The asynchronous client: `async with AsyncClient(url, token=...) as client:`.

    The same operations as `Client`, each a coroutine (`iter_runs` and `tail` are async
    iterators); use `async with`, or call `await aclose()`.
    """

    asynchronous = True

    @staticmethod
    def _open(**options: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(**options)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def service(self, name: str) -> AsyncServiceProxy:
        """A service class on the server (`name` is the class's): its live attributes
        read with `await proxy.values()` and set with `await proxy.set(...)`."""
        return AsyncServiceProxy(self, name)

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self._http.aclose()

    @staticmethod
    def _method(plan: Callable[..., Plan[Any]]) -> Callable[..., Any]:
        async def method(self: AsyncClient, *args: Any, **kwargs: Any) -> Any:
            return await self._carry_out(plan(self, *args, **kwargs))

        return method

    async def _carry_out(self, plan: Plan[T]) -> T:
        course = Course(plan)
        while course.call is not None:
            course.resume(await self._answer(course.call))
        return course.result

    async def _answer(self, call: Call[Any]) -> Any:
        with _reaching(self.url):
            response = await self._http.request(
                call.method, call.path, params=call.params, json=call.body
            )
        return _answer_of(response)

    async def _pages(self, first: Call[Page[T]]) -> AsyncIterator[T]:
        call: Call[Page[T]] | None = first
        while call is not None:
            page = await self._carry_out(call)
            for item in page.items:
                yield item
            call = page.next

    async def _listen(self, stream: Stream[T]) -> AsyncIterator[T]:
        timeout = _streaming(self._http.timeout)
        with _reaching(self.url):
            async with self._http.stream("GET", stream.path, timeout=timeout) as answer:
                if answer.is_error:
                    await answer.aread()
                    raise _error_from(answer)
                async for line in answer.aiter_lines():
                    for item in stream.feed(line):
                        yield item
                    if stream.done:
                        return
