"""The engine's side of the shared run queue: claiming runs, hearing other processes.

A run this engine cannot start soon, or that another process submitted, waits in the
database unclaimed. `Claims` takes such runs as slots free up: one claim at a time, sized
to the free slots, committed with the writer's next batch. It is woken by this engine's
own submits and ends, by the store's change feed (a NOTIFY on PostgreSQL, a change of a
SQLite file), and, as a backstop, every `poll_interval` seconds.

It also waits for runs other processes execute: `wait_remote` parks a future that is
settled when the feed says the run ended (or the backstop finds it ended).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..aio import settle
from ..exceptions import EngineClosedError, RunNotFoundError, StoreError
from ..runs import Run
from ..store.base import ClaimRequest, WriteResult
from ..store.queue import CANCEL_CHANNEL, QUEUE_CHANNEL, RUNS_CHANNEL

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["CLAIM_MAX", "Claims"]

logger = logging.getLogger("taskloom.engine")

#: The most runs one claim takes.
CLAIM_MAX = 1_000
#: A busy engine claims once this share of its slots is free (1/8), or after CLAIM_DELAY.
CLAIM_FRACTION = 8
CLAIM_DELAY = 0.005
#: How often runs waited for in other processes are looked up when no notice came.
REMOTE_POLL = 1.0
#: The least time between two looks at a SQLite file that changed (see `_notice`).
CHANGED_GAP = 0.015
#: The least time between two claims woken by changes that may be this engine's own.
OWN_CHANGES_CLAIM = 0.25
#: The least time between two reads of cancel requests woken by such changes. A change
#: surely another process's is read at once; while this engine commits all the time (and
#: the feed cannot tell another's commit from its own) a request made elsewhere is read
#: at most this much later, well within the 100 ms a cancel may take.
OWN_CHANGES_CANCELS = 0.05
#: How long a closing engine waits for a claim it sent to be committed (a store that is
#: away keeps it longer: nothing is claimed then, or the reaper gives it back).
CLAIM_WAIT_ON_STOP = 10.0


class Claims:
    """Claims runs for an engine and follows the commits of other processes."""

    def __init__(self, engine: Engine, poll_interval: float) -> None:
        self._engine = engine
        self._poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._remote_wake = asyncio.Event()
        self._remote: dict[str, list[asyncio.Future[Run]]] = {}
        self._feed: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._checking_cancels = False
        self._recheck_cancels = False
        self._heard_lock = threading.Lock()
        self._changed_quiet_until = 0.0
        self._changed_pending = False
        self._changed_foreign = False  # a deferred look is for another process's change
        self._heard_queue: list[tuple[str, str]] = []
        #: The last claim found runs: more may be waiting, so an end wakes the next claim.
        self.productive = True
        self.claimed = 0
        self._small_since: float | None = None  # since when few slots wait to be claimed
        self._delayed = False
        self._claimed_at = 0.0  # when the last claim was asked for (time.monotonic())
        self._cancels_read_at = 0.0  # when a change last asked for cancel requests
        self._cancels_deferred = False  # a read of them is due once the gap is up
        #: When the next run waiting for its backoff is due (the claim wakes for it).
        self._next_due: float | None = None
        self._in_flight: asyncio.Future[WriteResult] | None = None  # a claim not committed

    # lifecycle ------------------------------------------------------------------------------
    def start(self, *, claim: bool) -> None:
        engine = self._engine
        loop = asyncio.get_running_loop()
        store = engine.store
        assert store is not None
        self._feed = store.watch(functools.partial(self._heard, loop))
        if claim:
            self._tasks.append(asyncio.ensure_future(self._claim_loop()))
        self._tasks.append(asyncio.ensure_future(self._remote_loop()))

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        in_flight = self._in_flight
        if in_flight is not None:
            # A claim sent is waited for: what it claimed is held (and what it started
            # runs) before the engine counts what it must finish or give back.
            await asyncio.wait([in_flight], timeout=CLAIM_WAIT_ON_STOP)
        closed = EngineClosedError("the engine closed before the run finished")
        for waiters in self._remote.values():
            for future in waiters:
                settle(future, closed)
        self._remote.clear()
        feed, self._feed = self._feed, None
        if feed is not None:
            await asyncio.to_thread(feed.stop)

    def wake(self) -> None:
        """Claim again soon (runs may be claimable, or slots free)."""
        self._wake.set()

    def _delayed_wake(self) -> None:
        self._delayed = False
        self._wake.set()

    # notices from other processes -----------------------------------------------------------
    def _heard(self, loop: asyncio.AbstractEventLoop, channel: str, payload: str) -> None:
        """From the feed's thread: notices are handed to the loop in batches, one wake-up
        for all that came while the loop was busy (a wake-up per notice would flood the
        loop's wake-up pipe, and a signal written to a full pipe is lost)."""
        with self._heard_lock:
            self._heard_queue.append((channel, payload))
            first = len(self._heard_queue) == 1
        if first and not loop.is_closed():
            loop.call_soon_threadsafe(self._take_heard)

    def _take_heard(self) -> None:
        with self._heard_lock:
            heard, self._heard_queue = self._heard_queue, []
        for channel, payload in dict.fromkeys(heard):  # the same notice once
            self._notice(channel, payload)

    def _notice(self, channel: str, payload: str) -> None:
        engine = self._engine
        if channel == QUEUE_CHANNEL:
            queues = set(payload.split(","))
            served = engine._served_queues()
            if "" in queues or queues & served:
                self._wake.set()
        elif channel == RUNS_CHANNEL:
            lines = payload.splitlines()
            if self._remote and any(line.partition(" ")[0] in self._remote for line in lines):
                self._remote_wake.set()
            if engine._listeners and engine._remote_events is not None:
                engine._remote_events.heard(lines)
        elif channel == CANCEL_CHANNEL:
            if payload == engine.worker_id:
                self._check_cancels()
        else:  # "changed" (a SQLite file) or "resync" (the feed reconnected)
            # Any commit of any process says "changed", this engine's own included: what
            # it asks of the store is spaced by CHANGED_GAP, so a busy file costs a few
            # reads a second, not one per commit.
            now = time.monotonic()
            if now < self._changed_quiet_until:
                if payload != "own?":
                    self._changed_foreign = True  # told with the deferred look
                if not self._changed_pending:
                    self._changed_pending = True
                    loop = asyncio.get_running_loop()
                    loop.call_at(
                        loop.time() + self._changed_quiet_until - now,
                        self._changed_later,
                        channel,
                    )
                return
            self._changed_quiet_until = now + CHANGED_GAP
            if engine._listeners and engine._remote_events is not None:
                engine._remote_events.heard(None)
            # Changes that may all be this engine's own (a busy file) wake a claim only
            # now and then: each claim is a write transaction of its own.
            if payload != "own?" or now - self._claimed_at >= OWN_CHANGES_CLAIM:
                self._wake.set()
            if self._remote:
                self._remote_wake.set()
            if engine._holds_running_runs():
                self._cancels_changed(payload != "own?", now)

    def _cancels_changed(self, foreign: bool, now: float) -> None:
        """The file changed: read the cancel requests now, or (a change that may be this
        engine's own, soon after the last read) once `OWN_CHANGES_CANCELS` is up, so that
        a request made elsewhere meanwhile is read all the same."""
        wait = self._cancels_read_at + OWN_CHANGES_CANCELS - now
        if foreign or wait <= 0:
            self._cancels_read_at = now
            self._check_cancels()
        elif not self._cancels_deferred:
            self._cancels_deferred = True
            asyncio.get_running_loop().call_later(wait, self._deferred_cancels)

    def _deferred_cancels(self) -> None:
        self._cancels_deferred = False
        if self._engine._holds_running_runs():
            self._cancels_read_at = time.monotonic()
            self._check_cancels()

    def _changed_later(self, channel: str) -> None:
        self._changed_pending = False
        payload = "" if self._changed_foreign else "own?"
        self._changed_foreign = False
        self._notice(channel, payload)

    def _check_cancels(self) -> None:
        if self._checking_cancels:
            self._recheck_cancels = True  # a request may have come after that read began
            return
        self._checking_cancels = True
        self._recheck_cancels = False
        task = asyncio.ensure_future(self._engine._control.check_cancel_requests())
        task.add_done_callback(self._cancels_checked)
        self._tasks.append(task)

    def _cancels_checked(self, task: asyncio.Task[None]) -> None:
        self._checking_cancels = False
        if task in self._tasks:
            self._tasks.remove(task)
        if task.cancelled():
            return
        if task.exception() is not None:
            logger.warning("taskloom: reading cancel requests failed: %s", task.exception())
        if self._recheck_cancels:
            self._check_cancels()

    # claiming -------------------------------------------------------------------------------
    async def _claim_loop(self) -> None:
        engine = self._engine
        while True:
            wait = self._poll_interval
            if self._next_due is not None:
                wait = max(0.0, min(wait, self._next_due - time.time()))
            try:
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                while await self._claim_once():
                    pass
            except asyncio.CancelledError:
                raise
            except StoreError as exc:
                logger.warning("taskloom: claiming runs failed (%s); trying again", exc)
            except Exception:
                logger.exception("taskloom: claiming runs failed")
            if engine._closing:
                return

    async def _claim_once(self) -> bool:
        """One claim; True when it took as many runs as it asked for (ask again)."""
        engine = self._engine
        free = engine._free_slots()
        if free <= 0 or engine._closing:
            return False
        if free < max(1, engine.concurrency // CLAIM_FRACTION) and free < engine.concurrency:
            # Busy, with few slots free: claim them together a moment later rather than
            # one claim per run that ends (each a statement in its own commit).
            now = time.monotonic()
            if self._small_since is None:
                self._small_since = now
            if now - self._small_since < CLAIM_DELAY:
                if not self._delayed:
                    self._delayed = True
                    asyncio.get_running_loop().call_later(CLAIM_DELAY, self._delayed_wake)
                return False
        self._small_since = None
        tasks, limits = engine._served_tasks()
        if not tasks:
            return False
        limit = min(free, CLAIM_MAX)
        self._claimed_at = time.monotonic()
        request = ClaimRequest(
            worker_id=engine.worker_id,
            tasks=tasks,
            queues=engine._served_queues(),
            limit=limit,
            now=time.time(),
            limits=limits,
            start=engine._starts_at_claim(tasks),
        )
        loop = asyncio.get_running_loop()
        done: asyncio.Future[WriteResult] = loop.create_future()
        # The slots asked for are kept for the claim until it is committed, so that the
        # runs it starts find them free.
        engine._claiming += limit
        self._in_flight = done
        engine._writer_claim(request, functools.partial(self._claimed, limit, done))
        claimed = (await asyncio.shield(done)).claimed
        return len(claimed) >= limit

    def _claimed(
        self, limit: int, done: asyncio.Future[WriteResult], value: WriteResult | BaseException
    ) -> None:
        """The claim's commit (or why not): its runs are held from here, whether or not
        the claim loop still waits (they are started, or queued to start)."""
        engine = self._engine
        engine._claiming -= limit
        if self._in_flight is done:
            self._in_flight = None
        if isinstance(value, WriteResult):
            claimed = value.claimed
            self._next_due = value.next_due
            self.productive = bool(claimed)
            self.claimed += len(claimed)
            for run in claimed:
                engine._adopt_claimed(run)
        settle(done, value)

    # waiting for runs executed elsewhere ------------------------------------------------------
    async def wait_remote(self, run_id: str, *, unfinished: bool = False) -> Run:
        """Wait for a run this engine does not hold to end (wherever it executes).
        `unfinished`: the run is known to exist and not to have ended (this engine just
        submitted it), so the store is not asked first."""
        engine = self._engine
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Run] = loop.create_future()
        self._remote.setdefault(run_id, []).append(future)
        try:
            if unfinished:
                # It did not end before this engine submitted it, but it may have ended
                # since, its notice heard before this wait began: the remote loop looks at
                # once (one read for every wait that begins meanwhile).
                self._remote_wake.set()
            else:
                store = engine.store
                assert store is not None
                run = await engine._in_thread(store.get_run, run_id)
                if run is None:
                    raise RunNotFoundError(run_id)
                if run.is_finished:
                    return run
            return await future
        finally:
            waiters = self._remote.get(run_id)
            if waiters is not None:
                if future in waiters:
                    waiters.remove(future)
                if not waiters:
                    del self._remote[run_id]

    def watch(self, run_id: str, ended: Callable[[Run], None]) -> None:
        """Call `ended(run)` once a run this engine does not hold has ended (known to
        exist and not to have ended yet). If this engine claims the run, it settles the
        watch with its own end."""
        future: asyncio.Future[Run] = asyncio.get_running_loop().create_future()
        self._remote.setdefault(run_id, []).append(future)
        future.add_done_callback(functools.partial(_report_end, ended))

    def take_waiters(self, run_id: str) -> list[asyncio.Future[Run]]:
        """The futures waiting for a run this engine now holds (it settles them)."""
        return self._remote.pop(run_id, [])

    def add_waiters(self, run_id: str, waiters: list[asyncio.Future[Run]]) -> None:
        """A run this engine let go of: its waiters wait on for wherever it ends."""
        live = [w for w in waiters if not w.done()]
        if live:
            self._remote.setdefault(run_id, []).extend(live)
            self._remote_wake.set()

    async def _remote_loop(self) -> None:
        engine = self._engine
        while True:
            try:
                async with asyncio.timeout(REMOTE_POLL):
                    await self._remote_wake.wait()
            except TimeoutError:
                pass
            self._remote_wake.clear()
            if not self._remote:
                continue
            store = engine.store
            assert store is not None
            try:
                ended = await engine._in_thread(store.finished_among, list(self._remote))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("taskloom: reading runs waited for failed: %s", exc)
                continue
            for run in ended:
                for future in self._remote.pop(run.id, []):
                    settle(future, run.copy())


def _report_end(ended: Callable[[Run], None], future: asyncio.Future[Run]) -> None:
    if future.cancelled() or future.exception() is not None:
        return  # the engine closed first
    try:
        ended(future.result())
    except Exception:
        logger.exception("taskloom: reporting the end of a run failed")
