"""Executors that make a task's calls somewhere other than this process (`executor=`).

The calls an engine makes itself (on its event loop, inline, in its thread pool or in a
task's own thread) are `engine/execution.py`'s. An executor here is given the call of an
attempt the engine has already recorded as begun, and hands back its result or raises
its error; the engine records the outcome, retries, timeouts and cancels as for any run.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["RemoteExecutor"]


class RemoteExecutor(Protocol):
    """What the engine asks of an executor of calls elsewhere."""

    #: The name tasks choose it by (`@task(executor=...)`).
    name: str

    @property
    def where(self) -> str:
        """Where the calls are made (a scheduler's address), as attempts record it."""

    @property
    def dashboard_link(self) -> str | None:
        """The address of a dashboard of the calls, when there is one."""

    async def start(self) -> None:
        """Connect; raises a `TaskloomError` naming what could not be reached."""

    async def close(self) -> None:
        """Let go of the connection (what is executing elsewhere is cancelled)."""

    async def execute(self, live: Any, context: Any) -> Any:
        """Make the call of `live`'s current attempt; its result, or its error raised.
        Cancelling the awaiting task cancels the call."""
