"""Group commit: every change the engine makes reaches the store through one writer thread.

The event loop hands changes over without waiting (a deque append). The writer thread
takes everything that queued up while it was busy, merges changes to the same run or
attempt, commits them in one transaction, and then runs the callbacks of that batch on the
event loop. One commit thus serves thousands of runs, and a caller that must not go on
before its change is durable (`submit`) awaits a callback of the batch that held it.

A batch is all or nothing in the database, but not for the runs in it:

* When the database refuses a value (text it cannot encode, say), the batch is split in
  halves until the change at fault stands alone; every other change commits. The change at
  fault fails its own run alone: a submit is refused, an end whose result cannot be stored
  is recorded as a failure that says so (`ReplacedOutcome`), any other change is dropped
  and logged.
* When the database cannot take the batch through no fault of the data (down, locked,
  disk full), nothing is dropped: the changes go back to the front of the queue and are
  written again with backoff until it comes back. Meanwhile new submits are refused at once
  (`StoreUnavailableError`, with a time to retry after), and so are the submits that were
  waiting in the failed batch: those runs were never accepted.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..exceptions import FieldError, InputValidationError, StoreError, StoreUnavailableError
from ..runs import Attempt, ErrorInfo, LogLine, Run, RunStatus
from ..store.base import (
    ClaimRequest,
    LeaseLostError,
    Store,
    StoreBusyError,
    UncertainCommitError,
    WriteBatch,
)
from ..tasks.validation import unstorable_fields

__all__ = ["BatchWriter", "ReplacedOutcome"]

logger = logging.getLogger("taskloom.engine")

Callback = Callable[[BaseException | None], None]
Op = tuple[int, Any, Any, Any]

#: Up to this many queued changes are committed on the event loop when the writer is idle.
INLINE_MAX = 16
#: Backoff between writes while the store is unavailable: from the first to the last.
RETRY_FIRST = 0.05
RETRY_MAX = 2.0
#: How long `close` goes on trying to commit what is queued while the store is unavailable.
CLOSE_TIMEOUT = 10.0

# Operation kinds, kept as small ints: the deque holds (kind, key, payload, callback).
# A submit (`_SUBMIT*`, `_IDEMPOTENT`) is a run a caller waits to have accepted: while the
# store is unavailable it is refused rather than kept. `_NEW_RUN*` are runs the engine
# itself adds for runs already accepted (workflow steps): those are kept until written.
(
    _SUBMIT,
    _SUBMIT_MANY,
    _NEW_RUN,
    _NEW_RUNS,
    _UPDATE_RUN,
    _UPDATE_ATTEMPT,
    _LOG,
    _BARRIER,
    _IDEMPOTENT,
    _START,
    _FINISH,
    _CLAIM,
    _SUBMIT_STARTED,
) = range(13)
_SUBMITS = frozenset({_SUBMIT, _SUBMIT_MANY, _IDEMPOTENT, _SUBMIT_STARTED})


class ReplacedOutcome(StoreError):
    """Handed to a run's end callback: the end was stored as `error` instead, because the
    database refused its result. The engine makes its own record of the run say the same."""

    def __init__(self, error: ErrorInfo) -> None:
        super().__init__(error.message)
        self.error = error


class BatchWriter:
    """Collects changes from the loop and commits them in batches from its own thread."""

    def __init__(
        self,
        store: Store,
        loop: asyncio.AbstractEventLoop,
        *,
        max_batch: int = 2_000,
        close_timeout: float = CLOSE_TIMEOUT,
    ) -> None:
        self._store = store
        self._loop = loop
        self._max_batch = max_batch
        self._close_timeout = close_timeout
        self._ops: deque[Op] = deque()
        self._wake = threading.Event()
        self._stopping = threading.Event()  # cuts a backoff short when closing
        self._closing = False
        self._kick_scheduled = False
        self._loop_thread = threading.get_ident()
        self._write_lock = threading.Lock()
        self._inline = store.inline_writes
        self._thread = threading.Thread(target=self._main, name="taskloom-writer", daemon=True)
        self._outage: StoreUnavailableError | None = None  # set while the store is unavailable
        self._outage_since = 0.0
        self._backoff = 0.0
        self.batches = 0
        self.rows = 0
        #: The runs this engine holds, each with the (worker id, lease) its changes are
        #: made under: the store applies them only while that still holds (see
        #: `WriteBatch.fences`). Kept by the engine, read when a batch is made.
        self.fences: dict[str, tuple[str, int]] = {}
        #: Changes refused by their fence so far, and who hears of the runs refused.
        self.rejected = 0
        self.on_rejected: Callable[[frozenset[str]], None] | None = None

    def start_thread(self) -> None:
        self._thread.start()

    # called on the loop ---------------------------------------------------------------------
    @property
    def unavailable(self) -> StoreUnavailableError | None:
        """Why the store cannot commit now, or None when it can."""
        return self._outage

    def check_available(self, task: str) -> None:
        """Raise `StoreUnavailableError` while the store cannot commit: a run submitted now
        would wait for as long as the database is away, so it is refused instead."""
        outage = self._outage
        if outage is not None:
            raise self._refusal(task, outage)

    def _refusal(self, task: str, cause: BaseException) -> StoreUnavailableError:
        retry_after = max(1.0, self._backoff)
        error = StoreUnavailableError(
            f"task {task!r}: the run was not accepted: the store is unavailable ({cause}); "
            f"try again in {retry_after:g} s",
            retry_after=retry_after,
        )
        error.__cause__ = cause
        return error

    def submit_run(self, run: Run, callback: Callback) -> None:
        """A submitted run: `callback(None)` once it is committed, or with why not."""
        self._push((_SUBMIT, run.id, run, callback))

    def submit_started(self, run: Run, attempt: Attempt, callback: Callback) -> None:
        """A submitted run whose first attempt begins at once: inserted as started, with its
        attempt, in one commit (one round trip fewer than a submit and then a start).
        `callback` is told once both are committed, or why neither is."""
        self._push((_SUBMIT_STARTED, run.id, (run, attempt), callback))

    def submit_runs(self, runs: list[Run], callback: Callback) -> None:
        self._push((_SUBMIT_MANY, None, runs, callback))

    def new_run(self, run: Run, callback: Callback) -> None:
        """A run the engine adds for work already accepted: kept until it is written."""
        self._push((_NEW_RUN, run.id, run, callback))

    def new_runs(self, runs: list[Run], callback: Callback) -> None:
        self._push((_NEW_RUNS, None, runs, callback))

    def start(
        self, run_id: str, fields: dict[str, Any], attempt: Attempt, callback: Callback
    ) -> None:
        """A run's attempt begins: update the run and add the attempt (one queue entry).
        `callback` is told when it is committed: the task's code waits for that."""
        self._push((_START, run_id, (fields, attempt), callback))

    def finish(
        self,
        run_id: str,
        fields: dict[str, Any],
        attempt: int | None,
        attempt_fields: dict[str, Any] | None,
        callback: Callback | None,
        *,
        task: str | None = None,
        started_at: float | None = None,
        record: Run | None = None,
    ) -> None:
        """A run (or an attempt of it) ended: update both (one queue entry). `task` names
        the run's task in the error recorded if the database refuses the outcome; with it
        and the run's `started_at`, the store counts the end without reading the run
        (`WriteBatch.ended`). `record` is the engine's whole record of the run, which the
        notice of its end may carry (`WriteBatch.records`)."""
        payload = (fields, attempt, attempt_fields, task, started_at, record)
        self._push((_FINISH, run_id, payload, callback))

    def insert_idempotent(self, run: Run, callback: Callable[[Run | BaseException], None]) -> None:
        self._push((_IDEMPOTENT, run.id, run, callback))

    def update_run(
        self, run_id: str, fields: dict[str, Any], callback: Callback | None = None
    ) -> None:
        self._push((_UPDATE_RUN, run_id, fields, callback))

    def update_attempt(self, run_id: str, number: int, fields: dict[str, Any]) -> None:
        self._push((_UPDATE_ATTEMPT, (run_id, number), fields, None))

    def log(self, line: LogLine) -> None:
        self._push((_LOG, None, line, None))

    def claim(self, request: ClaimRequest, callback: Callable[[Any], None]) -> None:
        """Claim runs in the next commit; `callback` gets the `WriteResult` (its `claimed`
        runs are held, with their new lease) or the error."""
        self._push((_CLAIM, None, request, callback))

    def barrier(self, callback: Callback) -> None:
        """`callback` runs once everything queued before it is committed."""
        self._push((_BARRIER, None, None, callback))

    def _push(self, op: Op) -> None:
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
        # thread wake-ups (SQLite only, where a small commit takes microseconds). Such a
        # commit never waits for another process's lock: busy, it is left to the thread.
        if (
            self._inline
            and self._outage is None
            and len(self._ops) <= INLINE_MAX
            and all(op[0] != _NEW_RUNS and op[0] != _SUBMIT_MANY for op in self._ops)
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

    def write_here(self, written: threading.Event) -> None:
        """From a task's thread that waits for a change of its own (its start): when the
        writer thread is idle, commit what is queued right here, in order, instead of
        waking it and being woken back. Returns when `written` is set or the writer thread
        has the queue."""
        while not written.is_set() and self._outage is None and self._write_lock.acquire(False):
            try:
                if not self._ops:
                    return
                self._write_some()
            finally:
                self._write_lock.release()

    def close(self) -> None:
        """Commit what is queued, then stop the thread (blocking; call from a thread).

        While the store is unavailable it goes on trying for `close_timeout` seconds; what
        is still not written then is given up (logged): the next engine on the database
        takes over those runs from where the store last saw them.
        """
        self._closing = True
        self._stopping.set()
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
                    if self._write_some():
                        continue
                    if self._closing and self._outage_duration() > self._close_timeout:
                        self._give_up()
                        break
                    # Unavailable: wait, then try again (new changes queue meanwhile).
                    if self._closing:
                        time.sleep(RETRY_FIRST)
                    else:
                        self._stopping.wait(self._backoff)
            if self._closing and not ops:
                return

    def _outage_duration(self) -> float:
        return time.monotonic() - self._outage_since if self._outage is not None else 0.0

    def _take(self) -> list[Op]:
        ops = self._ops
        taken: list[Op] = []
        claims = 0
        while ops and len(taken) < self._max_batch:
            if ops[0][0] == _CLAIM:
                if claims:
                    break  # one claim per batch
                claims = 1
            op = ops.popleft()
            taken.append(op)
            if op[0] == _IDEMPOTENT:
                break  # keep order: what follows may depend on which run was kept
        return taken

    def _write_some(self, *, inline: bool = False) -> bool:
        """Commit the next batch and hand its callbacks to the loop; False when the store
        was unavailable (what was not written is back at the front of the queue)."""
        taken = self._take()
        outcomes: list[tuple[Callable[[Any], None], Any]] = []
        units: deque[list[Op]] = deque([taken])
        available = True
        while units:
            unit = units.popleft()
            try:
                self._commit_unit(unit, outcomes)
            except StoreBusyError:
                # Another process holds the lock: leave this to the thread, which waits.
                self._requeue([unit, *units], refuse_submits=None, outcomes=outcomes)
                break
            except StoreUnavailableError as exc:
                # A commit cut off mid-way may have happened: its submits stay queued (the
                # inserts are idempotent) rather than be refused and stored all the same.
                refuse = None if isinstance(exc, UncertainCommitError) else exc
                self._requeue([unit, *units], refuse_submits=refuse, outcomes=outcomes)
                self._enter_outage(exc)
                available = False
                break
            except Exception as exc:  # the data: any error but unavailability
                if not isinstance(exc, StoreError):
                    logger.exception("taskloom: writing %d changes failed", len(unit))
                    exc = StoreError(f"a value cannot be stored: {exc}")
                if len(unit) > 1:  # split until the change at fault stands alone
                    half = len(unit) // 2
                    units.extendleft([unit[half:], unit[:half]])
                else:
                    replacement = self._refused(unit[0], exc, outcomes)
                    if replacement is not None:
                        units.appendleft([replacement])
        if available and self._outage is not None:
            self._leave_outage()
        if inline:
            _deliver(outcomes)
        elif outcomes:
            # A task's thread waiting for its start is told from here: a hop through the
            # loop would cost more than the commit.
            now: list[tuple[Callable[[Any], None], Any]] = []
            later: list[tuple[Callable[[Any], None], Any]] = []
            for item in outcomes:
                (now if getattr(item[0], "threadsafe", False) else later).append(item)
            _deliver(now)
            if later:
                self._loop.call_soon_threadsafe(_deliver, later)
        return available

    def _commit_unit(
        self, unit: list[Op], outcomes: list[tuple[Callable[[Any], None], Any]]
    ) -> None:
        """Write `unit` as one transaction; on success its callbacks join `outcomes`."""
        if unit[-1][0] == _IDEMPOTENT:
            if len(unit) > 1:
                self._commit_unit(unit[:-1], outcomes)
                del unit[:-1]  # written: a retry of this unit starts at the insert
            _, _, run, on_done = unit[0]
            kept = self._store.insert_run_idempotent(run)
            outcomes.append((on_done, kept))
            return
        batch, callbacks = _merge(unit, self.fences)
        if not batch:
            outcomes.extend((callback, None) for _, callback in callbacks)
            return
        result = self._store.write(batch, wait=not self._inline_call())
        self.batches += 1
        self.rows += len(unit)
        rejected = result.rejected
        if rejected:
            self.rejected += sum(1 for op in unit if _run_of(op) in rejected)
            logger.warning(
                "taskloom: %d runs are no longer held by this worker; their changes were "
                "refused and they are dropped here",
                len(rejected),
            )
            if self.on_rejected is not None:
                outcomes.append((self.on_rejected, rejected))
            lost = LeaseLostError("this worker no longer holds the run")
            for key, callback in callbacks:
                outcomes.append((callback, lost if key in rejected else None))
        else:
            outcomes.extend((callback, None) for _, callback in callbacks)
        if batch.claim is not None:
            for op in unit:
                if op[0] == _CLAIM:
                    outcomes.append((op[3], result))

    def _inline_call(self) -> bool:
        return threading.get_ident() == self._loop_thread

    def _requeue(
        self,
        units: list[list[Op]],
        *,
        refuse_submits: StoreUnavailableError | None,
        outcomes: list[tuple[Callable[[Any], None], Any]],
    ) -> None:
        """Put what was not written back at the front of the queue, in order; with
        `refuse_submits`, the submits among it are refused instead of kept."""
        kept: list[Op] = []
        for unit in units:
            for op in unit:
                if refuse_submits is not None and op[0] in _SUBMITS:
                    outcomes.append((op[3], self._refusal(_task_of(op), refuse_submits)))
                else:
                    kept.append(op)
        self._ops.extendleft(reversed(kept))

    def _enter_outage(self, exc: StoreUnavailableError) -> None:
        if self._outage is None:
            self._outage_since = time.monotonic()
            self._backoff = RETRY_FIRST
            logger.warning(
                "taskloom: the store is unavailable (%s); %d changes wait to be written, "
                "trying again with backoff; new submits are refused until it is back",
                exc,
                len(self._ops),
            )
        else:
            self._backoff = min(self._backoff * 2, RETRY_MAX)
        self._outage = exc

    def _leave_outage(self) -> None:
        logger.warning(
            "taskloom: the store is available again after %.1f s", self._outage_duration()
        )
        self._outage = None
        self._backoff = 0.0

    def _give_up(self) -> None:
        """Closing while the store stays away: end every waiting callback with the error."""
        outage = self._outage
        assert outage is not None
        ops = list(self._ops)
        self._ops.clear()
        logger.error(
            "taskloom: closing with %d changes the unavailable store did not take (%s); "
            "their runs resume from what the store holds when an engine next opens it",
            len(ops),
            outage,
        )
        outcomes: list[tuple[Callable[[Any], None], Any]] = []
        for op in ops:
            if op[3] is not None:
                error = self._refusal(_task_of(op), outage) if op[0] in _SUBMITS else outage
                outcomes.append((op[3], error))
        if outcomes:
            self._loop.call_soon_threadsafe(_deliver, outcomes)

    def _refused(
        self, op: Op, exc: StoreError, outcomes: list[tuple[Callable[[Any], None], Any]]
    ) -> Op | None:
        """The database refused this one change: fail what it belongs to, alone. Returns a
        change to write in its place, if any."""
        kind, key, payload, callback = op
        if kind in (_SUBMIT, _NEW_RUN, _IDEMPOTENT, _SUBMIT_MANY, _NEW_RUNS, _SUBMIT_STARTED):
            runs: list[Run] = (
                payload
                if isinstance(payload, list)
                else [payload[0] if kind == _SUBMIT_STARTED else payload]
            )
            outcomes.append((callback, _run_refused(runs, exc)))
            return None
        if kind == _FINISH and not isinstance(callback, _Replaced):
            # The outcome cannot be stored: the run fails, saying so (once; should even
            # that be refused, the change is dropped below).
            fields, number, attempt_fields, task, started_at, record = payload
            where = f"task {task!r}: run {key}" if task else f"run {key}"
            error = ErrorInfo("UnstorableValueError", f"{where}: result could not be stored: {exc}")
            failed = {**fields, "status": RunStatus.FAILED, "result": None, "error": error}
            attempt_failed = None
            if attempt_fields is not None:
                attempt_failed = {**attempt_fields, "status": "failed", "error": error}
            replaced = _Replaced(callback, error)
            payload = (failed, number, attempt_failed, task, started_at, record)
            return (_FINISH, key, payload, replaced)
        logger.error("taskloom: the store refused a change of run %s, dropped: %s", key, exc)
        if callback is not None:
            outcomes.append((callback, exc))
        return None


def _run_of(op: Op) -> str | None:
    """The run a change is of (None for a new run, a barrier or a claim)."""
    kind, key, payload, _ = op
    if kind in (_START, _FINISH, _UPDATE_RUN):
        return key  # type: ignore[no-any-return]
    if kind == _UPDATE_ATTEMPT:
        return key[0]  # type: ignore[no-any-return]
    if kind == _LOG:
        return payload.run_id  # type: ignore[no-any-return]
    return None


def _merge(
    ops: list[Op], fences: dict[str, tuple[str, int]]
) -> tuple[WriteBatch, list[tuple[str | None, Callback]]]:
    """One batch from many changes; changes to one run or attempt merge into one row.
    Each change of a run the engine holds carries that run's fence.

    Payloads are never changed in place (a merge makes a new dict or attempt), so the same
    changes can be merged again when a batch is split or written again. Callbacks come
    with the run they are of, except a claim's (told with the runs it claimed).

    Called for every commit with every change in it: the run a change is of is found
    once per change, in its branch (the same as `_run_of`).
    """
    batch = WriteBatch()
    callbacks: list[tuple[str | None, Callback]] = []
    new_attempts: dict[tuple[str, int], Attempt] = {}
    run_updates = batch.run_updates
    attempt_updates = batch.attempt_updates
    fenced = batch.fences
    fence_of = fences.get
    for kind, key, payload, callback in ops:
        run_id: str | None = None
        if kind == _START:
            run_id = key
            fields, attempt = payload
            existing = run_updates.get(key)
            run_updates[key] = fields if existing is None else {**existing, **fields}
            new_attempts[(key, attempt.number)] = attempt
        elif kind == _FINISH:
            run_id = key
            fields, number, attempt_fields, task, started_at, record = payload
            existing = run_updates.get(key)
            run_updates[key] = fields if existing is None else {**existing, **fields}
            if task is not None:
                batch.ended[key] = (task, started_at)
            if record is not None:
                batch.records[key] = record
            if number is not None:
                _attempt_change(new_attempts, attempt_updates, (key, number), attempt_fields)
        elif kind == _LOG:
            run_id = payload.run_id
            batch.logs.append(payload)
        elif kind in (_SUBMIT, _NEW_RUN):
            batch.new_runs.append(payload)
        elif kind == _UPDATE_RUN:
            run_id = key
            existing = run_updates.get(key)
            run_updates[key] = payload if existing is None else {**existing, **payload}
        elif kind == _SUBMIT_STARTED:
            run, attempt = payload
            batch.new_runs.append(run)
            new_attempts[(key, attempt.number)] = attempt
        elif kind in (_SUBMIT_MANY, _NEW_RUNS):
            batch.new_runs.extend(payload)
        elif kind == _UPDATE_ATTEMPT:
            run_id = key[0]
            _attempt_change(new_attempts, attempt_updates, key, payload)
        elif kind == _CLAIM:
            batch.claim = payload
            continue  # told with what it claimed (see `_commit_unit`)
        if run_id is not None and fences:
            fence = fence_of(run_id)
            if fence is not None:
                fenced[run_id] = fence
        if callback is not None:
            callbacks.append((run_id, callback))
    batch.new_attempts = list(new_attempts.values())
    return batch, callbacks


def _attempt_change(
    new_attempts: dict[tuple[str, int], Attempt],
    attempt_updates: dict[tuple[str, int], dict[str, Any]],
    key: tuple[str, int],
    fields: dict[str, Any],
) -> None:
    attempt = new_attempts.get(key)
    if attempt is not None:  # started and finished within one batch: one row
        # Every other field as the start recorded it (built field by field: a tenth of
        # what `dataclasses.replace` costs, once per run that ends in its start's batch;
        # `tests/unit/test_writer_merge.py` holds it to every field of `Attempt`).
        new_attempts[key] = Attempt(
            attempt.run_id,
            attempt.number,
            attempt.started_at,
            fields.get("finished_at", attempt.finished_at),
            fields.get("status", attempt.status),
            fields.get("error", attempt.error),
            attempt.worker_id,
            attempt.executor,
            attempt.dashboard,
        )
    else:
        existing = attempt_updates.get(key)
        attempt_updates[key] = fields if existing is None else {**existing, **fields}


def _task_of(op: Op) -> str:
    payload = op[2]
    if op[0] == _SUBMIT_STARTED:
        payload = payload[0]
    run = payload[0] if isinstance(payload, list) and payload else payload
    return run.task if isinstance(run, Run) else "?"


def _run_refused(runs: list[Run], exc: StoreError) -> StoreError | InputValidationError:
    """Why a new run was not stored: its inputs' fields when they are at fault."""
    for index, run in enumerate(runs):
        errors = unstorable_fields(run.inputs)
        if errors:
            if len(runs) > 1:
                errors = [FieldError(f"[{index}].{e.field}", e.message) for e in errors]
            return InputValidationError(run.task, errors)
    first = runs[0]
    names = f"run {first.id}" if len(runs) == 1 else f"{len(runs)} runs"
    return StoreError(f"task {first.task!r}: {names} could not be stored: {exc}")


class _Replaced:
    """The callback of an end written in place of one the database refused."""

    def __init__(self, callback: Callback | None, error: ErrorInfo) -> None:
        self._callback = callback
        self._error = error

    def __call__(self, outcome: BaseException | None) -> None:
        if self._callback is not None:
            self._callback(ReplacedOutcome(self._error) if outcome is None else outcome)


def _deliver(outcomes: list[tuple[Callable[[Any], None], Any]]) -> None:
    for callback, value in outcomes:
        try:
            callback(value)
        except Exception:
            logger.exception("taskloom: a commit callback failed")
