"""The Dask executor: the calls of `@task(executor="dask")` tasks made on a Dask cluster.

Only the call goes to Dask. The engine that holds the run (a `taskloom worker` with
`--dask`, a server with `TASKLOOM_DASK_ADDRESS`, or an `Engine(dask=...)`) claims it,
records its attempt as begun, then submits the function and its inputs with
`distributed`'s asyncio `Client`, on the engine's own loop; what comes back is recorded
through the engine's fenced writes, as for a call made in the engine. Dask workers need
the task's code (importable, or shipped by value as cloudpickle does for `__main__` and
for functions it cannot find by name) and taskloom itself; no database, no configuration.

- Each attempt is its own Dask key (`<task>-<run id>-<attempt>`), so a retry is a new
  computation; the future is released as soon as its result is read.
- The calls begun in one pass of the engine's loop (the runs whose starts one commit
  recorded) are sent to the scheduler together, as one graph (`Client.map`): the
  scheduler's cost is per graph more than per call. A batch the client refuses (an input
  that cannot be pickled, say) is sent again call by call, so that only the run at fault
  fails.
- The task's exception is the attempt's error, with the traceback Dask brings back. A Dask
  worker that dies holding the call (`KilledWorker`) or a scheduler connection lost while
  waiting fails the attempt with a retryable `WorkerLostError`; the next attempt waits for
  the scheduler to be back. Dask is asked to give up on a call at once when its worker
  dies (`distributed.scheduler.allowed-failures` 0 on the clusters taskloom starts; set it
  on a scheduler of your own), so that every execution is an attempt on record.
- A timeout or a cancel ends the attempt here at once and cancels the future: a call not
  started on a worker never starts; one running in a worker's thread runs to its end
  (Python cannot stop a thread) and what it returns is discarded.
- Lines logged (`context.logger`, the `logging` module) and progress reported while the
  call runs are sent as Dask events (`Worker.log_event`) on a topic of this engine's, and
  stored with the run as they arrive.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import sys
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from .. import context as context_module
from ..exceptions import ExecutorUnavailableError, TaskDefinitionError, WorkerLostError

if TYPE_CHECKING:
    from ..engine.live import LiveRun
    from ..tasks.definition import FunctionTask, TaskDefinition

__all__ = [
    "DASK_ADDRESS_ENV",
    "DaskExecutor",
    "RemoteCall",
    "call_on_worker",
    "check_shippable",
]

logger = logging.getLogger("taskloom.dask")

#: The environment variable `taskloom serve` and `taskloom worker` read the scheduler from.
DASK_ADDRESS_ENV = "TASKLOOM_DASK_ADDRESS"
#: Seconds to wait for the scheduler at start, and for it to be back after a loss.
CONNECT_TIMEOUT = 10.0
#: Runs whose events are still taken after they ended (a line may arrive after the result).
_RECENT = 10_000


@dataclass(frozen=True, slots=True)
class RemoteCall:
    """What a Dask worker needs besides the function and its inputs."""

    run_id: str
    task: str
    attempt: int
    timestamp: int
    topic: str
    context_param: str | None
    state: Any  # the task's state class, when it asks for `state`


class _WorkerSink:
    """A run's reports on a Dask worker, sent to the engine as Dask events."""

    def __init__(self, call: RemoteCall) -> None:
        from distributed import get_worker

        self._worker = get_worker()
        self._call = call

    def report_progress(self, fraction: float, message: str | None) -> None:
        call = self._call
        self._worker.log_event(
            call.topic,
            {"run": call.run_id, "attempt": call.attempt, "progress": fraction, "text": message},
        )

    def report_log(self, level: str, message: str) -> None:
        call = self._call
        self._worker.log_event(
            call.topic,
            {"run": call.run_id, "attempt": call.attempt, "level": level, "text": message},
        )


_states: dict[Any, Any] = {}
_states_lock = threading.Lock()
_capture_lock = threading.Lock()
_capturing = False


@dataclass(frozen=True, slots=True)
class TaskRef:
    """A task's function by name, for a worker that can import its module."""

    module: str
    qualname: str
    task: str

    def resolve(self) -> Any:
        found = _resolved.get(self)
        if found is not None:
            return found
        try:
            obj: Any = importlib.import_module(self.module)
        except ImportError as exc:
            raise TaskDefinitionError(
                f"task {self.task!r}: its module {self.module!r} cannot be imported on this "
                f"Dask worker ({exc}); put its file on the workers' PYTHONPATH, or install "
                "its package there"
            ) from exc
        for part in self.qualname.split("."):
            obj = getattr(obj, part)
        fn = getattr(obj, "fn", obj)  # a `@task` object holds the function
        _resolved[self] = fn
        return fn


_resolved: dict[TaskRef, Any] = {}


