"""The long-running processes: what `taskloom serve` and `taskloom worker` run.

`serve` loads files or modules, registers their tasks and services in an `Engine` (whose
`Supervisor` keeps the services in the engine's store), starts the `autostart` services,
and performs the service requests other processes leave in the store (`taskloom service
start ...`) until it is asked to stop, or until an `exit_on_failure` service has failed
for good. `work` executes runs of the targets' tasks from the shared queue until it is
asked to stop. `run_to_end` runs either with a bounded end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .engine import Engine
from .exceptions import StoreError, TaskDefinitionError
from .loading import load_module
from .observability.retention import RetentionPolicy, keep_pruning
from .services.definition import ServiceDefinition, services_in_module
from .services.status import ServiceState
from .services.supervisor import Supervisor
from .store.base import LEASE_TTL
from .tasks.definition import TaskDefinition
from .tasks.registry import tasks_in_module
from .workflows import WorkflowLimits

if TYPE_CHECKING:
    from .observability.metrics import Metrics

__all__ = [
    "POLL_INTERVAL",
    "ServeResult",
    "Served",
    "Surface",
    "load_served",
    "run_to_end",
    "serve",
    "work",
]

T = TypeVar("T")

#: Seconds between two looks at the store for service requests.
POLL_INTERVAL = 0.2

logger = logging.getLogger("taskloom.processes")


@dataclass(slots=True)
class Served:
    """The tasks and services the targets define."""

    tasks: list[TaskDefinition] = field(default_factory=list)
    services: list[ServiceDefinition] = field(default_factory=list)
    #: `taskloom.Pipeline` objects at module level: deployable by name through the API.
    pipelines: list[Any] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ServeResult:
    """How serving ended: `exit_code` 0 after a stop request, else the supervisor's code;
    `failed` names the `exit_on_failure` services that failed for good."""

    exit_code: int
    failed: tuple[str, ...] = ()


class Surface(Protocol):
    """Something serving the engine to the outside (the HTTP server): started once the
    autostart services are, stopped before the services are."""

    async def start(self, engine: Engine) -> None: ...

    async def stop(self) -> None: ...


def _expand(target: str) -> list[str]:
    """A folder that is not a package stands for the `.py` files in it (not `_private`)."""
    path = Path(target)
    if path.is_dir() and not (path / "__init__.py").exists():
        files = sorted(p for p in path.glob("*.py") if not p.name.startswith("_"))
        if not files:
            raise TaskDefinitionError(f"{target!r} is a folder with no .py files")
        return [str(p) for p in files]
    return [target]


def load_served(targets: Sequence[str]) -> Served:
    """Import each target (a `.py` file, a folder of them, a package folder or a module
    name) and collect the tasks, services and pipelines it defines; a target that defines
    none of them is an error (a file in a folder may define nothing)."""
    served = Served()
    for target in targets:
        found = 0
        for spec in _expand(target):
            module = load_module(spec)
            tasks = tasks_in_module(module)
            services = services_in_module(module)
            pipelines = _pipelines_in(module)
            found += len(tasks) + len(services) + len(pipelines)
            served.tasks.extend(tasks)
            served.services.extend(services)
            served.pipelines.extend(pipelines)
        if not found:
            raise TaskDefinitionError(f"{target!r} defines no tasks, services or pipelines")
    return served


def _pipelines_in(module: Any) -> list[Any]:
    # Only when the module uses streams: serving tasks alone never imports them.
    if "taskloom.streams.pipeline" not in sys.modules:
        return []
    from .streams.pipeline import Pipeline

    return [v for v in vars(module).values() if isinstance(v, Pipeline)]


@contextlib.contextmanager
def _on_signals(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> Iterator[None]:
    """Call `callback` on SIGINT and SIGTERM while inside."""
    names = [signal.SIGINT, signal.SIGTERM]
    try:
        for number in names:
            loop.add_signal_handler(number, callback)
    except NotImplementedError:  # Windows: no loop signal handlers
        previous = {
            number: signal.signal(number, lambda *_: loop.call_soon_threadsafe(callback))
            for number in names
        }
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
        return
    try:
        yield
    finally:
        for number in names:
            loop.remove_signal_handler(number)


async def _poll_requests(supervisor: Supervisor, interval: float) -> None:
    while True:
        try:
            await supervisor.handle_requests()
        except StoreError as exc:
            # A database that is away for a moment must not end the serving process.
            logger.error("could not handle service requests: %s", exc)
        await asyncio.sleep(interval)


async def serve(
    served: Served,
    database_url: str | None,
    *,
    poll_interval: float = POLL_INTERVAL,
    on_ready: Callable[[Engine, Supervisor], None] | None = None,
    on_stopping: Callable[[str], None] | None = None,
    surfaces: Sequence[Surface] = (),
    workflow_limits: WorkflowLimits | None = None,
    worker: bool = True,
    retention: RetentionPolicy | None = None,
    dask: Any = None,
) -> ServeResult:
    """Serve until SIGINT or SIGTERM (exit code 0) or until an `exit_on_failure` service
    fails for good (the supervisor's non-zero exit code). Every service is stopped before
    this returns, each within its `stop_timeout`.

    `surfaces` (the HTTP server) are started before the autostart services, and
    stopped first when serving ends. With `worker` False the engine executes no runs:
    the runs submitted here wait for `taskloom worker` processes on the database.
    `on_ready` is called once all that is started; `on_stopping` with the reason when
    serving ends. With `retention`, finished runs older than it says are pruned in the
    background (`observability.retention`). `dask` is where the calls of `executor="dask"`
    tasks go (see `Engine`).
    """
    stop = asyncio.Event()
    with _on_signals(asyncio.get_running_loop(), stop.set):
        async with (
            Engine(
                database_url,
                tasks=served.tasks,
                services=served.services,
                workflow_limits=workflow_limits,
                worker=worker,
                dask=dask,
            ) as engine,
            keep_pruning(engine.store, retention),
        ):
            supervisor = engine.supervisor
            poller: asyncio.Task[None] | None = None
            started: list[Surface] = []
            try:
                # The surfaces first: one that cannot start (a port in use, a missing
                # token) ends serving before any service has started.
                for surface in surfaces:
                    await surface.start(engine)
                    started.append(surface)
                await supervisor.start_autostart()
                if on_ready is not None:
                    on_ready(engine, supervisor)
                poller = asyncio.create_task(_poll_requests(supervisor, poll_interval))
                stopped = asyncio.create_task(stop.wait())
                exited = asyncio.create_task(supervisor.wait_exit())
                await asyncio.wait({stopped, exited}, return_when=asyncio.FIRST_COMPLETED)
                stopped.cancel()
                exited.cancel()
            finally:
                for surface in reversed(started):
                    await surface.stop()
                if poller is not None:
                    poller.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await poller
                code = supervisor.exit_code or 0
                failed = tuple(
                    s.name
                    for s in supervisor.statuses()
                    if s.state is ServiceState.FAILED
                    and supervisor.definition(s.name).options.exit_on_failure
                )
                if on_stopping is not None:
                    on_stopping("stop requested" if code == 0 else "a service failed")
            # Leaving the engine stops every service and saves their last state.
    return ServeResult(code, failed if code else ())


async def work(
    served: Served,
    database_url: str | None,
    *,
    queues: Sequence[str] | None = None,
    concurrency: int = 1000,
    name: str | None = None,
    shutdown_grace: float = 30.0,
    lease_ttl: float = LEASE_TTL,
    on_ready: Callable[[Engine], None] | None = None,
    on_stopped: Callable[[Engine], None] | None = None,
    retention: RetentionPolicy | None = None,
    metrics: Metrics | None = None,
    dask: Any = None,
) -> None:
    """Execute runs of the served tasks from the shared queue until SIGINT or SIGTERM.

    On a stop, the runs executing get `shutdown_grace` seconds to finish; those still
    executing then are interrupted and given back, with those not started, for another
    worker (an interrupted attempt uses no retry). With `retention`, finished runs older
    than it says are pruned in the background. `metrics` are made to watch the engine
    once it is started. `dask` is where the calls of `executor="dask"` tasks go (see
    `Engine`).
    """
    stop = asyncio.Event()
    with _on_signals(asyncio.get_running_loop(), stop.set):
        async with (
            Engine(
                database_url,
                tasks=served.tasks,
                concurrency=concurrency,
                queues=queues or None,
                name=name,
                shutdown_grace=shutdown_grace,
                lease_ttl=lease_ttl,
                dask=dask,
            ) as engine,
            keep_pruning(engine.store, retention),
        ):
            if metrics is not None:
                metrics.watch(engine)
            if on_ready is not None:
                on_ready(engine)
            await stop.wait()
        if on_stopped is not None:
            on_stopped(engine)  # closed: what it held is finished or given back


def run_to_end(main: Coroutine[Any, Any, T], *, grace: float = 1.0) -> T:
    """Run `main` in a new event loop, like `asyncio.run`, but with a bounded end.

    `asyncio.run` waits for every task left when `main` returns to finish its
    cancellation, for ever if need be. A service loop a stop gave up on may never finish;
    here the tasks left get `grace` seconds after being cancelled, then the loop closes.
    """
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            left = asyncio.all_tasks(loop)
            for task in left:
                task.cancel()
            if left:
                loop.run_until_complete(asyncio.wait(left, timeout=grace))
                stuck = [task.get_name() for task in left if not task.done()]
                if stuck:
                    logger.warning("left running at exit: %s", ", ".join(sorted(stuck)))
                for task in left:
                    # Already reported: no "Task was destroyed but it is pending!" as well.
                    # (asyncio's own flag, the one `gather` clears for the same reason.)
                    task._log_destroy_pending = False  # type: ignore[attr-defined]
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
