"""Small asyncio helpers the engine, its parts and the supervisor share."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

__all__ = ["maybe_await", "resolve", "settle"]


async def maybe_await(value: Any) -> Any:
    """`value`, awaited first when it is awaitable (a hook that may be sync or async)."""
    return await value if inspect.isawaitable(value) else value


def resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    """Resolve `future` with `error` if there is one, else with `result`; nothing when it
    is done already (cancelled by a waiter that gave up)."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
        future.exception()  # retrieved: no "never retrieved" noise when nobody waits
    else:
        future.set_result(result)


def settle(future: asyncio.Future[Any], value: Any) -> None:
    """Resolve `future` with `value` (an exception is raised to whoever awaits it)."""
    if isinstance(value, BaseException):
        resolve(future, None, value)
    else:
        resolve(future, value, None)
