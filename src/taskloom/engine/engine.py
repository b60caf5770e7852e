"""The engine: accepts runs, executes them, and records every step in the store.

`Engine` holds its parts: `RunExecution` executes the runs it holds, `RunControl` stops
them when cancelled, keeps its lease and gives back the runs of dead workers, `Claims`
takes runs from the shared queue.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeGuard, TypeVar, cast

from .. import context as context_module
from ..aio import settle
from ..exceptions import (
    DuplicateTaskError,
    EngineClosedError,
    FieldError,
    InputValidationError,
    RunNotFoundError,
    StoreError,
    TaskloomError,
    UnknownTaskError,
    WaitTimeoutError,
)
from ..executors.dask import check_shippable
from ..observability import tracing
from ..runs import Attempt, ErrorInfo, LogLine, Run, RunEventKind, RunStatus, new_run_id
from ..store import ServiceAttributeChange, ServiceLogLine, Store, open_store
from ..store.base import LEASE_TTL, RunStats, WorkerRecord
from ..store.stats import window_span
from ..tasks.definition import TaskDefinition
from ..tasks.options import TaskOptions, check_queue_name
from ..tasks.registry import Registry, TaskLike, as_task, default_registry
from ..tasks.signature import dump_special, validate_special
from ..tasks.validation import refuse_unstorable
from .claims import Claims
from .control import RunControl
from .execution import Listener, RunEvent, RunExecution
from .gc_tuning import raise_gc_threshold, restore_gc_threshold
from .live import LiveRun
from .remote import RemoteEvents
from .steps import EngineWorkflowHost
from .writer import BatchWriter

logger = logging.getLogger("taskloom.engine")

#: How long the record of a lost worker (its process gone) is kept: a week.
LOST_WORKER_RETENTION = 7 * 24 * 3600.0
#: Runs submitted unclaimed whose validated inputs are kept for when they are claimed here.
UNCLAIMED_KEPT = 50_000

if TYPE_CHECKING:
    from datetime import datetime

    from opentelemetry.trace import Tracer

    from ..executors.dask import DaskExecutor
    from ..schedules.book import ScheduleBook
    from ..schedules.hooks import HookBook
    from ..schedules.ticker import Ticker
    from ..services.definition import Service, ServiceDefinition
    from ..services.status import ServiceAttributes, ServiceStatus
    from ..services.supervisor import Supervisor
    from ..streams import Bus, Deployment, DeploymentStatus, Pipeline
    from ..workflows import Workflow, WorkflowLimits

__all__ = ["Engine", "RunEvent"]

T = TypeVar("T")

_RUNNING = RunStatus.RUNNING


@functools.cache
def _workflow_class() -> type:
    # Imported when first needed, not at the top: the engine does not depend on the
    # workflows package (which depends on it).
    from ..workflows.model import Workflow

    return Workflow


def _is_workflow(task: Any) -> TypeGuard[Workflow]:
    return isinstance(task, _workflow_class())


def _new_worker_id() -> str:
    """This process's next worker id: its host, its pid and a random part."""
    return f"{socket.gethostname()[:24]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Engine:
    """Accepts runs, executes them, and keeps them in the store.

    Use it as `async with Engine() as engine:`. `database_url` defaults to a SQLite file
    at `.taskloom/taskloom.db` under the working directory.

    The database is the queue. A run this engine can start soon is held by it from the
    commit that records it; any other waits unclaimed, and any live worker serving its
    task and queue may claim it, this engine included. Several engines (processes, hosts)
    on one database share the work; a run of a dead one is given back and done by another.

    - `worker`: execute runs (default). False: submit, observe and control only; this
      engine claims nothing and every run it submits waits for a worker.
    - `queues`: the queues this engine takes runs from; None (default): the queues of the
      tasks it serves (each task's option `queue`, `"default"` unless set) and those it
      submits to.
    - `name`: a name for this worker in `taskloom workers`.
    - `lease_ttl`: seconds this worker's lease lasts on the database's clock; it is
      renewed with every heartbeat. A worker whose lease ran out (paused, cut off) is dead
      to the others: its runs are given back and its late writes refused.
    - `poll_interval`: seconds between claims when nothing woke this engine (a backstop:
      other processes' commits wake it through the store's change feed).
    - `concurrency`: runs executing at once in this engine.
    - `threads`: threads for sync functions marked `thread_safe`.
    - `recover`: claim runs others submitted and give back the runs of dead workers.
      False (one-shot commands): this engine executes only what it submits itself.
    - `shutdown_grace`: seconds `close()` lets executing runs finish; runs still executing
      then are interrupted and queued again for the next engine, without using a retry.
    - `cancel_grace`: seconds a class task whose `cancel()` was called may take to return
      before it is stopped.
    - `lost_worker_retention`: seconds the record of a lost worker (its process gone,
      holding no unfinished run) is kept before it is pruned (default: a week).
    - `gc_threshold`: while the engine runs, the first threshold of Python's cyclic garbage
      collector is at least this, and the middle one at least `gc_tuning.MIDDLE` (see
      `engine/gc_tuning.py` for why and what it costs); None leaves the collector alone.
    - `services`: services to supervise (see `register_service`); the engine's `Supervisor`
      keeps their state in the engine's store and stops them when the engine closes.
    - `workflow_limits`: the most steps in one workflow and items in one map it accepts
      (default `WorkflowLimits()`: 10,000 steps, 100,000 items).
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        store: Store | None = None,
        concurrency: int = 1000,
        threads: int | None = None,
        recover: bool = True,
        heartbeat_interval: float = 1.0,
        shutdown_grace: float = 5.0,
        cancel_grace: float = 5.0,
        gc_threshold: int | None = 50_000,
        tasks: Iterable[Any] = (),
        services: Iterable[ServiceDefinition | type[Service]] = (),
        workflow_limits: WorkflowLimits | None = None,
        lost_worker_retention: float = LOST_WORKER_RETENTION,
        worker: bool = True,
        queues: Iterable[str] | None = None,
        name: str | None = None,
        lease_ttl: float = LEASE_TTL,
        poll_interval: float = 1.0,
        dask: Any = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if lease_ttl <= heartbeat_interval:
            raise ValueError(
                f"lease_ttl ({lease_ttl:g} s) must be longer than heartbeat_interval "
                f"({heartbeat_interval:g} s)"
            )
        self.worker = worker
        self.name = name
        self._queues: set[str] | None = (
            None if queues is None else {check_queue_name(q, "queue") for q in queues}
        )
        self._submitted_queues: set[str] = set()
        # The queues other live workers serve (read with every heartbeat): a run of a
        # queue nobody else serves is held here even when it cannot start at once.
        self._peer_queues: frozenset[str] = frozenset()
        self._queues_on_record: list[str] = []
        self.lease_ttl = lease_ttl
        self._poll_interval = poll_interval
        self._reserved = 0  # runs taken at submit whose insert is not committed yet
        self._claiming = 0  # slots kept for a claim that is not committed yet
        # Runs this engine submitted unclaimed, validated already: claimed back, they are
        # not validated again. Bounded; another worker may take them.
        self._unclaimed: OrderedDict[str, LiveRun] = OrderedDict()
        self._claims: Claims | None = None
        self._remote_events: RemoteEvents | None = None
        self._ticker: Ticker | None = None  # fires schedules (a long-running engine's)
        self.database_url = database_url
        self._store_given = store
        self.store: Store | None = store
        self.registry = Registry()
        self.worker_id = _new_worker_id()
        self.concurrency = concurrency
        if workflow_limits is None:
            from ..workflows.limits import WorkflowLimits

            workflow_limits = WorkflowLimits()
        self.workflow_limits = workflow_limits
        self._threads = threads or min(32, (os.cpu_count() or 1) + 4)
        self._recover_enabled = recover
        self.lost_worker_retention = lost_worker_retention
        self.shutdown_grace = shutdown_grace
        self.cancel_grace = cancel_grace
        self._gc_threshold = gc_threshold
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer: BatchWriter | None = None
        self._live: dict[str, LiveRun] = {}
        # Runs held whose end is queued to the writer and not committed yet: they execute
        # no more, so their slots are free (a claim sent now rides in their end's commit).
        self._ending: set[str] = set()
        self._keys: dict[str, LiveRun] = {}
        self._resolved: dict[Any, TaskDefinition] = {}
        # Runs that finished lately, as committed: `wait` right after the end of a run
        # needs no read from the store. Bounded; the store stays the source of truth.
        self._finished: OrderedDict[str, Run] = OrderedDict()
        self._listeners: list[Listener] = []
        self._io: ThreadPoolExecutor | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._background: set[asyncio.Task[Any]] = set()
        # Spans of submits, attempts and steps; None (no span, one check per run) without
        # OpenTelemetry's SDK, and until a tracer provider is set (`_look_for_tracer`).
        self._tracer: Tracer | None = None
        # The part that executes the runs held here, and its ready queue (bound here:
        # a run held is pushed to it on every submit and claim).
        self._execution = RunExecution(
            self,
            concurrency=concurrency,
            live=self._live,
            ending=self._ending,
            finished=self._finished,
            listeners=self._listeners,
        )
        self._queue = self._execution.queue
        #: Where the calls of `executor="dask"` tasks go (see `taskloom.executors.dask`):
        #: a scheduler address, `local`, or a Client or cluster; None: made here instead.
        self.dask_address = dask
        self._started = False
        self._closing = False
        self._supervisor: Supervisor | None = None
        self._services: dict[str, ServiceDefinition] = {}
        self._host = EngineWorkflowHost(self)  # what the workflows driven here see of it
        self._workflows = self._host.executions  # workflow runs driven here, by id
        # The part that cancels runs, renews the lease and gives back dead workers' runs.
        self._control = RunControl(
            self,
            self._execution,
            live=self._live,
            workflows=self._workflows,
            recover=recover,
            heartbeat_interval=heartbeat_interval,
            in_thread=self._in_thread,
            spawn=self._spawn,
            lease_lost=self._lease_lost,
            refresh_peers=self._refresh_peers,
            recover_workflows=self._recover_workflows,
            wake_claims=self._wake_claims,
            look_for_tracer=self._look_for_tracer,
        )
        self._passed_over: set[str] = set()  # workflow runs that cannot be resumed here
        self._deployments: set[Deployment] = set()
        for item in tasks:
            self.register(item)
        for service in services:
            self.register_service(service)

    @property
    def dask(self) -> DaskExecutor | None:
        """The executor of `executor="dask"` tasks' calls, while the engine is started with
        a Dask scheduler (`dask=`)."""
        return cast("DaskExecutor | None", self._execution.remote.get("dask"))

    # lifecycle -----------------------------------------------------------------------------
    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self._started:
            return
        self._loop = asyncio.get_running_loop()
        if self.dask_address is not None:
            # First: a scheduler that cannot be reached stops the start before anything
            # else is made.
            from ..executors.dask import DaskExecutor

            executor = DaskExecutor(self.dask_address, topic=f"taskloom-{self.worker_id}")
            await executor.start()
            self._execution.remote[executor.name] = executor
        self._io = ThreadPoolExecutor(4, thread_name_prefix="taskloom-store")
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="taskloom-run")
        try:
            if self.store is None:
                self.store = await self._in_thread(open_store, self.database_url)
            store = self.store
            await self._register_worker()
            await self._refresh_peers()
        except BaseException:
            # Nothing started: give back what was made (a store we opened, the threads).
            if self._store_given is None and self.store is not None:
                await self._in_thread(self.store.close)
                self.store = None
            self._io.shutdown(wait=False)
            self._pool.shutdown(wait=False)
            await self._execution.close_remote()
            raise
        self._writer = BatchWriter(store, self._loop)
        self._writer.on_rejected = self._fenced_out
        self._writer.start_thread()
        context_module.install_log_capture()
        if self._gc_threshold is not None:
            raise_gc_threshold(self._gc_threshold)
        from ..services.supervisor import Supervisor

        self._supervisor = Supervisor(store=store)
        for definition in self._services.values():
            await self._in_thread(self._supervisor.register, definition)
        self._started = True
        self._look_for_tracer()
        self._claims = Claims(self, self._poll_interval)
        self._execution.start(
            loop=self._loop, writer=self._writer, pool=self._pool, claims=self._claims
        )
        self._claims.start(claim=self.worker and self._recover_enabled)
        self._remote_events = RemoteEvents(self)
        await self._remote_events.start()
        self._spawn(self._control.heartbeat())
        if self._recover_enabled:
            self._spawn(self._control.reaper())
        if self._recover_enabled and len(self.registry):
            await self._control.recover(self.registry.names)
        if self._recover_enabled:
            # Awaited, not spawned: a store read still running in a thread when the engine
            # closes would race the store's close.
            await self._recover_workflows()
            from ..schedules.ticker import Ticker

            self._ticker = Ticker(self)
            await self._ticker.start()

    async def close(self) -> None:
        """Stop accepting runs, let executing ones finish (up to `shutdown_grace`), flush."""
        if not self._started or self._closing:
            return
        self._closing = True
        self._execution.closing = True
        if self._ticker is not None:
            await self._ticker.stop()
            self._ticker = None
        if self._claims is not None:
            await self._claims.stop()  # no more claims; waits for other processes' runs end
        if self._remote_events is not None:
            await self._remote_events.stop()
        await self._interrupt_workflows()
        if self._supervisor is not None:
            await self._supervisor.close()  # every service stopped, its last state saved
        for deployment in list(self._deployments):
            await deployment.stop()  # its last status saved before the store closes
        for task in list(self._background):
            task.cancel()
        executing = [live for live in self._live.values() if live.run.status == _RUNNING]
        waiters = [self._waiter(live) for live in executing]
        if waiters:
            await asyncio.wait(waiters, timeout=self.shutdown_grace)
        for live in list(self._live.values()):
            if live.timer is not None:
                live.timer.cancel()
            if live.run.status == _RUNNING and not live.settled:
                self._execution.interrupt(live)
        await self._execution.close_remote()  # calls still out there are cancelled
        assert self._writer is not None and self.store is not None and self._io is not None
        self._release_held()
        await self._in_thread(self._writer.close)
        store = self.store
        try:
            await self._in_thread(store.unregister_worker, self.worker_id)
        except StoreError as exc:
            # The store is away: the worker's record stays, and shows as lost once the
            # store below lets its lock go; the next engine takes its runs over.
            logger.warning("taskloom: could not unregister worker %s: %s", self.worker_id, exc)
        if self._store_given is None:
            await self._in_thread(store.close)
        context_module.uninstall_log_capture()
        if self._gc_threshold is not None:
            restore_gc_threshold()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._execution.stop()
        self._io.shutdown(wait=False)
        for live in self._live.values():
            for waiter in live.waiters or ():
                settle(waiter, EngineClosedError("the engine closed before the run finished"))
        self._live.clear()
        self._ending.clear()
        self._started = False

    # registration --------------------------------------------------------------------------
    def register(self, obj: Any) -> list[TaskDefinition]:
        """Register a task, a `Task` subclass, a module (its tasks) or a list of them.

        With `recover`, unfinished runs of these tasks left by a dead engine are taken over.
        """
        added = self.registry.register(obj)
        self._queues_changed()
        if self._started and self._recover_enabled:
            names = [d.name for d in added if d.name not in self._control.recovered]
            if names:
                self._spawn(self._control.recover(names))
        if self._ticker is not None and added:
            self._spawn(self._ticker.register(added))
        return added

    def register_entry_points(self) -> list[TaskDefinition]:
        """Register the tasks installed packages declare (entry point group `taskloom.tasks`)."""
        added = self.registry.register_entry_points()
        if self._started and self._recover_enabled:
            self._spawn(self._control.recover([d.name for d in added]))
        return added

    async def register_packages(self) -> list[TaskDefinition]:
        """Register the tasks of every ready package recorded in the store (`<pkg>/<task>`)."""
        self._check_started()
        from ..packages.collection import ready_package_tasks

        assert self.store is not None
        return self.register(await self._in_thread(ready_package_tasks, self.store))

    def unregister(self, names: Iterable[str]) -> None:
        """Forget these tasks (a removed package's): new runs of them are refused; runs
        already submitted keep the definition they were given."""
        for name in names:
            self.registry.remove(name)
            self._resolved.pop(name, None)

    def register_service(self, service: ServiceDefinition | type[Service]) -> ServiceDefinition:
        """Register a service (an `@service` function or a `Service` subclass; a class
        with loops registers each loop, and the first one's definition is returned).

        Registered while the engine runs, it picks up what the store kept of it at once.
        """
        from ..services.definition import definitions_of

        definitions = definitions_of(service)
        for definition in definitions:
            if self._supervisor is not None:
                self._supervisor.register(definition)  # raises on a different one of that name
            else:
                existing = self._services.get(definition.name)
                if existing is not None and not existing.same_as(definition):
                    raise DuplicateTaskError(
                        f"two different services are named {definition.name!r}; "
                        "give one of them another `name`"
                    )
            self._services.setdefault(definition.name, definition)
        return definitions[0]

    def task(self, name: str) -> TaskDefinition:
        """The task registered under `name` (also looking at `executor_register`ed classes)."""
        found = self.registry.find(name) or default_registry.find(name)
        if found is None:
            self.registry.get(name)  # raises UnknownTaskError listing the known names
        assert found is not None
        return self.registry.add(found)

    def task_limit(self, task: TaskDefinition) -> int | None:
        """How many runs of `task` may be handed to its executor at once."""
        return self._execution.task_limit(task)

    def add_listener(self, listener: Listener, *, ends_only: bool = False) -> Callable[[], None]:
        """Call `listener(event)` on the event loop for each run event; returns a remover.

        With `ends_only`, it hears only the `retrying` and `finished` events of what this
        engine recorded itself (never one read back from the store), and the event holds
        the engine's own record of the run, to read at once and not keep: what counters
        need, at a fraction of the cost (the engine makes no other event for it, and does
        not read other processes' runs from the store for it)."""
        listeners = self._execution.end_listeners if ends_only else self._listeners
        listeners.append(listener)
        if not ends_only and self._remote_events is not None:
            self._remote_events.listening()
        return lambda: listeners.remove(listener) if listener in listeners else None

    @property
    def accepting(self) -> bool:
        """Started and not closing: runs are taken (what a readiness probe asks)."""
        return self._started and not self._closing

    # services ------------------------------------------------------------------------------
    @property
    def schedules(self) -> ScheduleBook:
        """The schedules on this engine's database (list, add, pause, resume, remove,
        trigger), knowing the tasks registered here; see `taskloom.schedules.book`."""
        from ..schedules.book import ScheduleBook

        self._check_started()
        assert self.store is not None
        ticker = self._ticker
        return ScheduleBook(
            self.store, list(self.registry), changed=ticker.wake if ticker is not None else None
        )

    @property
    def hooks(self) -> HookBook:
        """The webhooks on this engine's database (create, list, remove); see
        `taskloom.schedules.hooks`."""
        from ..schedules.hooks import HookBook

        self._check_started()
        assert self.store is not None
        return HookBook(self.store, list(self.registry))

    @property
    def supervisor(self) -> Supervisor:
        """The `Supervisor` of the engine's services (while the engine runs)."""
        if self._supervisor is None or not self._started or self._closing:
            raise EngineClosedError()
        return self._supervisor

    async def start_service(self, name: str, config: Any = None) -> ServiceStatus:
        """Start a service; an invalid `config` raises `InputValidationError`, nothing starts."""
        return await self.supervisor.start(name, config)

    async def stop_service(self, name: str) -> ServiceStatus:
        """Stop a service, waiting at most its `stop_timeout` (then `stop_timed_out` is set)."""
        return await self.supervisor.stop(name)

    async def restart_service(self, name: str, config: Any = None) -> ServiceStatus:
        """Stop (if started) and start a service again; `config=None` keeps its config."""
        return await self.supervisor.restart(name, config)

    def service_status(self, name: str) -> ServiceStatus:
        return self.supervisor.status(name)

    def service_statuses(self) -> list[ServiceStatus]:
        return self.supervisor.statuses()

    async def service_logs(
        self, name: str, *, after_id: int = 0, limit: int = 1000
    ) -> list[ServiceLogLine]:
        """Lines the service logged with an id above `after_id`, oldest first."""
        self.supervisor.status(name)  # raises UnknownServiceError
        assert self.store is not None
        return await self._in_thread(
            functools.partial(self.store.get_service_logs, name, after_id=after_id, limit=limit)
        )

    def service_attributes(self, name: str) -> ServiceAttributes:
        """The live attributes of a service class (a `Service` subclass with loops)."""
        return self.supervisor.attributes(name)

    async def set_service_attributes(
        self, name: str, values: Mapping[str, Any], *, by: str = "python"
    ) -> ServiceAttributes:
        """Set attributes of a service class while its loops run; invalid values raise
        `AttributeValidationError` and none is set; saved with `by` before it returns."""
        return await self.supervisor.set_attributes(name, values, by=by)

    async def service_attribute_changes(
        self, name: str, *, limit: int = 100
    ) -> list[ServiceAttributeChange]:
        """The last changes of a service class's attributes made from outside, newest
        first."""
        self.supervisor.attributes(name)  # raises UnknownServiceError
        assert self.store is not None
        return await self._in_thread(
            functools.partial(self.store.get_service_attribute_changes, name, limit=limit)
        )

    # pipelines -----------------------------------------------------------------------------
    async def deploy(
        self,
        pipeline: Pipeline,
        *,
        name: str | None = None,
        bus: Bus | str | None = None,
        stages: Iterable[str] | None = None,
        status_interval: float = 1.0,
    ) -> Deployment:
        """Check a pipeline's wiring and run its stages here until stopped (see
        `taskloom.streams.deploy`); its status is kept in the engine's store."""
        from ..streams.deployment import deploy

        self._check_started()
        deployment = await deploy(
            pipeline,
            name=name,
            bus=bus,
            store=self.store,
            stages=stages,
            status_interval=status_interval,
        )
        self._deployments.add(deployment)
        deployment.add_stop_callback(self._deployments.discard)
        return deployment

    @property
    def deployments(self) -> list[Deployment]:
        """The deployments running in this engine."""
        return list(self._deployments)

    def deployment(self, name: str) -> Deployment | None:
        """The deployment `name` if it runs in this engine (its topics are reachable
        here; the first part deployed, when this engine runs several parts of it); None
        otherwise."""
        return next((d for d in self._deployments if d.name == name), None)

    async def deployment_status(self, name: str) -> DeploymentStatus:
        """A deployment and its stages, from any process: the part running here live,
        the others' as they saved them. Raises `DeploymentNotFoundError`."""
        from ..streams.deployment import deployment_status

        self._check_started()
        assert self.store is not None
        saved = await self._in_thread(deployment_status, self.store, name)
        running = self.deployment(name)
        if running is None:
            return saved
        status = running.status()
        status.stop_requested = saved.stop_requested
        mine = {p.part for p in status.parts}
        status.parts += [p for p in saved.parts if p.part not in mine]
        stages = {s.stage for s in status.stages}
        status.stages += [s for s in saved.stages if s.stage not in stages]
        return status

    async def list_deployments(self) -> list[DeploymentStatus]:
        """Every deployment in the store, running or stopped, newest first (each as
        `deployment_status` gives it)."""
        from ..streams.errors import DeploymentNotFoundError

        self._check_started()
        assert self.store is not None
        found = []
        for record in await self._in_thread(self.store.list_deployments):
            try:
                found.append(await self.deployment_status(record.name))
            except DeploymentNotFoundError:  # removed in between
                continue
        return found

    async def stop_deployment(self, name: str) -> DeploymentStatus:
        """Stop a deployment: the part running here at once, the parts other processes
        run by a stop request in the store (they act on it within their status
        interval). A stopped one is returned as it is. Raises `DeploymentNotFoundError`."""
        from ..streams.deployment import request_stop
        from ..streams.status import DeploymentState

        running = self.deployment(name)
        if running is not None:
            await running.stop()
        saved = await self.deployment_status(name)
        if saved.state is DeploymentState.STOPPED:
            return saved
        assert self.store is not None
        return await self._in_thread(request_stop, self.store, name)

    async def schema_revision(self) -> str | None:
        """The schema revision of the engine's database, read from it now (a readiness
        probe's question). Read in a thread of the loop's own, not the engine's: a
        database that hangs must not take the threads the engine's reads need."""
        self._check_started()
        assert self.store is not None
        return await asyncio.to_thread(self.store.schema_revision)

    # workers -------------------------------------------------------------------------------
    async def list_workers(self) -> list[WorkerRecord]:
        """Every worker recorded on the database, this engine and other processes, oldest
        first (`state`: alive or lost)."""
        self._check_started()
        assert self.store is not None
        return await self._in_thread(self.store.list_workers)

    # submitting ----------------------------------------------------------------------------
    async def submit(
        self,
        task: TaskLike | Workflow,
        inputs: dict[str, Any] | None = None,
        *,
        priority: int | None = None,
        idempotency_key: str | None = None,
        config: Any = None,
        parent_id: str | None = None,
        queue: str | None = None,
        run_at: datetime | str | float | None = None,
        delay: float | None = None,
    ) -> Run:
        """Validate and record a run; returns once it is committed to the store.

        `queue` overrides the task's queue (its option `queue`, `"default"` unless set).
        `run_at` (a datetime, ISO 8601 text or seconds since the epoch; naive means UTC) or
        `delay` (seconds) makes it wait, `pending`, until it is due; any worker serving the
        task starts it then.

        Raises `InputValidationError` (nothing is recorded) when the inputs are invalid.
        With `idempotency_key`, a run already recorded under the key is returned instead.
        A `Workflow` is checked (`WorkflowValidationError` before anything is recorded),
        recorded as a workflow run and started; each step becomes a child run.
        """
        if not self._started or self._closing:
            raise EngineClosedError()
        if not isinstance(task, str) and _is_workflow(task):
            return await self.submit_workflow(task, inputs, priority=priority)
        definition = self._definition(cast(TaskLike, task))
        call, stored = definition.validate_inputs({} if inputs is None else inputs)
        refuse_unstorable(definition.name, stored)
        if definition.options.executor == "dask":
            check_shippable(definition)
        config_value, config_json = self._config_for(definition, config)
        queue = self._queue_for(definition, queue)
        due = None
        if run_at is not None or delay is not None:
            from ..schedules.rules import due_time

            due = due_time(definition.name, run_at, delay)
        loop = self._loop
        assert loop is not None and self._writer is not None
        self._writer.check_available(definition.name)
        # A run due later waits in the database for whichever worker claims it then.
        held = due is None and self._hold_at_submit(definition, queue)
        run = Run(
            id=new_run_id(),
            task=definition.name,
            inputs=stored,
            priority=definition.options.priority if priority is None else int(priority),
            max_attempts=definition.options.retries + 1,
            parent_id=parent_id,
            idempotency_key=idempotency_key,
            worker_id=self.worker_id if held else None,
            created_at=time.time(),
            config=config_json,
            queue=queue,
            lease=1 if held else 0,
            scheduled_at=due,
        )
        live = LiveRun(self._execution, run, definition, call, config_value)
        span = None if self._tracer is None else tracing.start_submit(self._tracer, run)
        try:
            if idempotency_key is not None:
                return await self._submit_idempotent(live, idempotency_key)
            committed: asyncio.Future[None] = loop.create_future()
            inserted = functools.partial(self._on_inserted, live, committed)
            if not (held and self._execution.start_at_insert(live, inserted)):
                self._writer.submit_run(run, inserted)
            await committed
        except BaseException as exc:
            if span is not None:
                tracing.end(span, "refused", error=exc)
                span = None
            raise
        finally:
            if span is not None:
                tracing.end(span, "recorded")
        return run.copy()  # a snapshot: the engine goes on updating its own record

    def _queue_for(self, definition: TaskDefinition, queue: str | None) -> str:
        if queue is None:
            return definition.options.queue
        try:
            queue = check_queue_name(queue, "queue")
        except Exception as exc:
            raise InputValidationError(
                definition.name, [FieldError("queue", str(exc), queue)], what="option"
            ) from None
        if queue not in self._submitted_queues and queue != definition.options.queue:
            self._submitted_queues.add(queue)
            self._queues_changed()
        return queue

    def _hold_at_submit(self, definition: TaskDefinition, queue: str) -> bool:
        """Whether this engine holds a run from its insert (the embedded fast path): it
        executes runs of this task and queue, the task has no limit across workers, and
        it can start the run soon or no other live worker serves the queue (then it waits
        in this engine's memory, in priority order, until another worker appears; see
        `_share_waiting`). Otherwise the run waits unclaimed, for any worker."""
        if not self.worker:
            return False
        if not self._recover_enabled:
            self._reserved += 1
            return True  # a one-shot engine executes what it submits, nothing else
        if self._queues is not None and queue not in self._queues:
            return False
        if definition.options.concurrency is not None:
            return False  # claimed under the task's limit, counted across workers
        if queue in self._peer_queues and self._free_slots() <= 0:
            return False  # no free slot: it waits in the database for either worker
        self._reserved += 1
        return True

    def _shares_queue(self, definition: TaskDefinition, queue: str) -> bool:
        """Whether runs of this task and queue may be taken by another worker than this
        engine: it is not a worker for them, another live worker serves the queue, or the
        task has a limit counted across workers."""
        return (
            not self.worker
            or (self._queues is not None and queue not in self._queues)
            or definition.options.concurrency is not None
            or (self._recover_enabled and queue in self._peer_queues)
        )

    async def _refresh_peers(self) -> None:
        """Read which queues other live workers serve; a queue that gained one has the
        runs waiting here for a slot given back, so either worker may take them."""
        assert self.store is not None
        peers = await self._in_thread(self.store.peer_queues, self.worker_id)
        gained = peers - self._peer_queues
        self._peer_queues = peers
        if gained and self.worker and self._recover_enabled:
            self._share_waiting(gained)

    def _share_waiting(self, queues: Collection[str]) -> None:
        """Give back the runs of `queues` held here that wait for a slot (not started)."""
        if self._writer is None:
            return  # starting: nothing is held yet
        shared = 0
        for item in self._queue.waiting():
            live = item if isinstance(item, LiveRun) else None
            if live is None or live.began or live.dispatched or live.on_finish is not None:
                continue  # (a workflow's step stays with the engine driving the workflow)
            run = live.run
            if run.status is not RunStatus.PENDING or run.queue not in queues:
                continue
            if self._live.get(run.id) is not live or run.worker_id != self.worker_id:
                continue
            live.dropped = True  # skipped when it comes up in the ready queue
            del self._live[run.id]
            self._ending.discard(run.id)
            self._writer.update_run(run.id, {"worker_id": None})  # fenced: still ours
            self._writer.barrier(functools.partial(self._forget_shared, run.id))
            run.worker_id = None
            kept = LiveRun(self._execution, run, live.task, live.call, live.config)
            self._unclaimed[run.id] = kept
            if live.waiters and self._claims is not None:
                self._claims.add_waiters(run.id, live.waiters)
            live.waiters = None
            shared += 1
        if shared:
            logger.info("taskloom: %d runs waiting here are now claimable by any worker", shared)
            if self._claims is not None:
                self._claims.wake()

    def _forget_shared(self, run_id: str, error: BaseException | None) -> None:
        self._writer_forget(run_id)

    async def submit_many(
        self,
        task: TaskLike,
        inputs: Iterable[dict[str, Any] | None],
        *,
        priority: int | None = None,
        config: Any = None,
        parent_id: str | None = None,
    ) -> list[Run]:
        """Submit one run per item of `inputs` in one commit; returns them in order.

        Every item is validated before anything is recorded: one invalid item raises
        `InputValidationError` (naming the item's index) and no run is recorded.
        """
        if not self._started or self._closing:
            raise EngineClosedError()
        definition = self._definition(task)
        if definition.options.executor == "dask":
            check_shippable(definition)
        config_value, config_json = self._config_for(definition, config)
        lives: list[LiveRun] = []
        now = time.time()
        prio = definition.options.priority if priority is None else int(priority)
        queue = definition.options.queue
        for index, item in enumerate(inputs):
            try:
                call, stored = definition.validate_inputs({} if item is None else item)
                refuse_unstorable(definition.name, stored)
            except InputValidationError as exc:
                errors = [
                    FieldError(f"[{index}].{e.field}", e.message, e.value) for e in exc.errors
                ]
                raise InputValidationError(definition.name, errors) from None
            run = Run(
                id=new_run_id(),
                task=definition.name,
                inputs=stored,
                priority=prio,
                max_attempts=definition.options.retries + 1,
                parent_id=parent_id,
                created_at=now,
                config=config_json,
                queue=queue,
            )
            lives.append(LiveRun(self._execution, run, definition, call, config_value))
        if not lives:
            return []
        assert self._loop is not None and self._writer is not None
        self._writer.check_available(definition.name)
        for live in lives:
            if not self._hold_at_submit(definition, queue):
                break  # the rest wait unclaimed
            live.run.worker_id = self.worker_id
            live.run.lease = 1
        committed: asyncio.Future[None] = self._loop.create_future()
        tracer = self._tracer
        spans = [] if tracer is None else [tracing.start_submit(tracer, x.run) for x in lives]
        self._writer.submit_runs(
            [live.run for live in lives],
            functools.partial(self._on_many_inserted, lives, committed),
        )
        try:
            await committed
        except BaseException as exc:
            for span in spans:
                tracing.end(span, "refused", error=exc)
            raise
        for span in spans:
            tracing.end(span, "recorded")
        return [live.run.copy() for live in lives]

    def _on_many_inserted(
        self, lives: list[LiveRun], committed: asyncio.Future[None], error: BaseException | None
    ) -> None:
        for live in lives:
            if live.run.worker_id == self.worker_id:
                self._reserved -= 1
        if error is None:
            for live in lives:
                self._on_inserted(live, None, None)
        settle(committed, error)

    async def wait_many(self, run_ids: Iterable[str], timeout: float | None = None) -> list[Run]:
        """Wait for several runs; returns them in the order of `run_ids`."""
        self._check_started()
        waits: list[asyncio.Future[Run]] = []
        for run_id in run_ids:
            live = self._live.get(run_id)
            if live is not None:
                waits.append(self._waiter(live))
            else:
                waits.append(asyncio.ensure_future(self.wait(run_id)))
        try:
            async with asyncio.timeout(timeout):
                return list(await asyncio.gather(*waits))
        except TimeoutError:
            for waiter in waits:
                waiter.cancel()
            raise WaitTimeoutError(
                f"{len(waits)} runs did not all finish within {timeout:g} s"
            ) from None

    def _definition(self, task: TaskLike) -> TaskDefinition:
        definition = self._resolved.get(task)
        if definition is None:
            definition = (
                self.task(task) if isinstance(task, str) else self.registry.add(as_task(task))
            )
            self._resolved[task] = definition
            if self._recover_enabled and definition.name not in self._control.recovered:
                # Known now, so its runs left by a dead engine can be taken over too.
                self._spawn(self._control.recover([definition.name]))
        return definition

    def _on_inserted(
        self, live: LiveRun, committed: asyncio.Future[None] | None, error: BaseException | None
    ) -> None:
        run = live.run
        held = run.worker_id == self.worker_id
        if held and committed is not None:
            self._reserved -= 1
        if error is not None:
            if live.dispatched:  # started with its insert (which was refused): let it go
                live.settled = live.dropped = True
                self._execution.end_span(live, "not recorded", error)
                self._execution.release(live)
            if committed is not None:
                settle(committed, error)
            return
        if held:
            self._hold(live)
        else:
            self._unclaimed[run.id] = live
            if len(self._unclaimed) > UNCLAIMED_KEPT:
                self._unclaimed.popitem(last=False)
            if self._claims is not None:
                self._claims.wake()
        if self._listeners:
            self._execution.emit(RunEventKind.SUBMITTED, run)
        if held and not live.dispatched:  # (one started with its insert is under way)
            self._queue.push(live)
        if committed is not None and not committed.done():
            committed.set_result(None)

    def _hold(self, live: LiveRun) -> None:
        """This engine holds the run now: its changes are fenced by its lease."""
        run = live.run
        self._live[run.id] = live
        assert self._writer is not None
        self._writer.fences[run.id] = (self.worker_id, run.lease)

    async def _submit_idempotent(self, live: LiveRun, key: str) -> Run:
        pending = self._keys.get(key)
        if pending is not None:
            return pending.run.copy()
        assert self._loop is not None and self._writer is not None
        self._keys[key] = live
        kept: asyncio.Future[Run] = self._loop.create_future()
        self._writer.insert_idempotent(live.run, lambda value: settle(kept, value))
        try:
            run = await kept
        except BaseException:
            if live.run.worker_id == self.worker_id:
                self._reserved -= 1
            raise
        finally:
            self._keys.pop(key, None)
        held = live.run.worker_id == self.worker_id
        if held:
            self._reserved -= 1
        if run.id != live.run.id:
            existing = self._live.get(run.id)
            return existing.run.copy() if existing is not None else run
        if held:
            self._hold(live)
            self._queue.push(live)
        else:
            self._unclaimed[run.id] = live
            if self._claims is not None:
                self._claims.wake()
        return live.run.copy()

    def _follow_up(self, run: Run, options: TaskOptions) -> None:
        """A run ended for good: start its task's `on_success` or `on_failure` task, once
        (keyed by the run), with the run's summary as the input `run`."""
        if run.status is RunStatus.COMPLETED:
            kind, handler = "on_success", options.on_success
        elif run.status is RunStatus.FAILED:
            kind, handler = "on_failure", options.on_failure
        else:
            return
        if handler is not None and not self._closing:
            self._spawn(self._submit_follow_up(kind, handler, run))

    async def _submit_follow_up(self, kind: str, handler: str, run: Run) -> None:
        summary = {
            "id": run.id,
            "task": run.task,
            "status": run.status.value,
            "attempts": run.attempts,
            "inputs": run.inputs,
            "result": run.result,
            "error": None if run.error is None else run.error.as_dict(),
            "finished_at": run.finished_at,
        }
        try:
            await self.submit(handler, {"run": summary}, idempotency_key=f"{kind}:{run.id}")
        except TaskloomError as exc:
            logger.warning(
                "taskloom: the %s task %r of run %s could not start: %s",
                kind,
                handler,
                run.id,
                exc,
                extra={"run_id": run.id, "task": run.task, "attempt": run.attempts},
            )

    def _config_for(self, task: TaskDefinition, config: Any) -> tuple[Any, dict[str, Any] | None]:
        kind = task.specials.config
        if kind is None:
            if config is not None:
                raise InputValidationError(
                    task.name, [FieldError("config", "this task takes no config")], what="option"
                )
            return None, None
        value = validate_special(task.name, "config", kind, config)
        return value, dump_special(value)

    # reading and controlling -----------------------------------------------------------------
    async def get_run(self, run_id: str) -> Run:
        """The run with this id (raises `RunNotFoundError`)."""
        live = self._live.get(run_id) or self._finished.get(run_id)
        if live is not None:
            return (live if isinstance(live, Run) else live.run).copy()
        self._check_started()
        assert self.store is not None
        run = await self._in_thread(self.store.get_run, run_id)
        if run is None:
            raise RunNotFoundError(run_id)
        return run

    async def wait(self, run_id: str, timeout: float | None = None) -> Run:
        """Wait until the run is finished and return it (raises `WaitTimeoutError`)."""
        self._check_started()
        workflow = self._workflows.get(run_id)
        if workflow is not None:
            try:
                async with asyncio.timeout(timeout):
                    return await asyncio.shield(workflow.done)
            except TimeoutError:
                raise WaitTimeoutError(
                    f"workflow run {run_id} did not finish within {timeout:g} s"
                ) from None
        live = self._live.get(run_id)
        if live is not None and timeout is None:
            return await self._waiter(live)
        finished = self._finished.get(run_id)
        if finished is not None:
            return finished.copy()
        try:
            async with asyncio.timeout(timeout):
                if live is not None:
                    return await self._waiter(live)
                assert self._claims is not None
                return await self._claims.wait_remote(run_id, unfinished=run_id in self._unclaimed)
        except TimeoutError:
            raise WaitTimeoutError(f"run {run_id} did not finish within {timeout:g} s") from None

    def _waiter(self, live: LiveRun) -> asyncio.Future[Run]:
        """A future of its own for each waiter: one waiter cancelled leaves the others be."""
        assert self._loop is not None
        waiter: asyncio.Future[Run] = self._loop.create_future()
        if live.waiters is None:
            live.waiters = [waiter]
        else:
            live.waiters.append(waiter)
        return waiter

    async def list_runs(
        self,
        task: str | None = None,
        status: str | Collection[str] | None = None,
        parent_id: str | None = None,
        limit: int = 100,
        *,
        before: str | None = None,
    ) -> list[Run]:
        """Runs, newest first; `before` is the id of the last run of the previous page.

        Read from the store without waiting for the changes queued to it: a listing stays
        quick however busy the engine is. Without a status filter, runs this engine holds
        show its own newer record, and so does a run whose end it committed while the store
        was being read.
        Every change a caller awaited (a submit, a run's end that `wait` returned) is in it.
        """
        self._check_started()
        assert self.store is not None
        found = await self._in_thread(
            functools.partial(
                self.store.list_runs,
                task=task,
                status=status,
                parent_id=parent_id,
                limit=limit,
                before=before,
            )
        )
        if status is None:  # (a newer status could fall outside a status filter)
            finished = self._finished
            for index, run in enumerate(found):
                live = self._live.get(run.id)
                if live is not None:
                    found[index] = live.run.copy()
                elif not run.is_finished and run.id in finished:
                    # Read before its end was committed, which happened while the read
                    # was going on: the end this engine committed is the newer record.
                    found[index] = finished[run.id].copy()
        return found

    async def get_attempts(self, run_id: str) -> list[Attempt]:
        self._check_started()
        await self.flush()
        assert self.store is not None
        return await self._in_thread(self.store.get_attempts, run_id)

    async def get_logs(self, run_id: str, *, after_id: int = 0, limit: int = 1000) -> list[LogLine]:
        self._check_started()
        await self.flush()
        assert self.store is not None
        return await self._in_thread(
            functools.partial(self.store.get_logs, run_id, after_id=after_id, limit=limit)
        )

    async def stats(self, window: str = "1h", *, task: str | None = None) -> RunStats:
        """The runs that finished within the last `window` (`15m`, `1h`, `6h`, `1d` or
        `7d`; `ValueError` for any other), of `task` only if given, in the buckets a chart
        draws, with their durations' percentiles per task; and the runs pending and
        running now. Read from the store's rollup of run ends (every process's), as the
        store has committed them."""
        self._check_started()
        assert self.store is not None
        now = time.time()
        since, bucket = window_span(window, now)
        read = functools.partial(
            self.store.run_stats, since=since, until=now, bucket_seconds=bucket, task=task
        )
        return await self._in_thread(read)

    async def flush(self) -> None:
        """Return once every change made so far is committed."""
        self._check_started()
        assert self._loop is not None and self._writer is not None
        done: asyncio.Future[None] = self._loop.create_future()
        self._writer.barrier(lambda error: settle(done, error))
        await done

    async def cancel(self, run_id: str) -> Run:
        """Cancel a run: the request is recorded, then the run is stopped.

        A run executing in another process is stopped by that process's engine, which
        sees the request within a heartbeat; the returned run then still shows it running.
        """
        self._check_started()
        workflow = self._workflows.get(run_id)
        if workflow is not None:
            return await workflow.cancel()
        live = self._live.get(run_id)
        if live is not None:
            assert self._writer is not None
            self._writer.update_run(run_id, {"cancel_requested": True})
            live.run.cancel_requested = True
            waiter = self._waiter(live)
            self._control.cancel(live)
            return await waiter
        assert self.store is not None
        store = self.store
        run = await self._in_thread(store.request_cancel, run_id)
        if run is None:
            existing = await self._in_thread(store.get_run, run_id)
            if existing is None:
                raise RunNotFoundError(run_id)
            return existing  # already finished
        if run.worker_id and run.worker_id != self.worker_id:
            alive = await self._in_thread(store.is_worker_alive, run.worker_id)
            if alive:
                return run
        await self._in_thread(
            functools.partial(store.cancel_orphaned_run, run_id, finished_at=time.time())
        )
        return await self.get_run(run_id)

    # workflows ---------------------------------------------------------------------------------
    async def submit_workflow(
        self,
        workflow: Workflow,
        inputs: dict[str, Any] | None = None,
        *,
        priority: int | None = None,
        resolve: Callable[[Any], TaskDefinition] | None = None,
    ) -> Run:
        """`submit(workflow, ...)`, with `resolve` finding each step's task (default: the
        step's task object, a registered name, or a `module:attr` / `file.py:attr` target);
        an error it raises is a `WorkflowValidationError` naming the step."""
        if not self._started or self._closing:
            raise EngineClosedError()
        from ..workflows import operations

        return await operations.submit_workflow(
            self._host, workflow, inputs, priority=priority, resolve=resolve
        )

    async def rerun_workflow(
        self, run_id: str, *, resolve: Callable[[Any], TaskDefinition] | None = None
    ) -> Run:
        """A new run of a finished workflow run's workflow and inputs: steps (and map items)
        that completed with the same inputs are reused, not run again; the rest runs
        (`resolve` as in `submit_workflow`)."""
        self._check_started()
        from ..workflows import operations

        return await operations.rerun_workflow(self._host, run_id, resolve=resolve)

    async def workflow_steps(self, run_id: str) -> dict[str, list[Run]]:
        """The step runs of workflow run `run_id`, by step name; the items of a map step
        in item order. A step with no run yet (waiting) is absent."""
        self._check_started()
        from ..workflows import operations

        return await self._in_thread(operations.workflow_steps, self.store, run_id)

    async def _recover_workflows(self) -> None:
        from ..workflows import operations

        await operations.recover_workflows(self._host, self._passed_over)

    async def _interrupt_workflows(self) -> None:
        """Closing: let go of the workflows driven here, unfinished. Their step runs are
        runs like any other (finished within the grace, or given back); any engine that
        starts on the database resumes the workflows."""
        for execution in list(self._workflows.values()):
            execution.abandon()
            self._host.release_workflow(execution.run.id)
        self._workflows.clear()

    # the shared queue ------------------------------------------------------------------------
    @property
    def rejected_writes(self) -> int:
        """Changes this engine made that the store refused because the run was no longer
        held by it (it was paused or cut off past its lease, and another worker took over)."""
        return 0 if self._writer is None else self._writer.rejected

    async def _register_worker(self) -> None:
        assert self.store is not None
        await self._in_thread(
            functools.partial(
                self.store.register_worker,
                self.worker_id,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                name=self.name,
                queues=self._recorded_queues() if self.worker else None,
                concurrency=self.concurrency if self.worker else None,
                ttl=self.lease_ttl,
            )
        )

    def _recorded_queues(self) -> list[str]:
        self._queues_on_record = sorted(self._served_queues())
        return self._queues_on_record

    def _queues_changed(self) -> None:
        """Tasks or a submit brought a queue this engine did not serve: say so on record."""
        if (
            self._started
            and self.worker
            and sorted(self._served_queues()) != self._queues_on_record
        ):
            self._spawn(self._record_queues())

    async def _record_queues(self) -> None:
        assert self.store is not None
        if self.worker:
            try:
                await self._in_thread(
                    functools.partial(
                        self.store.update_worker,
                        self.worker_id,
                        queues=self._recorded_queues(),
                    )
                )
            except StoreError as exc:
                logger.warning("taskloom: could not record the queues served: %s", exc)

    def served_queues(self) -> list[str]:
        """The queues this engine takes runs from (see `queues`)."""
        return sorted(self._served_queues())

    def _served_queues(self) -> set[str]:
        if self._queues is not None:
            return self._queues
        return {d.options.queue for d in self.registry} | self._submitted_queues | {"default"}

    def _served_tasks(self) -> tuple[list[str], dict[str, int]]:
        """The tasks this engine claims runs of, and the limits across workers among them."""
        names: list[str] = []
        limits: dict[str, int] = {}
        for definition in self.registry:
            names.append(definition.name)
            if definition.options.concurrency is not None:
                limits[definition.name] = definition.options.concurrency
        return names, limits

    def _free_slots(self) -> int:
        held = len(self._live) - len(self._ending)
        return self.concurrency - held - self._reserved - self._claiming

    def _starts_at_claim(self, names: list[str]) -> dict[str, str]:
        """The tasks among `names` whose claimed runs the claim starts, with the executor
        their attempts name (see `RunExecution.starts_at_claim`)."""
        starts: dict[str, str] = {}
        for name in names:
            definition = self.registry.find(name)
            executor = None if definition is None else self._execution.starts_at_claim(definition)
            if executor is not None:
                starts[name] = executor
        return starts

    def _holds_running_runs(self) -> bool:
        return bool(self._live)

    def _writer_claim(self, request: Any, callback: Callable[[Any], None]) -> None:
        assert self._writer is not None
        self._writer.claim(request, callback)

    def _adopt_claimed(self, run: Run) -> None:
        """A run this engine claimed: queue it to start (it is held, with a new lease)."""
        if run.id in self._live:
            return
        started = run.status == RunStatus.RUNNING  # by its claim (see _starts_at_claim)
        kept = self._unclaimed.pop(run.id, None)
        if kept is not None:
            live = kept
            held = live.run
            held.worker_id, held.lease = run.worker_id, run.lease
            held.cancel_requested = run.cancel_requested
            if started:
                held.status, held.attempts = run.status, run.attempts
                held.started_at, held.scheduled_at = run.started_at, run.scheduled_at
        else:
            try:
                definition = self.registry.get(run.task)
                call, _ = definition.validate_inputs(run.inputs)
                config, _ = self._config_for(definition, run.config)
            except (InputValidationError, UnknownTaskError) as exc:
                known = self.registry.find(run.task)
                if known is None:  # unregistered since the claim: give it back
                    self._give_back(run)
                    return
                live = LiveRun(self._execution, run, known, {}, None)
                live.attempt_open = started
                self._hold(live)
                error = ErrorInfo.from_exception(exc)
                self._execution.finish(live, RunStatus.FAILED, error=error)
                return
            live = LiveRun(self._execution, run, definition, call, config)
        self._hold(live)
        assert self._claims is not None
        waiters = self._claims.take_waiters(run.id)
        if waiters:
            live.waiters = [*(live.waiters or ()), *waiters]
        if started:
            live.attempt_open = True  # a cancel ends it with the run
            if live.run.cancel_requested:
                self._control.cancel(live)
            else:
                self._execution.started_by_claim(live)
            return
        if live.run.cancel_requested:
            self._control.cancel(live)
            return
        self._queue.push(live)

    def _give_back(self, run: Run) -> None:
        assert self._writer is not None
        self._writer.fences[run.id] = (self.worker_id, run.lease)
        fields: dict[str, Any] = {"worker_id": None}
        if run.status == RunStatus.RUNNING:  # started by its claim: its attempt never ran
            error = ErrorInfo("Interrupted", f"the engine {self.worker_id} gave the run back")
            self._writer.update_attempt(
                run.id,
                run.attempts,
                {"finished_at": time.time(), "status": "interrupted", "error": error},
            )
            fields.update(status=RunStatus.PENDING, max_attempts=run.max_attempts + 1)
        self._writer.update_run(run.id, fields)
        self._writer.barrier(lambda _: self._writer_forget(run.id))

    def _writer_forget(self, run_id: str) -> None:
        if self._writer is not None and run_id not in self._live:
            self._writer.fences.pop(run_id, None)

    def _fenced_out(self, run_ids: frozenset[str]) -> None:
        """The store refused changes of these runs: this engine no longer holds them."""
        for run_id in run_ids:
            live = self._live.get(run_id)
            if live is not None:
                self._let_go(live)

    def _let_go(self, live: LiveRun) -> None:
        """Stop holding a run without writing anything more of it: its attempt's call is
        stopped when it can be (a thread's is abandoned: what it returns is discarded), and
        whoever waits for it waits on for wherever it ends."""
        run_id = live.run.id
        live.settled = True
        live.dropped = True
        if live.span is not None:
            self._execution.end_span(live, "let go")
        if live.timer is not None:
            live.timer.cancel()
            live.timer = None
        if live.context is not None:
            live.context._cancel()
        execution = live.execution
        if isinstance(execution, asyncio.Future) and not execution.done():
            live.interrupting = True
            execution.cancel()
        self._execution.release(live)
        self._live.pop(run_id, None)
        self._ending.discard(run_id)
        # Its fence stays: changes of it still queued are written only if it is ours.
        if live.waiters and self._claims is not None:
            self._claims.add_waiters(run_id, live.waiters)
        live.waiters = None

    def _release_held(self) -> None:
        """Closing: give back the runs this engine holds and has not finished, so any
        worker may take them (an interrupted attempt does not count against the retries)."""
        assert self._writer is not None
        for live in list(self._live.values()):
            if not live.run.is_finished:
                self._writer.update_run(live.run.id, {"worker_id": None})

    async def _lease_lost(self) -> None:
        """This worker's lease ran out (it was paused or cut off): the others count it
        dead and have given its runs back, or soon will. It lets go of them, registers
        under a new id and goes on claiming."""
        old = self.worker_id
        held = list(self._live.values())
        logger.error(
            "taskloom: worker %s lost its lease (paused or cut off for longer than %g s); "
            "letting go of %d runs and %d workflows and registering again",
            old,
            self.lease_ttl,
            len(held),
            len(self._workflows),
        )
        for execution in list(self._workflows.values()):
            execution.abandon()  # another engine resumes it (this one, maybe, as a new id)
        self._workflows.clear()
        for live in held:
            self._let_go(live)
        self.worker_id = _new_worker_id()
        assert self.store is not None
        try:
            await self._in_thread(self.store.retire_worker, old)
        except StoreError as exc:
            logger.warning("taskloom: could not retire worker %s: %s", old, exc)
        await self._register_worker()
        if self._claims is not None:
            self._claims.wake()

    # helpers ---------------------------------------------------------------------------------
    def _look_for_tracer(self) -> None:
        """Trace from now on if a tracer provider is set (asked at start and with each
        heartbeat: a program may set its provider after making the engine)."""
        if self._tracer is None and tracing.sdk_installed():
            self._tracer = self._execution.tracer = tracing.active_tracer()

    def _check_started(self) -> None:
        if not self._started:
            raise EngineClosedError()

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._io, fn, *args)

    def _wake_claims(self) -> None:
        if self._claims is not None:
            self._claims.wake()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def run(
        self, task: TaskLike | Workflow, inputs: dict[str, Any] | None = None, **options: Any
    ) -> Run:
        """Submit a run and wait for it to finish."""
        run = await self.submit(task, inputs, **options)
        return await self.wait(run.id)