_refs: weakref.WeakKeyDictionary[Any, TaskRef] = weakref.WeakKeyDictionary()


def shipped(task: TaskDefinition) -> Any:
    """What is sent for `task`'s function (see `_ship`). A name is looked up once per
    task, and the same `TaskRef` sent with every call: a batch pickles it once."""
    ref = _refs.get(task)
    if ref is not None:
        return ref
    found = _ship(task)
    if isinstance(found, TaskRef):
        _refs[task] = found
    return found


def _ship(task: TaskDefinition) -> Any:
    """What is sent for `task`'s function: its name when this process imported it by name
    from a module (a file given by path is imported under its stem), so the workers
    import it too; the function itself otherwise (`__main__`, a notebook), which
    cloudpickle sends by value."""
    if task.kind == "command":  # a command, run where the call is made
        from ..packages.command import CommandCall, CommandTask

        return CommandCall.of(cast(CommandTask, task))
    fn = cast("FunctionTask[..., Any]", task).fn
    module = sys.modules.get(task.module or "")
    if module is None or task.module == "__main__" or "<locals>" in task.qualname:
        return fn
    obj: Any = module
    for part in task.qualname.split("."):
        obj = getattr(obj, part, None)
    if obj is not task and obj is not fn:
        return fn  # not found under its name: sent by value
    return TaskRef(str(task.module), task.qualname, task.name)


def call_on_worker(fn: Any, kwargs: dict[str, Any], call: RemoteCall) -> Any:
    """Run on a Dask worker: the task's function, with the run's context set so that what
    it logs and reports reaches the engine."""
    global _capturing
    if isinstance(fn, TaskRef):
        fn = fn.resolve()
    with _capture_lock:
        if not _capturing:  # the worker's logging records reach the running call's sink
            context_module.install_log_capture()
            _capturing = True
    context = context_module.Context(
        run_id=call.run_id,
        task=call.task,
        attempt=call.attempt,
        timestamp=call.timestamp,
        sink=_WorkerSink(call),
    )
    kwargs = dict(kwargs)
    if call.context_param is not None:
        kwargs[call.context_param] = context
    if call.state is not None:
        with _states_lock:  # one state object per task in each worker process
            state = _states.get(call.state)
            if state is None:
                state = _states[call.state] = call.state()
        kwargs["state"] = state
    token = context_module.set_current(context)
    try:
        if inspect.iscoroutinefunction(fn):
            return asyncio.run(fn(**kwargs))
        return fn(**kwargs)
    finally:
        context_module.reset_current(token)


def _with_allowed_failures(factory: Any) -> Any:
    import dask

    # A call whose worker dies is not run again by Dask: taskloom retries it, as an
    # attempt on record.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        return factory()


@dataclass(slots=True)
class _Batch:
    """Calls waiting for the end of the loop's pass, to be sent to the scheduler together."""

    client: Any
    fns: list[Any] = field(default_factory=list)
    kwargs: list[dict[str, Any]] = field(default_factory=list)
    calls: list[RemoteCall] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    waiters: list[asyncio.Future[Any]] = field(default_factory=list)  # each call's Dask future


