"""Cancellation of runs this engine executes, and the takeover of runs of dead engines.

`RunControl` is one part of `Engine` (a mixin); it holds no state of its own.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, TypeVar

from ..runs import ErrorInfo, RunStatus
from .execution import RunExecution
from .live import LiveRun

if TYPE_CHECKING:
    from ..workflows.scheduler import WorkflowExecution
    from .claims import Claims

__all__ = ["RunControl"]

logger = logging.getLogger("taskloom.engine")
T = TypeVar("T")

#: Lost workers' records are pruned on this many heartbeats (the first one, then every 300).
PRUNE_EVERY = 300
#: Seconds between two looks for dead workers whose runs to give back.
REAP_INTERVAL = 0.4
_PENDING, _RUNNING = RunStatus.PENDING, RunStatus.RUNNING


class RunControl(RunExecution):
    _recover_enabled: bool
    _recovered: set[str]
    _heartbeat_interval: float
    lost_worker_retention: float
    _workflows: dict[str, WorkflowExecution]
    _claims: Claims | None
    lease_ttl: float

    if TYPE_CHECKING:  # provided by Engine

        async def _lease_lost(self) -> None: ...

        def _config_for(self, task: Any, config: Any) -> tuple[Any, dict[str, Any] | None]: ...

        def _spawn(self, coro: Any) -> None: ...

        async def _recover_workflows(self) -> None: ...

        async def _refresh_peers(self) -> None: ...

        async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T: ...

    def _cancel_live(self, live: LiveRun) -> None:
        run = live.run
        if run.is_finished or live.cancelling:
            return
        with self._begin_lock:  # a thread may be about to begin it
            if not live.began:  # queued, waiting for a thread, or waiting for a retry
                live.dropped = True
                self._finish(
                    live,
                    RunStatus.CANCELLED,
                    error=ErrorInfo("Cancelled", f"run {run.id} was cancelled before it ran"),
                )
                return
        live.cancelling = True
        if live.context is not None:
            live.context._cancel()
        execution = live.execution
        if live.has_custom_cancel:
            self._spawn(self._cancel_class_task(live))
        elif isinstance(execution, asyncio.Task):
            execution.cancel()
            self._spawn(self._give_up_after_grace(live, execution))
        else:  # a sync function in a thread cannot be stopped: it saw the flag; we move on
            self._attempt_stopped(live)

    async def _cancel_class_task(self, live: LiveRun) -> None:
        assert live.instance is not None
        try:
            await live.instance.cancel()
        except Exception:
            logger.exception("taskloom: cancel() of task %r failed", live.task_name)
        execution = live.execution
        if execution is None or execution.done():
            return
        done, _ = await asyncio.wait([execution], timeout=self.cancel_grace)
        if not done:
            execution.cancel()
            await self._give_up_after_grace(live, execution)

    async def _give_up_after_grace(self, live: LiveRun, execution: asyncio.Future[Any]) -> None:
        """A task that ignores cancellation still ends `cancelled` after `cancel_grace`.

        Its code may go on running (Python cannot kill it); whatever it returns is
        discarded, and its concurrency slot is given back.
        """
        await asyncio.wait([execution], timeout=self.cancel_grace)
        if not live.settled:
            logger.warning(
                "taskloom: run %s of task %r ignored cancellation for %g s; recorded as cancelled",
                live.run.id,
                live.task_name,
                self.cancel_grace,
            )
            self._attempt_stopped(live)

    # recovery and heartbeat ------------------------------------------------------------------
    async def _recover(self, names: Collection[str]) -> None:
        """Tasks this engine serves now: give back the runs of dead workers (any task: a
        run given back waits for whichever worker serves it) and claim."""
        assert self.store is not None
        self._recovered.update(names)
        await self._reap()
        if self._claims is not None:
            self._claims.wake()

    async def _reap(self) -> None:
        assert self.store is not None
        reaped = await self._in_thread(self.store.reap, self.worker_id)
        if reaped:
            logger.info("taskloom: gave back %d runs of stopped workers", reaped)
            if self._claims is not None:
                self._claims.wake()
            await self._recover_workflows()  # their workflows, if they drove any

    async def _reaper(self) -> None:
        """Give back the runs of dead workers every `REAP_INTERVAL` seconds: a worker
        killed is found at once by its lock, so its runs are claimable within that."""
        while True:
            await asyncio.sleep(REAP_INTERVAL)
            try:
                await self._reap()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("taskloom: giving back the runs of dead workers failed: %s", exc)

    async def _check_cancel_requests(self) -> None:
        assert self.store is not None
        for run_id in await self._in_thread(self.store.cancel_requests, self.worker_id):
            live = self._live.get(run_id)
            if live is not None:
                live.run.cancel_requested = True
                self._cancel_live(live)
            elif run_id in self._workflows:
                self._spawn(self._workflows[run_id].cancel())

    async def _heartbeat(self) -> None:
        assert self.store is not None
        store = self.store
        beats = 0
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            try:
                renewed = await self._in_thread(
                    functools.partial(store.heartbeat, self.worker_id, ttl=self.lease_ttl)
                )
                if not renewed:
                    await self._lease_lost()
                await self._refresh_peers()
                await self._check_cancel_requests()
                beats += 1
                if beats % PRUNE_EVERY == 1:  # soon after start, then now and then
                    lost_before = time.time() - self.lost_worker_retention
                    prune = functools.partial(store.prune_workers, lost_before=lost_before)
                    await self._in_thread(prune)
                if self._recover_enabled and beats % 5 == 0:
                    await self._recover_workflows()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("taskloom: heartbeat failed")
