"""Plans of requests: each operation of the HTTP clients described once, carried out twice.

A plan does no I/O. A `Call` is one request (method, path, query, JSON body) and how its
answer's JSON reads; a generator of calls (`Steps`) makes several, each answer sent back
into it and each refused one raised in it; an iterator's plan is the first `Page` of a
listing or a `Stream` to read line by line. `Course` follows a plan through, whoever sends
its requests.

`operation` and `iteration` declare an operation from its plan, in `endpoints.Operations`;
each client class makes it a method of its own (a function for `Client`, a coroutine
function for `AsyncClient`) with the plan's signature and docstring, and the descriptors'
overloads give those methods their static types.
"""

from __future__ import annotations

import inspect
from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Generator,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    ParamSpec,
    Protocol,
    Self,
    TypeVar,
    get_args,
    get_origin,
    overload,
)

from .exceptions import TaskloomError

if TYPE_CHECKING:
    from .client import AsyncClient, Client
    from .endpoints import Operations

__all__ = [
    "Call",
    "Course",
    "Iteration",
    "Operation",
    "Page",
    "Plan",
    "SseParser",
    "Steps",
    "Stream",
    "iteration",
    "operation",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
P = ParamSpec("P")


# plans -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request of the API, and how its answer's JSON reads (the response model)."""

    method: str
    path: str
    read: Callable[[Any], T]
    params: Mapping[str, Any] | None = None
    #: The JSON body; None sends none.
    body: Any = None

    def __iter__(self) -> Generator[Call[Any], Any, T]:
        # A plan of one request: it is sent the answer's JSON back, and reads it.
        return self.read((yield self))


class Plan(Protocol[T_co]):
    """What an operation makes: the requests to send, one at a time, then its result."""

    def __iter__(self) -> Generator[Call[Any], Any, T_co]: ...


#: A plan of several requests, as a generator: `answer = yield from call`.
Steps = Generator[Call[Any], Any, T]


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing, and the request for the next (None after the last)."""

    items: list[T]
    next: Call[Page[T]] | None


class Stream(Protocol[T_co]):
    """An event stream to read: where it is, what each of its lines gives, and whether it
    has given all that was asked."""

    @property
    def path(self) -> str: ...

    @property
    def done(self) -> bool: ...

    def feed(self, line: str) -> Sequence[T_co]: ...


class Course(Generic[T]):
    """A plan being carried out: `call` is the request it waits for, None once it is done
    and `result` holds what it gave."""

    def __init__(self, plan: Plan[T]) -> None:
        self._steps = iter(plan)
        self.call: Call[Any] | None = None
        self.result: T
        self._step(self._steps.send, None)

    def resume(self, answer: Any) -> None:
        """Go on with the answer's JSON, or with the error it told, raised in the plan
        (`wait` asks again after a `WaitTimeoutError`)."""
        if isinstance(answer, TaskloomError):
            self._step(self._steps.throw, answer)
        else:
            self._step(self._steps.send, answer)

    def _step(self, step: Callable[[Any], Call[Any]], value: Any) -> None:
        try:
            self.call = step(value)
        except StopIteration as done:
            self.call = None
            self.result = done.value


# operations --------------------------------------------------------------------------------
class _Declared:
    """What both kinds of operation share: the plan, the errors it names, and the making
    of a client's method from it."""

    def __init__(self, plan: Callable[..., Any], raises: tuple[type[TaskloomError], ...]):
        self.plan = plan
        self.raises = raises

    def _described(self, method: Callable[..., Any], owner: type[Any], returns: Any) -> Any:
        """`method` as `owner`'s: the plan's name, signature (returning `returns`) and
        docstring, with a sentence naming the errors it raises."""
        signature = inspect.signature(self.plan, eval_str=True)
        signature = signature.replace(return_annotation=returns)
        doc = inspect.cleandoc(self.plan.__doc__ or "")
        if self.raises:
            doc += "\n\nRaises " + ", ".join(f"`{error.__name__}`" for error in self.raises) + "."
        method.__name__ = self.plan.__name__
        method.__qualname__ = f"{owner.__qualname__}.{self.plan.__name__}"
        method.__module__ = owner.__module__
        method.__doc__ = doc
        method.__signature__ = signature  # type: ignore[attr-defined]
        method.__annotations__ = {
            **{p.name: p.annotation for p in signature.parameters.values() if p.name != "self"},
            "return": returns,
        }
        return method

    def _result(self) -> Any:
        """`Run` from a plan that returns `Call[Run]`, `Steps[Run]`, `Stream[Run]`, or a
        first `Call[Page[Run]]` (the items of the pages)."""
        planned = inspect.signature(self.plan, eval_str=True).return_annotation
        result = get_args(planned)[-1]
        return get_args(result)[0] if get_origin(result) is Page else result


class Operation(_Declared, Generic[P, T]):
    """An operation whose plan gives one result: a method of `Client` returning it, a
    coroutine method of `AsyncClient`."""

    plan: Callable[Concatenate[Any, P], Plan[T]]

    @overload
    def __get__(self, client: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, client: Client, owner: type[Any]) -> Callable[P, T]: ...
    @overload
    def __get__(
        self, client: AsyncClient, owner: type[Any]
    ) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(self, client: Client | AsyncClient | None, owner: type[Any]) -> Any:
        # Reached on `Operations` itself only: each client class has a method in its place.
        return self

    def method_of(self, owner: type[Operations[Any, Any]]) -> Any:
        return self._described(owner._method(self.plan), owner, self._result())


class Iteration(_Declared, Generic[P, T]):
    """An operation whose plan gives items (pages, or the lines of a stream): a method of
    `Client` returning an iterator, of `AsyncClient` an async iterator."""

    plan: Callable[Concatenate[Any, P], Call[Page[T]] | Stream[T]]

    @overload
    def __get__(self, client: None, owner: type[Any]) -> Self: ...
    @overload
    def __get__(self, client: Client, owner: type[Any]) -> Callable[P, Iterator[T]]: ...
    @overload
    def __get__(self, client: AsyncClient, owner: type[Any]) -> Callable[P, AsyncIterator[T]]: ...
    def __get__(self, client: Client | AsyncClient | None, owner: type[Any]) -> Any:
        return self

    def method_of(self, owner: type[Operations[Any, Any]]) -> Any:
        iterator = AsyncIterator if owner.asynchronous else Iterator
        plan = self.plan

        def method(client: Operations[Any, Any], *args: Any, **kwargs: Any) -> Any:
            source = plan(client, *args, **kwargs)
            return client._pages(source) if isinstance(source, Call) else client._listen(source)

        return self._described(method, owner, iterator[self._result()])


def operation(
    *raises: type[TaskloomError],
) -> Callable[[Callable[Concatenate[Any, P], Plan[T]]], Operation[P, T]]:
    """Declare an operation of both clients from its plan, naming the errors it raises."""

    def declare(plan: Callable[Concatenate[Any, P], Plan[T]]) -> Operation[P, T]:
        return Operation(plan, raises)

    return declare


def iteration(
    *raises: type[TaskloomError],
) -> Callable[[Callable[Concatenate[Any, P], Call[Page[T]] | Stream[T]]], Iteration[P, T]]:
    """Declare an operation of both clients that gives items, from its plan."""

    def declare(plan: Callable[Concatenate[Any, P], Call[Page[T]] | Stream[T]]) -> Iteration[P, T]:
        return Iteration(plan, raises)

    return declare


# event streams ---------------------------------------------------------------------------
class SseParser:
    """Server-Sent Events from lines: (event, data) once a blank line ends an event."""

    def __init__(self) -> None:
        self.event = "message"
        self.data: list[str] = []

    def feed(self, line: str) -> tuple[str, str] | None:
        if not line:
            if not self.data:
                self.event = "message"
                return None
            done = (self.event, "\n".join(self.data))
            self.event, self.data = "message", []
            return done
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            self.event = value
        elif field == "data":
            self.data.append(value)
        return None