class DaskExecutor:
    """Calls made on a Dask cluster, for one engine. `address` is a scheduler address
    (`tcp://host:8786`), `local` for a `distributed.LocalCluster` sized to this machine, or
    a `distributed.Client` or cluster object made by the caller (a `dask_jobqueue`
    cluster, say)."""

    name = "dask"

    def __init__(self, address: Any, *, topic: str, connect_timeout: float | None = None):
        self.address = address
        self.topic = topic
        self.connect_timeout = CONNECT_TIMEOUT if connect_timeout is None else connect_timeout
        self._client: Any = None
        self._cluster: Any = None  # one this executor started (`local`), closed with it
        # What a client connects to: the scheduler's address, and the security settings of
        # a cluster object given (its own thread's loop is not the engine's, so a client
        # on the object itself would not be asynchronous here).
        self._target: Any = address
        self._security: Any = None
        self._dashboard: str | None = None  # the Dask dashboard, once it answered
        self._owns_client = True
        self._runs: OrderedDict[str, LiveRun] = OrderedDict()
        self._comm: Any = None  # the scheduler connection the topic was subscribed on
        self._closing = False
        self._cancels: set[asyncio.Future[None]] = set()  # cancels of futures, under way
        self._batch: _Batch | None = None  # calls to send at the end of this pass of the loop

    def __repr__(self) -> str:
        return f"DaskExecutor({self.where!r})"

    @property
    def where(self) -> str:
        """The scheduler's address, as the records and the dashboard show it."""
        client = self._client
        if client is not None and client.scheduler is not None:
            return str(client.scheduler.address)
        return str(self.address)

    @property
    def dashboard_link(self) -> str | None:
        """The Dask dashboard's address, when the scheduler serves one (it answered when
        the executor connected); None otherwise."""
        return self._dashboard

    # connection ---------------------------------------------------------------------------
    async def start(self) -> None:
        from distributed import Client, LocalCluster

        address = self.address
        try:
            if isinstance(address, Client):
                self._client, self._owns_client = address, False
            else:
                if address == "local":
                    # Its dashboard on a free port (the default one may be taken).
                    self._cluster = await _with_allowed_failures(
                        lambda: LocalCluster(asynchronous=True, dashboard_address=":0")  # type: ignore[no-untyped-call]
                    )
                    address = self._cluster
                if not isinstance(address, str):  # a cluster object: its scheduler
                    self._target = address.scheduler_address
                    self._security = getattr(address, "security", None)
                elif not address.strip():
                    raise ExecutorUnavailableError("the Dask scheduler address is empty")
                self._client = await self._connect()
        except ExecutorUnavailableError:
            raise
        except (OSError, TimeoutError) as exc:
            await self.close()
            raise ExecutorUnavailableError(
                f"cannot reach the Dask scheduler at {self.address}: {exc}"
            ) from exc
        self._subscribe()
        self._dashboard = await _answering(self._client)
        logger.info("taskloom: calls of dask tasks go to the scheduler at %s", self.where)

    async def _connect(self) -> Any:
        from distributed import Client

        return await Client(  # type: ignore[no-untyped-call]
            self._target,
            asynchronous=True,
            timeout=self.connect_timeout,
            security=self._security,
        )

    async def close(self) -> None:
        self._closing = True
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            try:
                await client.close()
            except Exception:  # the scheduler is gone already
                logger.debug("taskloom: closing the Dask client failed", exc_info=True)
        cluster, self._cluster = self._cluster, None
        if cluster is not None:
            await cluster.close()

    def _subscribe(self) -> None:
        client = self._client
        self._comm = client.scheduler_comm
        client.subscribe_topic(self.topic, self._on_event)

    async def _connected(self) -> Any:
        """The client, once it is connected to the scheduler (waiting while it reconnects;
        a client that gave up is made again)."""

        deadline = time.monotonic() + self.connect_timeout
        while True:
            client = self._client
            if self._closing or client is None:
                raise WorkerLostError("the Dask executor is closed")
            if client.status == "running" and client.scheduler_comm is not None:
                if client.scheduler_comm is not self._comm:  # a new connection
                    self._subscribe()
                return client
            if client.status in ("closed", "failed") and self._owns_client:
                try:
                    self._client = await self._connect()
                except (OSError, TimeoutError):
                    pass
                else:
                    continue
            if time.monotonic() > deadline:
                raise WorkerLostError(
                    f"the Dask scheduler at {self.where} is unreachable "
                    f"(waited {self.connect_timeout:g} s)"
                )
            await asyncio.sleep(0.1)

    # calls --------------------------------------------------------------------------------
    async def execute(self, live: LiveRun, context: Any) -> Any:
        from distributed import KilledWorker

        task = live.task
        check_shippable(task)
        client = await self._connected()
        run = live.run
        specials = task.specials
        kwargs = live.function_kwargs(context, here=False)
        call = RemoteCall(
            run_id=run.id,
            task=task.name,
            attempt=context.attempt,
            timestamp=context.timestamp,
            topic=self.topic,
            context_param=specials.context or None,
            state=specials.state,
        )
        self._runs[run.id] = live
        self._runs.move_to_end(run.id)
        while len(self._runs) > _RECENT:
            self._runs.popitem(last=False)
        key = f"{task.name}-{run.id}-{context.attempt}"
        waiter = self._send(client, shipped(task), kwargs, call, key)
        try:
            future = await waiter
        except asyncio.CancelledError:
            # Still in its batch: it is never sent. Sent meanwhile: cancel it there.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                future = waiter.result()
                self._cancel(client, future)
                future.release()
            raise
        try:
            return await future
        except asyncio.CancelledError:
            self._cancel(client, future)
            raise
        except KilledWorker as exc:
            raise WorkerLostError(
                f"the Dask worker executing attempt {context.attempt} of run {run.id} "
                f"(task {task.name!r}) died: {exc}"
            ) from None
        except Exception as exc:
            if _lost_scheduler(exc):
                raise WorkerLostError(
                    f"the connection to the Dask scheduler at {self.where} was lost during "
                    f"attempt {context.attempt} of run {run.id} (task {task.name!r})"
                ) from None
            raise
        finally:
            future.release()

    def _send(
        self, client: Any, fn: Any, kwargs: dict[str, Any], call: RemoteCall, key: str
    ) -> asyncio.Future[Any]:
        """The call, added to this pass's batch; the future returned is given the call's
        Dask future once the batch is sent (on the next pass of the loop)."""
        batch = self._batch
        if batch is not None and batch.client is not client:  # reconnected meanwhile
            self._flush()
            batch = None
        loop = asyncio.get_running_loop()
        if batch is None:
            batch = self._batch = _Batch(client)
            loop.call_soon(self._flush)
        waiter: asyncio.Future[Any] = loop.create_future()
        batch.fns.append(fn)
        batch.kwargs.append(kwargs)
        batch.calls.append(call)
        batch.keys.append(key)
        batch.waiters.append(waiter)
        return waiter

    def _flush(self) -> None:
        """Send the batch's calls that still wait (a cancelled one is left out), as one
        graph. A graph the client refuses (a call that cannot be pickled) is sent again
        call by call, each a graph of its own, so that only the call at fault fails: not
        with `Client.submit`, which takes a key the refused graph still holds for a call
        already sent, and never sends it."""
        batch, self._batch = self._batch, None
        if batch is None:
            return
        waiting = [i for i, waiter in enumerate(batch.waiters) if not waiter.done()]
        if not waiting:
            return
        try:
            self._map(batch, waiting)
        except Exception as exc:
            if len(waiting) == 1:
                batch.waiters[waiting[0]].set_exception(exc)
                return
            logger.debug("taskloom: a batch of Dask calls was refused", exc_info=True)
        else:
            return
        for i in waiting:
            try:
                self._map(batch, [i])
            except Exception as exc:
                batch.waiters[i].set_exception(exc)

    @staticmethod
    def _map(batch: _Batch, indexes: list[int]) -> None:
        futures = batch.client.map(
            call_on_worker,
            [batch.fns[i] for i in indexes],
            [batch.kwargs[i] for i in indexes],
            [batch.calls[i] for i in indexes],
            key=[batch.keys[i] for i in indexes],
            pure=False,
        )
        for i, future in zip(indexes, futures, strict=True):
            batch.waiters[i].set_result(future)

    def _cancel(self, client: Any, future: Any) -> None:
        async def cancel() -> None:
            try:
                await client.cancel([future], reason="taskloom: the attempt ended")
            except Exception:  # the scheduler is gone: nothing left to cancel there
                logger.debug("taskloom: cancelling a Dask future failed", exc_info=True)

        task = asyncio.ensure_future(cancel())
        self._cancels.add(task)
        task.add_done_callback(self._cancels.discard)

    def _on_event(self, event: tuple[float, Any]) -> None:
        """A run's log line or progress, from the worker executing it."""
        _, msg = event
        if not isinstance(msg, dict):
            return
        live = self._runs.get(str(msg.get("run")))
        if live is None or msg.get("attempt") != live.run.attempts:
            return
        if "progress" in msg:
            if not live.settled:
                live.report_progress(float(msg["progress"]), msg.get("text"))
            return
        live.report_log(str(msg.get("level", "INFO")), str(msg.get("text", "")))


