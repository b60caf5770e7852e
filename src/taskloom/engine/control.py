"""Cancellation of runs this engine executes, and the takeover of runs of dead engines.

`RunControl` is a part of `Engine`: it stops runs through the engine's `RunExecution`,
and reads the engine's settings, worker id and store as they are when it acts (the
worker id changes when the engine registers again). What more it needs of the engine
is handed to it as callables when it is made.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..context import set_current
from ..runs import ErrorInfo, RunStatus
from .execution import RunExecution
from .live import LiveRun

if TYPE_CHECKING:
    from ..workflows.execution import WorkflowExecution
    from .engine import Engine

__all__ = ["RunControl"]

logger = logging.getLogger("taskloom.engine")
T = TypeVar("T")

#: Lost workers' records are pruned on this many heartbeats (the first one, then every 300).
PRUNE_EVERY = 300
#: Seconds between two looks for dead workers whose runs to give back.
REAP_INTERVAL = 0.4


class InThread(Protocol):
    """Calls `fn(*args)` in a thread of the engine's own for the store; awaits its value."""

    def __call__(self, fn: Callable[..., T], /, *args: Any) -> Awaitable[T]: ...


class RunControl:
    """Stops the runs an engine executes when they are cancelled; renews the engine's
    lease and hears cancel requests (the heartbeat); gives back the runs of dead workers
    (the reaper)."""

    def __init__(
        self,
        engine: Engine,
        execution: RunExecution,
        *,
        live: dict[str, LiveRun],
        workflows: dict[str, WorkflowExecution],
        recover: bool,
        heartbeat_interval: float,
        in_thread: InThread,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
        lease_lost: Callable[[], Awaitable[None]],
        refresh_peers: Callable[[], Awaitable[None]],
        recover_workflows: Callable[[], Awaitable[None]],
        wake_claims: Callable[[], None],
        look_for_tracer: Callable[[], None],
    ) -> None:
        """`live`: the runs the engine holds; `workflows`: the workflow runs it drives.
        `lease_lost` is awaited when a heartbeat finds the lease ran out, `refresh_peers`
        on every heartbeat, `recover_workflows` when runs of dead workers were given back
        (and, with `recover`, every fifth heartbeat); `wake_claims` is called when runs
        may have become claimable, `look_for_tracer` on every heartbeat."""
        self._engine = engine
        self._execution = execution
        self._live = live
        self._workflows = workflows
        self._recover_enabled = recover
        self._heartbeat_interval = heartbeat_interval
        self._in_thread = in_thread
        self._spawn = spawn
        self._lease_lost = lease_lost
        self._refresh_peers = refresh_peers
        self._recover_workflows = recover_workflows
        self._wake_claims = wake_claims
        self._look_for_tracer = look_for_tracer
        #: The tasks whose dead workers' runs were looked for (see `recover`).
        self.recovered: set[str] = set()

    def cancel(self, live: LiveRun) -> None:
        """Stop a run. One not begun ends `cancelled` at once, and so does a sync function
        in a thread (which cannot be stopped: what it returns is discarded); an async one
        is cancelled and ends when it stops, or after `cancel_grace`."""
        run = live.run
        if run.is_finished or live.cancelling:
            return
        with self._execution.begin_lock:  # a thread may be about to begin it
            if not live.began:  # queued, waiting for a thread, or waiting for a retry
                live.dropped = True
                self._execution.finish(
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
            self._execution.attempt_stopped(live)

    async def _cancel_class_task(self, live: LiveRun) -> None:
        assert live.instance is not None
        # What `cancel()` logs belongs to the run it stops: it runs as that run (this is a
        # task of its own, so the current run set here is seen by nothing else).
        set_current(live.context)
        try:
            await live.instance.cancel()
        except Exception:
            logger.exception("taskloom: cancel() of task %r failed", live.task_name)
        execution = live.execution
        if execution is None or execution.done():
            return
        done, _ = await asyncio.wait([execution], timeout=self._engine.cancel_grace)
        if not done:
            execution.cancel()
            await self._give_up_after_grace(live, execution)

    async def _give_up_after_grace(self, live: LiveRun, execution: asyncio.Future[Any]) -> None:
        """A task that ignores cancellation still ends `cancelled` after `cancel_grace`.

        Its code may go on running (Python cannot kill it); whatever it returns is
        discarded, and its concurrency slot is given back.
        """
        await asyncio.wait([execution], timeout=self._engine.cancel_grace)
        if not live.settled:
            logger.warning(
                "taskloom: run %s of task %r ignored cancellation for %g s; recorded as cancelled",
                live.run.id,
                live.task_name,
                self._engine.cancel_grace,
                extra={"run_id": live.run.id, "task": live.task_name, "attempt": live.token},
            )
            self._execution.attempt_stopped(live)

    # recovery and heartbeat ------------------------------------------------------------------
    async def recover(self, names: Collection[str]) -> None:
        """Tasks this engine serves now: give back the runs of dead workers (any task: a
        run given back waits for whichever worker serves it) and claim."""
        self.recovered.update(names)
        await self._reap()
        self._wake_claims()

    async def _reap(self) -> None:
        store = self._engine.store
        assert store is not None
        reaped = await self._in_thread(store.reap, self._engine.worker_id)
        if reaped:
            logger.info("taskloom: gave back %d runs of stopped workers", reaped)
            self._wake_claims()
            await self._recover_workflows()  # their workflows, if they drove any

    async def reaper(self) -> None:
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

    async def check_cancel_requests(self) -> None:
        """Read the cancel requests of the runs (and workflows) this engine holds, and
        stop them."""
        store = self._engine.store
        assert store is not None
        for run_id in await self._in_thread(store.cancel_requests, self._engine.worker_id):
            live = self._live.get(run_id)
            if live is not None:
                live.run.cancel_requested = True
                self.cancel(live)
            elif run_id in self._workflows:
                self._spawn(self._workflows[run_id].cancel())

    async def heartbeat(self) -> None:
        """Every `heartbeat_interval` seconds: renew the lease, read which queues other
        workers serve and the cancel requests, now and then prune lost workers' records
        and resume workflows whose driver went."""
        engine = self._engine
        store = engine.store
        assert store is not None
        beats = 0
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            try:
                renewed = await self._in_thread(
                    functools.partial(store.heartbeat, engine.worker_id, ttl=engine.lease_ttl)
                )
                if not renewed:
                    await self._lease_lost()
                await self._refresh_peers()
                await self.check_cancel_requests()
                self._look_for_tracer()
                beats += 1
                if beats % PRUNE_EVERY == 1:  # soon after start, then now and then
                    lost_before = time.time() - engine.lost_worker_retention
                    prune = functools.partial(store.prune_workers, lost_before=lost_before)
                    await self._in_thread(prune)
                if self._recover_enabled and beats % 5 == 0:
                    await self._recover_workflows()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("taskloom: heartbeat failed")
