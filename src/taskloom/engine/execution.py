"""How the runs an engine holds execute: starting attempts, calling the task, recording outcomes.

`RunExecution` is a part of `Engine`. The engine makes it with what they share (the runs
it holds, the runs lately finished, its listeners) and, when it starts, hands it the
event loop, the writer, the thread pool for thread-safe sync tasks and its claims.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic_core import to_jsonable_python

from .. import context as context_module
from ..aio import settle
from ..exceptions import Retry, StoreError, TaskTimeoutError, UnstorableValueError
from ..observability import tracing
from ..runs import Attempt, ErrorInfo, LogLine, Run, RunEventKind, RunStatus
from ..store.base import LeaseLostError
from ..tasks.definition import FunctionTask, TaskDefinition
from ..tasks.validation import unstorable_fields
from .live import LiveRun, TaskReportedFailure
from .scheduler import ReadyQueue
from .serial import Outcome, SerialRunner
from .writer import BatchWriter, ReplacedOutcome

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from ..executors import RemoteExecutor
    from .claims import Claims
    from .engine import Engine

__all__ = ["FINISHED_CACHE_SIZE", "Listener", "RunEvent", "RunExecution"]

logger = logging.getLogger("taskloom.engine")

_JSON_SCALARS = (int, float, str, bool, type(None))
_PENDING, _RUNNING = RunStatus.PENDING, RunStatus.RUNNING
FINISHED_CACHE_SIZE = 50_000
_SKIPPED = object()  # a thread skipped a call it was handed (see `_begin_in_thread`)
SERIAL_WINDOW = 64
_ENDS = frozenset({RunEventKind.RETRYING, RunEventKind.FINISHED})
#: The `executor=` names of executors of calls elsewhere (`taskloom.executors`).
_REMOTE = frozenset({"dask"})
#: The built-in executors that make their calls on the loop (see `executor_of_task`).
_ON_LOOP = frozenset({"loop", "inline"})


@dataclass(frozen=True, slots=True)
class RunEvent:
    """What listeners hear: `kind` (a `RunEventKind`, equal to its text) is `submitted`,
    `started`, `progress`, `log`, `retrying` or `finished`; `line` is set for `log`.
    `remote` is set when another process made the change and this engine read it back
    from the store (`remote.py`): a listener that
    counts what this process did skips those. `attempt_ended` is set on `retrying` and
    `finished` when an attempt this engine executed ended with the change (a `finished`
    run cancelled before it ran, or between attempts, ended none). `record` is the run as
    JSON text when the change came with it (a remote end whose notice carried it)."""

    kind: RunEventKind
    run: Run
    line: LogLine | None = None
    remote: bool = False
    attempt_ended: bool = False
    record: str | None = None


Listener = Callable[[RunEvent], None]


class RunExecution:
    """Hands the runs an engine holds to their executors, in the order of its ready
    queue, and records what becomes of each attempt.

    `engine` is read for its `worker_id` (the worker an attempt is recorded under; it
    changes when the engine registers again after losing its lease) and is given to
    tasks that submit runs of their own (`TaskDefinition.invoke`).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        concurrency: int,
        live: dict[str, LiveRun],
        ending: set[str],
        finished: OrderedDict[str, Run],
        listeners: list[Listener],
    ) -> None:
        self.engine = engine
        #: The tracer of attempts' spans, set by the engine; None: no span, one check.
        self.tracer: Tracer | None = None
        #: Which run starts next: a run handed over holds one of its slots until it ends.
        self.queue = ReadyQueue(concurrency, self._dispatch)  # type: ignore[arg-type]
        self._live = live  # the runs the engine holds, by id (a run is dropped as it ends)
        self._ending = ending  # those of them whose end is queued, not committed yet
        self._finished = finished  # the runs that ended lately, as committed
        self._listeners = listeners
        #: Listeners of the ends this engine records only (`add_listener(ends_only=True)`).
        self.end_listeners: list[Listener] = []
        #: Held by a task's thread while it begins an attempt, and while a run is cancelled.
        self.begin_lock = threading.Lock()
        #: The engine is closing: no attempt begins any more, no retry is queued again.
        self.closing = False
        self._states: dict[str, Any] = {}  # each task's `state` object, by task name
        self._serial: dict[str, SerialRunner] = {}  # the thread of each serial task
        # What the engine hands over when it starts (see `start`).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer: BatchWriter | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._claims: Claims | None = None
        #: Executors of calls elsewhere, by name (`executor=`): the engine's Dask
        #: executor when it was given a scheduler.
        self.remote: dict[str, RemoteExecutor] = {}
        self._warned: set[str] = set()  # tasks whose executor is missing, warned about
        #: What each task's attempts record as their executor (see `executor_of`).
        self._executors: dict[str, tuple[TaskDefinition, str, str | None]] = {}

    def start(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        writer: BatchWriter,
        pool: ThreadPoolExecutor,
        claims: Claims,
    ) -> None:
        """The engine started: runs execute on `loop`, thread-safe sync tasks in `pool`,
        every change goes through `writer`, and a run's end wakes `claims`."""
        self._loop = loop
        self._writer = writer
        self._pool = pool
        self._claims = claims

    def stop(self) -> None:
        """The engine closed: the threads of serial tasks stop after the call they are in."""
        for runner in self._serial.values():
            runner.stop()

    async def close_remote(self) -> None:
        """Let go of the executors of calls elsewhere (the engine is closing)."""
        remote, self.remote = self.remote, {}
        for executor in remote.values():
            try:
                await executor.close()
            except Exception:
                logger.exception("taskloom: closing the %s executor failed", executor.name)

    def task_limit(self, task: TaskDefinition) -> int | None:
        """How many runs of `task` may be handed to its executor at once."""
        options = task.options
        if options.executor in self.remote:
            return options.concurrency  # made elsewhere: no thread of this engine's
        is_sync = isinstance(task, FunctionTask) and not (task.is_async or task.is_async_generator)
        if is_sync and not options.thread_safe and not options.inline:
            # Calls run one after another in the task's own thread. Without a timeout the
            # thread may be handed a window of runs at once (fewer wake-ups); with one, a
            # run is handed over only when it can start, so its clock is its own.
            window = 1 if options.timeout is not None else SERIAL_WINDOW
            return window if options.concurrency is None else min(window, options.concurrency)
        return options.concurrency

    def state_of(self, task: TaskDefinition) -> Any:
        state = self._states.get(task.name)
        if state is None:
            kind = task.specials.state
            assert kind is not None
            state = self._states[task.name] = kind()
        return state

    # executing -----------------------------------------------------------------------------
    def _dispatch(self, live: LiveRun) -> None:
        """Hand a run to its executor (it holds a slot of the ReadyQueue from now on)."""
        # A run started by its claim has its attempt counted already.
        live.token = live.run.attempts + (0 if live.claim_started else 1)
        live.settled = False
        live.began = False
        live.dispatched = True
        context = live.new_context()
        task = live.task
        assert self._loop is not None
        elsewhere = task.options.executor
        remote = None if elsewhere is None else self._remote_executor(task, elsewhere)
        if (
            remote is not None
            or task.is_async
            or task.is_async_generator
            or not isinstance(task, FunctionTask)
        ):
            started: asyncio.Future[None] = self._loop.create_future()
            self._begin(live, functools.partial(settle, started))
            live.execution = asyncio.ensure_future(
                self._execute_async(live, context, started, remote)
            )
        elif task.options.inline:
            self._begin(live, functools.partial(self._call_inline, live, live.token, context))
        else:
            self._execute_in_thread(live, context)

    def start_at_insert(
        self, live: LiveRun, inserted: Callable[[BaseException | None], None]
    ) -> bool:
        """Start a submitted run with its insert, when it would start at once anyway: its
        task's code runs on the loop and a slot is free with nothing queued before it. The
        run is then inserted already started, with its attempt, in one commit; `inserted`
        is told once that is committed (or why not), before the code may run. False: the
        run is to be inserted as usual."""
        task = live.task
        elsewhere = task.options.executor
        on_loop = task.is_async or task.is_async_generator or not isinstance(task, FunctionTask)
        if not on_loop or (elsewhere is not None and elsewhere in _REMOTE):
            return False
        if not self.queue.would_start(live):
            return False
        live.inserted = inserted
        self.queue.push(live)  # starts it now: `_begin` sends the insert with the start
        return True

    def starts_at_claim(self, task: TaskDefinition) -> str | None:
        """The executor named in the attempts of `task`'s runs when a claim may start them
        (`ClaimRequest.start`): those whose calls are made on the loop, with no limit of
        their own in this engine, so that a claim sized to the free slots starts them all
        at once. None: a claimed run of `task` is started after its claim, as it comes up."""
        if task.options.executor in _REMOTE or self.task_limit(task) is not None:
            return None
        name, _ = self.executor_of_task(task)
        return name if name in _ON_LOOP else None

    def started_by_claim(self, live: LiveRun) -> None:
        """A run its claim started (`running`, its attempt open in the store and in
        `live.attempt_open`): it starts here without writing its start again."""
        live.claim_started = True
        self.queue.push(live)

    def _inserted_started(
        self,
        live: LiveRun,
        inserted: Callable[[BaseException | None], None],
        committed: Callable[[BaseException | None], None],
        error: BaseException | None,
    ) -> None:
        """The insert of a run started with it is committed (or refused): the submit
        hears first, then the attempt (whose code runs only now)."""
        inserted(error)
        if error is None:
            if self._listeners:
                self._emit_threadsafe(RunEventKind.STARTED, live.run)
            committed(None)
        else:  # nothing of the run is stored: the submitter was told, the code never runs
            committed(error if isinstance(error, StoreError) else StoreError(str(error)))

    def _remote_executor(self, task: TaskDefinition, name: str) -> RemoteExecutor | None:
        """The executor of calls elsewhere `task` names; None for the engine's own, and
        for one this engine was not given (its calls are made here, as for any task,
        with a warning once per task)."""
        if name not in _REMOTE:
            return None
        remote = self.remote.get(name)
        # A package's parallel units ask for Dask by default: quietly made here without.
        if remote is None and task.name not in self._warned and task.kind != "command":
            self._warned.add(task.name)
            logger.warning(
                "taskloom: task %r asks for executor %r, which this engine was not given "
                "(a Dask scheduler: --dask, TASKLOOM_DASK_ADDRESS or Engine(dask=...)); "
                "its runs execute in this process",
                task.name,
                name,
            )
        return remote

    def executor_of(self, live: LiveRun) -> tuple[str, str | None]:
        """What makes the calls of `live`'s task, as its attempts record it (see
        `executor_of_task`)."""
        return self.executor_of_task(live.task)

    def executor_of_task(self, task: TaskDefinition) -> tuple[str, str | None]:
        """What makes the calls of `task`, as its attempts record it: `dask` and the
        scheduler's address with the Dask dashboard's address when it serves one, or the
        built-in executor's name (`loop`, `inline`, `thread`, `serial`), as `_dispatch`
        chooses. Worked out once per task: every attempt asks."""
        known = self._executors.get(task.name)
        if known is not None and known[0] is task:
            return known[1], known[2]
        elsewhere = task.options.executor
        remote = None if elsewhere not in _REMOTE else self.remote.get(elsewhere)
        link: str | None = None
        if remote is not None:
            text = f"{remote.name} {remote.where}"[:200]  # the column's width
            link = remote.dashboard_link
        elif task.is_async or task.is_async_generator or not isinstance(task, FunctionTask):
            text = "loop"
        elif task.options.inline:
            text = "inline"
        else:
            text = "thread" if task.options.thread_safe else "serial"
        self._executors[task.name] = (task, text, link)
        return text, link

    def _call_inline(
        self,
        live: LiveRun,
        token: int,
        context: context_module.Context,
        error: BaseException | None,
    ) -> None:
        """An inline task's call, on the loop, once its start is committed."""
        if live.settled or live.token != token:
            return  # cancelled or interrupted meanwhile
        if error is not None:
            self._start_not_recorded(live, error)
            return
        context_token = context_module.set_current(context)
        call = live.sync_callable(context)
        if live.span is not None:
            call = tracing.in_span(lambda: live.span, call)
        try:
            result = call()
        except BaseException as exc:
            self._attempt_failed(live, exc)
        else:
            self._attempt_succeeded(live, result)
        finally:
            context_module.reset_current(context_token)

    def _start_not_recorded(self, live: LiveRun, error: BaseException) -> None:
        """The store did not take an attempt's start, so its call must not begin. Closing:
        the run stays as the store holds it, for the next engine; otherwise it fails."""
        if live.settled:
            return  # let go of meanwhile (its fence refused the start)
        if self.closing:
            live.settled = True
            self.end_span(live, "not recorded", error)
            return
        self._attempt_failed(live, error)

    def _begin(self, live: LiveRun, committed: Callable[[BaseException | None], None]) -> None:
        """The attempt begins: record it (on the loop, or in a task's thread with
        `begin_lock` held; see `_begin_in_thread`). `committed` is told once the start
        is in the store: only then does the task's code run, so a crash never leaves an
        execution uncounted (the attempt count never says less than happened).
        """
        run = live.run
        now = time.time()
        run.attempts = live.token
        run.status = _RUNNING
        run.scheduled_at = None
        if run.started_at is None:
            run.started_at = now
        live.began = True
        live.attempt_open = True
        if self.tracer is not None:
            live.span = tracing.start_attempt(self.tracer, run)
        if live.claim_started:  # its claim recorded the start (see started_by_claim)
            live.claim_started = False
            if self._listeners:
                self._emit_threadsafe(RunEventKind.STARTED, run)
            committed(None)
            return
        writer = self._writer
        assert writer is not None
        executor = self.executor_of(live)
        attempt = Attempt(
            run.id,
            run.attempts,
            now,
            worker_id=self.engine.worker_id,
            executor=executor[0],
            dashboard=executor[1],
        )
        inserted = live.inserted
        if inserted is not None:  # not inserted yet: it is, as started (see start_at_insert)
            live.inserted = None
            writer.submit_started(
                run, attempt, functools.partial(self._inserted_started, live, inserted, committed)
            )
            return
        writer.start(
            run.id,
            {
                "status": _RUNNING,
                "attempts": run.attempts,
                "started_at": run.started_at,
                "scheduled_at": None,
            },
            attempt,
            committed,
        )
        if self._listeners:
            self._emit_threadsafe(RunEventKind.STARTED, run)

    def _begin_in_thread(self, live: LiveRun, token: int) -> bool:
        """Called by a task's thread right before the call; False: skip the call. Waits (in
        the thread) until the attempt's start is committed.

        A run waiting for a thread is still `pending`: cancelling it then records no attempt,
        and a crash leaves it to be run, not failed as lost.
        """
        committed = StartCommitted()
        with self.begin_lock:
            if live.settled or live.token != token or self.closing:
                return False
            self._begin(live, committed)
        writer = self._writer
        assert writer is not None
        writer.write_here(committed)
        while not committed.wait(1.0):
            loop = self._loop
            if loop is None or loop.is_closed():
                return False
        if committed.error is not None:
            # Not recorded (the engine is closing and the store is away): skip the call;
            # the run stays as the store holds it, for the next engine.
            return False
        timeout = live.task.options.timeout
        if timeout is not None and self._loop is not None:
            # Its timeout counts from here, not from when it was handed over.
            self._loop.call_soon_threadsafe(self._thread_started, live, token, timeout)
        return True

    async def _execute_async(
        self,
        live: LiveRun,
        context: context_module.Context,
        started: asyncio.Future[None],
        remote: RemoteExecutor | None = None,
    ) -> None:
        context_module.set_current(context)  # this asyncio task's own context copy
        timeout = live.task.options.timeout
        try:
            try:
                await started  # the attempt is on record before the task's code runs
            except StoreError as exc:
                self._start_not_recorded(live, exc)
                return
            if live.span is not None:
                tracing.enter(live.span)  # in this asyncio task's own context copy
            call = live.invoke_async if remote is None else functools.partial(remote.execute, live)
            if timeout is None:
                result = await call(context)
            else:
                try:
                    async with asyncio.timeout(timeout) as scope:
                        result = await call(context)
                except TimeoutError as exc:
                    if scope.expired():
                        raise self._timeout_error(live, timeout) from exc
                    raise
        except asyncio.CancelledError:
            if live.interrupting or live.cancelling:
                self.attempt_stopped(live)
                return
            raise
        except BaseException as exc:
            self._attempt_failed(live, exc)
        else:
            self._attempt_succeeded(live, result)

    def _execute_in_thread(self, live: LiveRun, context: context_module.Context) -> None:
        task = live.task
        call = live.sync_callable(context)
        if self.tracer is not None:  # its span starts in the thread, as the attempt begins
            call = tracing.in_span(lambda: live.span, call)
        token = live.token
        loop = self._loop
        assert loop is not None
        if not task.options.thread_safe:
            live.execution = None
            self._serial_runner(task.name).submit(live, token, context, call)
            return

        def in_thread() -> Any:
            if not self._begin_in_thread(live, token):
                return _SKIPPED
            context_token = context_module.set_current(context)
            try:
                return call()
            finally:
                context_module.reset_current(context_token)

        future = loop.run_in_executor(self._pool, in_thread)
        live.execution = future
        future.add_done_callback(functools.partial(self._thread_done, live, token))

    def _serial_runner(self, name: str) -> SerialRunner:
        runner = self._serial.get(name)
        if runner is None:
            assert self._loop is not None
            runner = self._serial[name] = SerialRunner(
                name, self._loop, self._begin_in_thread, self._serial_outcomes
            )
        return runner

    def _serial_outcomes(self, outcomes: list[Outcome]) -> None:
        for live, attempt, ok, value in outcomes:
            if live.settled or live.token != attempt:
                continue  # timed out or cancelled meanwhile: a late result is discarded
            if live.timer is not None:
                live.timer.cancel()
                live.timer = None
            if ok:
                self._attempt_succeeded(live, value)
            else:
                self._attempt_failed(live, value)

    def _thread_done(self, live: LiveRun, attempt: int, future: asyncio.Future[Any]) -> None:
        if live.settled or live.token != attempt:
            return  # timed out or cancelled already: a late result is discarded
        if live.timer is not None:
            live.timer.cancel()
            live.timer = None
        if not future.cancelled() and future.exception() is None and future.result() is _SKIPPED:
            return  # the engine is closing: the run stays queued in the store
        if future.cancelled():
            self.attempt_stopped(live)
            return
        exc = future.exception()
        if exc is not None:
            self._attempt_failed(live, exc)
        else:
            self._attempt_succeeded(live, future.result())

    def _thread_started(self, live: LiveRun, attempt: int, timeout: float) -> None:
        if live.settled or live.token != attempt or self._loop is None:
            return
        live.timer = self._loop.call_later(timeout, self._thread_timeout, live, attempt, timeout)

    def _thread_timeout(self, live: LiveRun, attempt: int, timeout: float) -> None:
        live.timer = None
        if live.settled or live.token != attempt:
            return
        if live.context is not None:
            live.context._cancel()  # the thread cannot be killed; tell it to stop
        self._attempt_failed(live, self._timeout_error(live, timeout))

    def _timeout_error(self, live: LiveRun, timeout: float) -> TaskTimeoutError:
        run = live.run
        return TaskTimeoutError(
            f"task {run.task!r}: run {run.id} attempt {run.attempts} timed out after {timeout:g} s"
        )

    # outcomes --------------------------------------------------------------------------------
    def _attempt_succeeded(self, live: LiveRun, result: Any) -> None:
        if live.settled:
            return
        if live.cancelling:  # a result arriving after cancel is discarded
            self.attempt_stopped(live)
            return
        kind = type(result)
        if kind not in _JSON_SCALARS:
            try:
                result = to_jsonable_python(result)
            except Exception as exc:
                self._attempt_failed(
                    live,
                    TypeError(
                        f"task {live.task_name!r} returned a value that cannot be stored "
                        f"as JSON: {exc}"
                    ),
                )
                return
        if (kind is str and not result.isascii()) or kind not in _JSON_SCALARS:
            # Text UTF-8 cannot encode (a lone surrogate) would be refused by the store.
            unstorable = unstorable_fields(result)
            if unstorable:
                where = unstorable[0].field.replace("(inputs)", "the value")
                self._attempt_failed(
                    live,
                    UnstorableValueError(
                        f"task {live.task_name!r}: run {live.run.id}: result could not be "
                        f"stored: {where}: {unstorable[0].message}"
                    ),
                )
                return
        self.finish(live, RunStatus.COMPLETED, result=result)

    def _attempt_failed(self, live: LiveRun, exc: BaseException) -> None:
        if live.settled:
            return
        if live.cancelling:
            self.attempt_stopped(live)
            return
        run = live.run
        policy = live.task.options.retry_policy
        if isinstance(exc, Retry):
            retry = run.attempts < run.max_attempts
        else:
            retry = run.attempts < run.max_attempts and isinstance(exc, policy.retry_on)
        if isinstance(exc, TaskReportedFailure):
            error = ErrorInfo(exc.error_type, str(exc), None, retry)
        else:
            error = ErrorInfo.from_exception(exc, retryable=retry)
        if live.span is not None:
            self.end_span(live, "failed", exc)
        if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit inside a task
            retry = False
        if not retry:
            self.finish(live, RunStatus.FAILED, error=error)
            return
        now = time.time()
        live.settled = True
        live.attempt_open = False
        live.began = False  # waiting for the retry: cancelling it now records no attempt
        delay = (
            exc.delay
            if isinstance(exc, Retry) and exc.delay is not None
            else policy.delay(run.attempts)
        )
        run.status = _PENDING
        run.error = error
        run.scheduled_at = now + delay
        writer = self._writer
        assert writer is not None and self._loop is not None
        writer.update_attempt(
            run.id, run.attempts, {"finished_at": now, "status": "failed", "error": error}
        )
        writer.update_run(
            run.id, {"status": _PENDING, "error": error, "scheduled_at": run.scheduled_at}
        )
        if self._listeners or self.end_listeners:
            self.emit(RunEventKind.RETRYING, run, attempt_ended=True)
        self.release(live)
        live.timer = self._loop.call_later(delay, self._requeue, live)

    def _requeue(self, live: LiveRun) -> None:
        live.timer = None
        if not live.dropped and not self.closing:
            self.queue.push(live)

    def attempt_stopped(self, live: LiveRun) -> None:
        """The attempt ended because we stopped it: cancelled, or interrupted by shutdown."""
        if live.settled:
            return
        if live.interrupting:
            self.interrupt(live)
            return
        self.finish(
            live,
            RunStatus.CANCELLED,
            error=ErrorInfo("Cancelled", f"run {live.run.id} was cancelled"),
        )

    def interrupt(self, live: LiveRun) -> None:
        """Shutdown stopped the attempt: queue the run again without using up a retry."""
        if live.settled:
            return
        live.settled = True
        if not live.dispatched:  # started by its claim and still queued: it never runs here
            live.dropped = True
            live.claim_started = False
        run = live.run
        now = time.time()
        run.status = _PENDING
        run.max_attempts += 1
        writer = self._writer
        assert writer is not None
        error = ErrorInfo(
            "Interrupted",
            f"the engine {self.engine.worker_id} shut down during attempt {run.attempts}",
        )
        writer.update_attempt(
            run.id, run.attempts, {"finished_at": now, "status": "interrupted", "error": error}
        )
        writer.update_run(
            run.id, {"status": _PENDING, "scheduled_at": None, "max_attempts": run.max_attempts}
        )
        live.interrupting = True
        if live.span is not None:
            self.end_span(live, "interrupted")
        if live.execution is not None and not live.execution.done():
            live.execution.cancel()

    def finish(
        self,
        live: LiveRun,
        status: RunStatus,
        *,
        result: Any = None,
        error: ErrorInfo | None = None,
    ) -> None:
        run = live.run
        now = time.time()
        live.settled = True
        live.dropped = True
        run.status = status
        run.result = result
        run.error = error
        run.finished_at = now
        writer = self._writer
        assert writer is not None
        attempt: int | None = None
        attempt_fields: dict[str, Any] | None = None
        if live.attempt_open:
            live.attempt_open = False
            attempt = run.attempts
            attempt_fields = {"finished_at": now, "status": status.value, "error": error}
            if live.span is not None:
                self.end_span(live, status.value, error if status is RunStatus.FAILED else None)
        writer.finish(
            run.id,
            {"status": status, "result": result, "error": error, "finished_at": now},
            attempt,
            attempt_fields,
            live.on_final_commit,
            task=run.task,
            started_at=run.started_at,
            record=run,
        )
        if live.timer is not None:
            live.timer.cancel()
            live.timer = None
        self.release(live)
        if self._live.get(run.id) is live:
            # Its slot is free from here: a claim asked for now is committed with this
            # end (one commit for both, where waiting for the end's commit made two).
            self._ending.add(run.id)
            claims = self._claims
            if claims is not None and claims.productive:
                claims.wake()
        if live.on_finish is not None:
            # A workflow step: its dependents may start now. Their inserts queue behind
            # this end, so no write that depends on this result commits before it.
            live.on_finish(live)

    def end_span(
        self, live: LiveRun, outcome: str, error: BaseException | ErrorInfo | None = None
    ) -> None:
        """End the span of `live`'s attempt (once: a later outcome finds none)."""
        span = live.span
        if span is not None:
            live.span = None
            tracing.end(span, outcome, error=error)

    def release(self, live: LiveRun) -> None:
        if live.dispatched:
            live.dispatched = False
            self.queue.release(live)

    def on_final_commit(self, live: LiveRun, error: BaseException | None) -> None:
        run_id = live.run.id
        if isinstance(error, LeaseLostError):
            return  # not ours any more: let go of already (see `Engine._let_go`)
        if isinstance(error, ReplacedOutcome):  # stored as a failure: so is our record
            run = live.run
            run.status, run.result, run.error = RunStatus.FAILED, None, error.error
            error = None
        self._live.pop(run_id, None)
        self._ending.discard(run_id)
        writer = self._writer
        if writer is not None:
            writer.fences.pop(run_id, None)
        if error is None:
            finished = self._finished
            finished[run_id] = live.run
            if len(finished) > FINISHED_CACHE_SIZE:
                finished.popitem(last=False)
            options = live.task.options
            if options.on_success is not None or options.on_failure is not None:
                self.engine._follow_up(live.run, options)
        waiters = live.waiters
        if waiters:
            value = live.run if error is None else error
            for waiter in waiters:
                settle(waiter, value)
        if self._listeners or self.end_listeners:
            # `began` is still what it was as the run ended: an attempt was executing.
            self.emit(RunEventKind.FINISHED, live.run, attempt_ended=live.began)

    # progress, logs, events ----------------------------------------------------------------
    def on_progress(self, live: LiveRun, fields: dict[str, Any]) -> None:
        writer = self._writer
        if writer is not None:
            writer.update_run(live.run.id, fields)
        if self._listeners:
            self._emit_threadsafe(RunEventKind.PROGRESS, live.run)

    def on_log(self, live: LiveRun, line: LogLine) -> None:
        writer = self._writer
        if writer is not None:
            writer.log(line)
        if self._listeners:
            self._emit_threadsafe(RunEventKind.LOG, live.run, line)

    def _emit_threadsafe(self, kind: RunEventKind, run: Run, line: LogLine | None = None) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self.emit(kind, run, line)
        else:
            loop.call_soon_threadsafe(self.emit, kind, run, line)

    def emit(
        self,
        kind: RunEventKind,
        run: Run,
        line: LogLine | None = None,
        *,
        remote: bool = False,
        attempt_ended: bool = False,
        record: str | None = None,
    ) -> None:
        if self._listeners:
            # A run read from the store is the reader's own: only the engine's are copied.
            told = run if remote else run.copy()
            event = RunEvent(kind, told, line, remote, attempt_ended, record)
            for listener in list(self._listeners):
                try:
                    listener(event)
                except Exception:
                    logger.exception("taskloom: a run listener failed")
        if self.end_listeners and kind in _ENDS and not remote:
            # The engine's own record, not a copy: these listeners read it at once.
            event = RunEvent(kind, run, None, False, attempt_ended)
            for listener in list(self.end_listeners):
                try:
                    listener(event)
                except Exception:
                    logger.exception("taskloom: a run listener failed")


class StartCommitted(threading.Event):
    """What a task's thread waits on until its attempt's start is committed. The writer
    calls it from its own thread (`threadsafe`), not through the event loop."""

    threadsafe = True

    def __init__(self) -> None:
        super().__init__()
        self.error: BaseException | None = None

    def __call__(self, error: BaseException | None) -> None:
        self.error = error
        self.set()