_problems: weakref.WeakKeyDictionary[Any, str | None] = weakref.WeakKeyDictionary()


def check_shippable(task: TaskDefinition) -> None:
    """Raise `TaskDefinitionError` naming `task` if its function cannot be pickled for a
    Dask worker (looked at once per task; no cluster needed, so a submitter checks too)."""
    try:
        problem = _problems[task]
    except KeyError:
        try:
            import cloudpickle  # type: ignore[import-untyped]
        except ImportError:  # no Dask here: the engine that executes it looks again
            return
        try:
            cloudpickle.dumps(shipped(task))
            problem = None
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
        _problems[task] = problem
    if problem is not None:
        raise TaskDefinitionError(
            f"task {task.name!r}: its function cannot be sent to Dask workers ({problem}); "
            "define it at module level, in a module the workers can import, and keep "
            "unpicklable objects (locks, connections) out of what it refers to"
        )


async def _answering(client: Any) -> str | None:
    """The client's dashboard address if a page is served there: a scheduler reports one
    even when it serves none (`--no-dashboard`, or no bokeh), and its page is then a 404."""
    import httpx

    try:
        link = str(client.dashboard_link)
    except Exception:  # no HTTP server at all
        return None
    try:
        async with httpx.AsyncClient(timeout=2.0) as http:
            answer = await http.get(link)
    except httpx.HTTPError:
        return None
    return link if answer.status_code == 200 else None


def _lost_scheduler(exc: BaseException) -> bool:
    from distributed.client import FutureCancelledError

    if isinstance(exc, FutureCancelledError):
        return exc.reason == "scheduler-connection-lost" or "connection" in str(exc)
    from distributed.comm.core import CommClosedError

    return isinstance(exc, CommClosedError | OSError)
