"""Group commit: every change the engine makes reaches the store through one writer thread.

The event loop hands changes over without waiting (a deque append). The writer thread
takes everything that queued up while it was busy, merges changes to the same run or
attempt, commits them in one transaction, and then runs the callbacks of that batch on the
event loop. One commit thus serves thousands of runs, and a caller that must not go on
before its change is durable (`submit`) awaits a callback of the batch that held it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from ..exceptions import StoreError
from ..runs import Attempt, LogLine, Run
from ..store.base import Store, WriteBatch

__all__ = ["BatchWriter"]

logger = logging.getLogger("taskloom.engine")

Callback = Callable[[BaseException | None], None]

#: Up to this many queued changes are committed on the event loop when the writer is idle.
INLINE_MAX = 16

# Operation kinds, kept as small ints: the deque holds (kind, key, payload, callback).
(
    _NEW_RUN,
    _NEW_RUNS,
    _UPDATE_RUN,
    _UPDATE_ATTEMPT,
    _LOG,
    _BARRIER,
    _IDEMPOTENT,
    _START,
    _FINISH,
) = range(9)


class BatchWriter:
    """Collects changes from the loop and commits them in batches from its own thread."""

    def __init__(
        self, store: Store, loop: asyncio.AbstractEventLoop, *, max_batch: int = 2_000
    ) -> None:
        self._store = store
        self._loop = loop
        self._max_batch = max_batch
        self._ops: deque[tuple[int, Any, Any, Callback | None]] = deque()
        self._wake = threading.Event()
        self._closing = False
        self._kick_scheduled = False
        self._loop_thread = threading.get_ident()
        self._write_lock = threading.Lock()
        self._inline = bool(getattr(store, "inline_writes", False))
        self._thread = threading.Thread(target=self._main, name="taskloom-writer", daemon=True)
        self.batches = 0
        self.rows = 0

    def start_thread(self) -> None:
        self._thread.start()

    # called on the loop ---------------------------------------------------------------------
    def new_run(self, run: Run, callback: Callback) -> None:
        self._push((_NEW_RUN, run.id, run, callback))

    def new_runs(self, runs: list[Run], callback: Callback) -> None:
        self._push((_NEW_RUNS, None, runs, callback))

    def start(self, run_id: str, fields: dict[str, Any], attempt: Attempt) -> None:
        """A run's attempt began: update the run and add the attempt (one queue entry).

        The commit waits one more turn of the event loop than other changes, so a run that
        ends in its first step (its task is scheduled after this call) has its start and
        its end committed together.
        """
        if threading.get_ident() != self._loop_thread:  # begun in a task's thread
            self._push((_START, run_id, (fields, attempt), None))
            return
        self._ops.append((_START, run_id, (fields, attempt), None))
        if not self._kick_scheduled:
            self._kick_scheduled = True
            self._loop.call_soon(self._loop.call_soon, self._kick)

    def finish(
        self,
        run_id: str,
        fields: dict[str, Any],
        attempt: int | None,
        attempt_fields: dict[str, Any] | None,
        callback: Callback | None,
    ) -> None:
        """A run (or an attempt of it) ended: update both (one queue entry)."""
        self._push((_FINISH, run_id, (fields, attempt, attempt_fields), callback))

    def insert_idempotent(self, run: Run, callback: Callable[[Run | BaseException], None]) -> None:
        self._push((_IDEMPOTENT, run.id, run, callback))  # type: ignore[arg-type]

    def update_run(
        self, run_id: str, fields: dict[str, Any], callback: Callback | None = None
    ) -> None:
        self._push((_UPDATE_RUN, run_id, fields, callback))

    def update_attempt(self, run_id: str, number: int, fields: dict[str, Any]) -> None:
        self._push((_UPDATE_ATTEMPT, (run_id, number), fields, None))

    def log(self, line: LogLine) -> None:
        self._push((_LOG, None, line, None))

    def barrier(self, callback: Callback) -> None:
        """`callback` runs once everything queued before it is committed."""
        self._push((_BARRIER, None, None, callback))

    def _push(self, op: tuple[int, Any, Any, Callback | None]) -> None:
        self._ops.append(op)
        if threading.get_ident() != self._loop_thread:  # a task's thread: wake the writer
            if not self._wake.is_set():
                self._wake.set()
        elif not self._kick_scheduled:
            # Decide at the end of this turn of the loop, when everything the turn
            # produced has queued up (a run that starts and ends in one turn: one commit).
            self._kick_scheduled = True
            self._loop.call_soon(self._kick)

    def _kick(self) -> None:
        self._kick_scheduled = False
        if not self._ops:
            return
        # A few changes on an idle writer: committing them here costs less than two
        # thread wake-ups (SQLite only, where a small commit takes microseconds).
        if (
            self._inline
            and len(self._ops) <= INLINE_MAX
            and all(op[0] != _NEW_RUNS for op in self._ops)  # one op, many rows
            and self._write_lock.acquire(False)
        ):
            try:
                self._write_some(inline=True)
            finally:
                self._write_lock.release()
            if not self._ops or self._kick_scheduled:  # what the callbacks queued has a kick
                return
        if not self._wake.is_set():
            self._wake.set()

    def close(self) -> None:
        """Commit what is queued, then stop the thread (blocking; call from a thread)."""
        self._closing = True
        self._wake.set()
        self._thread.join()

    # the writer thread ----------------------------------------------------------------------
    def _main(self) -> None:
        ops = self._ops
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._write_lock:
                while ops:
                    self._write_some()
            if self._closing and not ops:
                return

    def _write_some(self, *, inline: bool = False) -> None:
        ops = self._ops
        batch = WriteBatch()
        callbacks: list[Callback] = []
        idempotent: list[tuple[Run, Callable[[Run | BaseException], None]]] = []
        new_attempts: dict[tuple[str, int], Attempt] = {}
        run_updates = batch.run_updates
        attempt_updates = batch.attempt_updates
        count = 0
        while ops and count < self._max_batch:
            kind, key, payload, callback = ops.popleft()
            count += 1
            if kind == _START:
                fields, attempt = payload
                existing = run_updates.get(key)
                if existing is None:
                    run_updates[key] = fields
                else:
                    existing.update(fields)
                new_attempts[(key, attempt.number)] = attempt
            elif kind == _FINISH:
                fields, number, attempt_fields = payload
                existing = run_updates.get(key)
                if existing is None:
                    run_updates[key] = fields
                else:
                    existing.update(fields)
                if number is not None:
                    attempt = new_attempts.get((key, number))
                    if attempt is not None:  # started and finished within one batch: one row
                        for name, value in attempt_fields.items():
                            setattr(attempt, name, value)
                    else:
                        attempt_updates.setdefault((key, number), {}).update(attempt_fields)
            elif kind == _UPDATE_RUN:
                existing = run_updates.get(key)
                if existing is None:
                    run_updates[key] = payload
                else:
                    existing.update(payload)
            elif kind == _NEW_RUN:
                batch.new_runs.append(payload)
            elif kind == _NEW_RUNS:
                batch.new_runs.extend(payload)
            elif kind == _UPDATE_ATTEMPT:
                attempt = new_attempts.get(key)
                if attempt is not None:  # started and finished within one batch: one row
                    for name, value in payload.items():
                        setattr(attempt, name, value)
                else:
                    attempt_updates.setdefault(key, {}).update(payload)
            elif kind == _LOG:
                batch.logs.append(payload)
            elif kind == _IDEMPOTENT:
                idempotent.append((payload, callback))  # type: ignore[arg-type]
                break  # keep order: what follows may depend on which run was kept
            if callback is not None and kind != _IDEMPOTENT:
                callbacks.append(callback)
        batch.new_attempts = list(new_attempts.values())
        error: BaseException | None = None
        if batch:
            try:
                self._store.write(batch)
            except Exception as exc:
                logger.exception("taskloom: writing %d changes to the store failed", count)
                error = StoreError(f"the store could not commit {count} changes: {exc}")
                error.__cause__ = exc
            self.batches += 1
            self.rows += count
        results: list[tuple[Callable[[Any], None], Any]] = []
        for run, on_done in idempotent:
            try:
                results.append((on_done, self._store.insert_run_idempotent(run)))
            except Exception as exc:
                results.append(
                    (on_done, StoreError(f"the store could not insert run {run.id}: {exc}"))
                )
        if inline:
            _deliver(callbacks, error, results)
        elif callbacks or results:
            self._loop.call_soon_threadsafe(_deliver, callbacks, error, results)


def _deliver(
    callbacks: list[Callback],
    error: BaseException | None,
    results: list[tuple[Callable[[Any], None], Any]],
) -> None:
    for callback in callbacks:
        try:
            callback(error)
        except Exception:
            logger.exception("taskloom: a commit callback failed")
    for on_done, value in results:
        on_done(value)
