"""`Supervisor`: starts, stops and restarts services, and keeps what happened to them.

State is in memory and, when the supervisor is given a store, saved there on every state
change and every start and end, so that a later process counts on from where this one
left off. Saves go through one writer thread, in order, and never block the event loop.
Time is injectable (`clock` and an async `sleep`), so the restart
window and burst can be tested exactly under fake time. The restart decision itself is
`RestartPolicy.next_restart`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pydantic_core import to_jsonable_python

from .. import context as context_module
from ..aio import maybe_await, resolve
from ..context import Context
from ..exceptions import DuplicateTaskError, FieldError, InputValidationError
from ..runs import ErrorInfo, LogLine
from ..store.base import (
    ServiceAction,
    ServiceLogLine,
    ServiceRecord,
    ServiceRequest,
    ServiceStartRecord,
    ServiceStore,
)
from ..tasks.signature import validate_special
from .definition import (
    ClassService,
    FunctionService,
    Service,
    ServiceDefinition,
    definitions_of,
)
from .errors import AttributeValidationError, ServiceError, ServiceRunningError, UnknownServiceError
from .instances import OWN_CODE, LiveInstance, LoopService, ServiceClass
from .status import (
    AttributeChange,
    ExitReason,
    ServiceAttributes,
    ServiceStart,
    ServiceState,
    ServiceStatus,
)

__all__ = ["ACTIONS", "EXIT_SERVICE_FAILED", "Supervisor", "status_summary"]

#: What a service request may ask for (`set`: attributes of a service class).
ACTIONS = tuple(ServiceAction)
#: Seconds a request for a service this process does not run waits for the process
#: that runs it before it is answered here as unknown.
UNKNOWN_GRACE = 5.0

#: The exit code a serving process should use when an `exit_on_failure` service failed.
EXIT_SERVICE_FAILED = 1

Listener = Callable[[ServiceStatus], None]
LogListener = Callable[[ServiceLogLine], None]
AttributeListener = Callable[[AttributeChange], None]

logger = logging.getLogger("taskloom.services")

#: How many of its last starts a service loaded from the store keeps in its history.
LOADED_HISTORY = 100


class _Slot:
    """Everything the supervisor keeps about one registered service."""

    def __init__(self, definition: ServiceDefinition, *, since: float, log_limit: int) -> None:
        self.definition = definition
        self.state = ServiceState.STOPPED
        self.since = since
        self.starts = 0
        self.restarts = 0
        self.restart_times: list[float] = []
        self.next_restart_at: float | None = None
        self.last_error: ErrorInfo | None = None
        self.stop_timed_out = False
        self.history: list[ServiceStart] = []
        self.logs: deque[LogLine] = deque(maxlen=log_limit)
        self.config: Any = None
        self.state_value: Any = None  # the `state` special: kept across starts
        self.task: asyncio.Task[None] | None = None
        self.context: Context | None = None


@dataclass(slots=True)
class _AttributeSave:
    """Attribute values waiting for the writer; the class's own assignments in a row are
    merged into one save (the last value of each), so a loop that sets an attribute at
    every turn costs one write per writer round, not one per turn."""

    service: str
    values: dict[str, Any]
    at: float
    by: str
    record: bool


class _ServiceSink:
    """Where the context of one start sends its log lines (thread-safe: deque appends)."""

    def __init__(
        self,
        slot: _Slot,
        start: ServiceStart,
        clock: Callable[[], float],
        save: Callable[[ServiceLogLine], None],
    ) -> None:
        self._slot = slot
        self._start = start
        self._clock = clock
        self._save = save

    def report_progress(self, fraction: float, message: str | None) -> None:
        text = f"progress {fraction:.0%}" + (f": {message}" if message else "")
        self.report_log("INFO", text)

    def report_log(self, level: str, message: str) -> None:
        name = self._slot.definition.name
        line = LogLine(
            f"{name}#{self._start.number}", self._start.number, self._clock(), level, message
        )
        self._slot.logs.append(line)
        self._save(
            ServiceLogLine(
                service=name,
                start_number=self._start.number,
                created_at=line.created_at,
                level=level,
                message=line.message,  # made storable by LogLine
            )
        )


class Supervisor:
    """Runs registered services in the current event loop.

    Use it as `async with Supervisor() as supervisor:` or call `close()` at the end.
    `clock` returns seconds (default: `time.time`, so times can be stored and shown);
    `sleep` waits that many seconds of the same clock.

    With a `store` (open; the supervisor does not close it), each service registered picks
    up its saved state, counts, restart times, last error, config and last starts; one that
    was active when its process died is loaded as stopped, its open start ended as `lost`.
    Loading reads the store at once, on the caller's thread.
    """

    def __init__(
        self,
        services: Iterable[ServiceDefinition | type[Service]] = (),
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        log_limit: int = 1000,
        store: ServiceStore | None = None,
    ) -> None:
        self._store = store
        # One thread writes every save, in the order they were made.
        self._writer: ThreadPoolExecutor | None = (
            None
            if store is None
            else ThreadPoolExecutor(max_workers=1, thread_name_prefix="taskloom-services-store")
        )
        self._clock = clock
        self._sleep = sleep
        self._log_limit = log_limit
        self._slots: dict[str, _Slot] = {}
        self._listeners: list[Listener] = []
        self._log_listeners: list[LogListener] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._exit = asyncio.Event()
        self._exit_code: int | None = None
        self._closed = False
        # Log lines wait here (from any thread) until the writer saves them in one go.
        self._log_lock = threading.Lock()
        self._pending_logs: list[ServiceLogLine] = []
        # The instances of service classes with loops, by class name, and their changes.
        self._instances: dict[str, LiveInstance] = {}
        self._attribute_listeners: list[AttributeListener] = []
        self._attribute_lock = threading.Lock()
        self._pending_attributes: list[_AttributeSave] = []
        self._attributes_queued = False
        context_module.install_log_capture()
        for item in services:
            self.register(item)

    async def __aenter__(self) -> Supervisor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- registry --------------------------------------------------------------------

    def register(self, service: ServiceDefinition | type[Service]) -> ServiceDefinition:
        """Add a service; registering the same one twice is harmless.

        A `Service` class with loops adds each of its loops (the first one's definition is
        returned) and makes its one instance, which takes the attribute values kept in the
        store from earlier processes.
        """
        definitions = definitions_of(service)
        for definition in definitions:
            self._register(definition)
        return definitions[0]

    def _register(self, definition: ServiceDefinition) -> ServiceDefinition:
        existing = self._slots.get(definition.name)
        if existing is not None:
            if existing.definition.same_as(definition):
                return existing.definition
            raise DuplicateTaskError(
                f"two different services are named {definition.name!r}; "
                "give one of them another `name`"
            )
        if isinstance(definition, LoopService):
            self._make_instance(definition.owner)
        slot = _Slot(definition, since=self._clock(), log_limit=self._log_limit)
        if self._store is not None and not self._load(slot, self._store):
            self._save(slot)  # known to the store (as stopped) from now on
        self._slots[definition.name] = slot
        return definition

    def definition(self, name: str) -> ServiceDefinition:
        """The definition of a registered service."""
        return self._slot(name).definition

    @property
    def names(self) -> list[str]:
        return list(self._slots)

    def _slot(self, name: str) -> _Slot:
        try:
            return self._slots[name]
        except KeyError:
            raise UnknownServiceError(name, list(self._slots)) from None

    # --- status, logs, listeners ---------------------------------------------------------

    def status(self, name: str) -> ServiceStatus:
        slot = self._slot(name)
        config = slot.config
        return ServiceStatus(
            name=name,
            state=slot.state,
            since=slot.since,
            starts=slot.starts,
            restarts=slot.restarts,
            restart_times=tuple(slot.restart_times),
            next_restart_at=slot.next_restart_at,
            last_error=slot.last_error,
            stop_timed_out=slot.stop_timed_out,
            history=tuple(dataclasses.replace(start) for start in slot.history),
            config=None if config is None else to_jsonable_python(config, fallback=repr),
        )

    def statuses(self) -> list[ServiceStatus]:
        return [self.status(name) for name in self._slots]

    def logs(self, name: str) -> list[LogLine]:
        """The last lines the service logged (at most `log_limit`), oldest first."""
        return list(self._slot(name).logs)

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(status)` on every state change of every service."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def add_log_listener(self, listener: LogListener) -> None:
        """Call `listener(line)` on the event loop for every line a service logs."""
        self._log_listeners.append(listener)

    def remove_log_listener(self, listener: LogListener) -> None:
        self._log_listeners.remove(listener)

    def _on_log(self, line: ServiceLogLine) -> None:
        """A line logged by a service, from any thread: saved, and told to log listeners."""
        self._save_log(line)
        loop = self._loop
        if self._log_listeners and loop is not None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody listens any more
                loop.call_soon_threadsafe(self._tell_log_listeners, line)

    def _tell_log_listeners(self, line: ServiceLogLine) -> None:
        for listener in list(self._log_listeners):
            try:
                listener(line)
            except Exception:
                logger.exception("service log listener %r failed", listener)

    def _set_state(self, slot: _Slot, state: ServiceState) -> None:
        slot.state = state
        slot.since = self._clock()
        if state is not ServiceState.RESTARTING:
            slot.next_restart_at = None
        self._save(slot)
        status = self.status(slot.definition.name)
        for listener in list(self._listeners):
            try:
                listener(status)
            except Exception:
                # A broken listener must not stop the services it watches.
                logger.exception("service listener %r failed", listener)

    # --- service classes and their attributes ---------------------------------------------

    @property
    def instance_names(self) -> list[str]:
        """The service classes with loops registered here, by name."""
        return list(self._instances)

    def instance(self, name: str) -> Service:
        """The one instance of a service class with loops (its loops' `self`)."""
        return self._instance(name).instance

    def attributes(self, name: str) -> ServiceAttributes:
        """The attributes of a service class as its instance holds them now."""
        live = self._instance(name)
        updated = {
            attribute: {"at": when[0], "by": when[1]}
            for attribute, when in live.updated.items()
            if when is not None
        }
        return ServiceAttributes(
            service=name,
            values=live.values(),
            schema=live.attributes.schema,
            updated=updated,
            loops=tuple(loop.name for loop in live.definition.loops),
        )

    async def set_attributes(
        self, name: str, values: Mapping[str, Any], *, by: str = "python"
    ) -> ServiceAttributes:
        """Set attributes of a service class while its loops run: each loop sees a new
        value at its next read of `self.<attribute>`. Every value is validated first
        (`AttributeValidationError` naming each attribute at fault, and none is set); the
        change is saved with `by` (who made it) before this returns, and told to the
        attribute listeners."""
        live = self._instance(name)
        self._loop = asyncio.get_running_loop()
        live.set(values, by=by)
        await self.flush()
        return self.attributes(name)

    def add_attribute_listener(self, listener: AttributeListener) -> None:
        """Call `listener(change)` on the event loop for every change of an attribute,
        made from outside or by the class's own code."""
        self._attribute_listeners.append(listener)

    def remove_attribute_listener(self, listener: AttributeListener) -> None:
        self._attribute_listeners.remove(listener)

    def _instance(self, name: str) -> LiveInstance:
        live = self._instances.get(name)
        if live is not None:
            return live
        slot = self._slots.get(name)
        if slot is not None and isinstance(slot.definition, LoopService):
            hint = f"; attributes belong to the class: {slot.definition.owner.name!r}"
        elif slot is not None:
            hint = f"; {name!r} is a service without attributes"
        else:
            served = ", ".join(sorted(self._instances))
            hint = f"; service classes served: {served}" if served else "; none is served here"
        raise UnknownServiceError(name, what="service class", hint=hint)

    def _make_instance(self, definition: ServiceClass) -> LiveInstance:
        """The instance of a service class, made at its first loop's registration."""
        live = self._instances.get(definition.name)
        if live is not None:
            if live.definition.cls is not definition.cls:
                raise DuplicateTaskError(
                    f"two different service classes are named {definition.name!r}; "
                    "give one of them another `name`"
                )
            return live
        instance, attributes = definition.make()
        live = LiveInstance(
            definition, instance, attributes, clock=self._clock, changed=self._attributes_changed
        )
        if self._store is not None:
            records = self._store.declare_service_attributes(
                definition.name, attributes.defaults(), declared_at=self._clock()
            )
            for record in records:
                if record.updated_by is None or record.name not in attributes:
                    continue
                try:
                    value = attributes.check_one(record.name, record.value)
                except AttributeValidationError as exc:
                    logger.warning("a saved value no longer fits its attribute; dropped: %s", exc)
                    continue
                live.restore(record.name, value, at=record.updated_at, by=record.updated_by)
        live.bind()
        self._instances[definition.name] = live
        return live

    def _attributes_changed(
        self, live: LiveInstance, values: dict[str, Any], at: float, by: str
    ) -> None:
        """Attributes were set (from any thread): saved in the background, and told to
        the attribute listeners on the loop."""
        self._save_attributes(_AttributeSave(live.name, values, at, by, record=by != OWN_CODE))
        if not self._attribute_listeners:
            return
        change = AttributeChange(service=live.name, values=values, changed_at=at, changed_by=by)
        loop = self._loop
        if loop is None:
            self._tell_attribute_listeners(change)
            return
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody listens any more
            loop.call_soon_threadsafe(self._tell_attribute_listeners, change)

    def _tell_attribute_listeners(self, change: AttributeChange) -> None:
        for listener in list(self._attribute_listeners):
            try:
                listener(change)
            except Exception:
                logger.exception("service attribute listener %r failed", listener)

    def _save_attributes(self, save: _AttributeSave) -> None:
        """Queue attribute values for the writer (thread-safe), in the order they were set."""
        store, writer = self._store, self._writer
        if store is None or writer is None:
            return
        with self._attribute_lock:
            pending = self._pending_attributes
            last = pending[-1] if pending else None
            if (
                last is not None
                and not save.record
                and not last.record
                and last.service == save.service
            ):
                last.values.update(save.values)
                last.at = save.at
            else:
                pending.append(save)
            if self._attributes_queued:
                return  # a save of the queue is already on its way
            self._attributes_queued = True
        with contextlib.suppress(RuntimeError):  # after close: not saved
            self._submit(writer, self._write_attributes, store)

    def _write_attributes(self, store: ServiceStore) -> None:
        with self._attribute_lock:
            saves, self._pending_attributes = self._pending_attributes, []
            self._attributes_queued = False
        for save in saves:
            store.set_service_attributes(
                save.service,
                save.values,
                changed_at=save.at,
                changed_by=save.by,
                record=save.record,
            )

    # --- exit on failure -----------------------------------------------------------------

    @property
    def exit_code(self) -> int | None:
        """Non-zero once an `exit_on_failure` service has failed for good; else None."""
        return self._exit_code

    @property
    def exit_requested(self) -> bool:
        return self._exit.is_set()

    async def wait_exit(self) -> int:
        """Wait until a service asks the serving process to exit; return the exit code."""
        await self._exit.wait()
        assert self._exit_code is not None
        return self._exit_code

    # --- control -------------------------------------------------------------------------

    async def start(self, name: str, config: Any = None) -> ServiceStatus:
        """Start a service; an invalid `config` raises before anything starts.

        `config=None` starts it with the config it was last given (kept in the store, so
        also after its process restarted), or with the config's defaults if it never had one.
        """
        slot = self._slot(name)
        if slot.state.active:
            raise ServiceRunningError(
                f"service {name!r} is {slot.state}: stop it first, or use restart"
            )
        if config is not None or slot.config is None:
            slot.config = self._validate_config(slot.definition, config)
        return self._launch(slot)

    async def stop(self, name: str) -> ServiceStatus:
        """Stop a service: cancel its loop, wait up to `stop_timeout`, then give up on it."""
        slot = self._slot(name)
        task = slot.task
        if task is None or task.done() or not slot.state.active:
            return self.status(name)
        slot.task = None  # from now on, whatever the old loop does no longer sets the state
        if slot.context is not None:
            slot.context._cancel()
        task.cancel()
        # Real time, not the injected clock: this bounds a wait on code that may never end.
        await asyncio.wait({task}, timeout=slot.definition.options.stop_timeout)
        if not task.done():
            slot.stop_timed_out = True
            logger.warning(
                "service %r ignored the stop for %ss; giving up on it",
                name,
                slot.definition.options.stop_timeout,
            )
            current = slot.history[-1] if slot.history else None
            if current is not None and current.ended_at is None:
                current.ended_at = self._clock()
                current.exit_reason = ExitReason.STOPPED
                self._save_start(slot, current)
        self._set_state(slot, ServiceState.STOPPED)
        return self.status(name)

    async def restart(self, name: str, config: Any = None) -> ServiceStatus:
        """Stop (if started) and start again; `config=None` keeps the current config."""
        slot = self._slot(name)
        value = slot.config if config is None else self._validate_config(slot.definition, config)
        await self.stop(name)
        slot.config = value
        return self._launch(slot)

    async def start_autostart(self) -> list[str]:
        """Start every registered `autostart` service not started yet, each with the config
        it was last given; return their names."""
        started = []
        for name, slot in self._slots.items():
            if slot.definition.options.autostart and not slot.state.active:
                await self.start(name)
                started.append(name)
        return started

    async def close(self) -> None:
        """Stop every service (each bounded by its `stop_timeout`)."""
        if self._closed:
            return
        self._closed = True
        await asyncio.gather(*(self.stop(name) for name in self._slots))
        context_module.uninstall_log_capture()
        writer, self._writer = self._writer, None
        if writer is not None:
            # Every save made so far is written before close returns.
            await asyncio.to_thread(writer.shutdown, wait=True)

    def _validate_config(self, definition: ServiceDefinition, config: Any) -> Any:
        kind = definition.specials.config
        if kind is None:
            if config:
                error = FieldError("config", "this service takes no config")
                raise InputValidationError(definition.name, [error], what="config")
            return None
        return validate_special(definition.name, "config", kind, config)

    def _launch(self, slot: _Slot) -> ServiceStatus:
        self._loop = asyncio.get_running_loop()
        slot.restart_times.clear()  # a start by a caller begins a fresh restart window
        slot.stop_timed_out = False
        self._set_state(slot, ServiceState.STARTING)
        # Each loop runs in its own copy of the context, so the current run context it sets
        # (for log capture) never leaks into the caller.
        slot.task = asyncio.get_running_loop().create_task(
            self._supervise(slot), name=f"taskloom-service-{slot.definition.name}"
        )
        return self.status(slot.definition.name)

    # --- the store ------------------------------------------------------------------------

    def _load(self, slot: _Slot, store: ServiceStore) -> bool:
        """Take up what the store kept of this service; False if it kept nothing."""
        name = slot.definition.name
        record = store.get_service(name)
        starts = list(reversed(store.get_service_starts(name, limit=LOADED_HISTORY)))
        if record is None and not starts:
            return False
        slot.history = [_start_from_record(s) for s in starts]
        if record is not None:
            try:
                slot.state = ServiceState(record.state)
            except ValueError:
                slot.state = ServiceState.STOPPED
            slot.since = record.since
            slot.starts = record.starts
            slot.restarts = record.restarts
            slot.restart_times = list(record.restart_times)
            slot.last_error = record.last_error
            slot.stop_timed_out = record.stop_timed_out
            slot.config = self._loaded_config(slot.definition, record.config)
        slot.starts = max(slot.starts, max((s.number for s in slot.history), default=0))
        lost_at = slot.since if record is None else record.updated_at
        for start in slot.history:
            if start.ended_at is None:  # its process died while it ran
                start.ended_at = max(lost_at, start.started_at)
                start.exit_reason = ExitReason.LOST
                self._save_start(slot, start)
        if slot.state.active:
            slot.state = ServiceState.STOPPED
            slot.since = self._clock()
        self._save(slot)
        return True

    def _loaded_config(self, definition: ServiceDefinition, config: Any) -> Any:
        if config is None or definition.specials.config is None:
            return None
        try:
            return self._validate_config(definition, config)
        except InputValidationError:
            logger.warning(
                "the saved config of service %r no longer fits it; it was dropped",
                definition.name,
            )
            return None

    def _save(self, slot: _Slot) -> None:
        """Save the service's record (its state now) in the background."""
        store, writer = self._store, self._writer
        if store is None or writer is None:
            return
        record = ServiceRecord(
            name=slot.definition.name,
            state=slot.state.value,
            since=slot.since,
            starts=slot.starts,
            restarts=slot.restarts,
            restart_times=list(slot.restart_times),
            last_error=slot.last_error,
            stop_timed_out=slot.stop_timed_out,
            config=slot.config,
            updated_at=self._clock(),
        )
        self._submit(writer, store.save_service, record)

    def _save_start(self, slot: _Slot, start: ServiceStart) -> None:
        """Save one start of the service (as it is now) in the background."""
        store, writer = self._store, self._writer
        if store is None or writer is None:
            return
        record = ServiceStartRecord(
            number=start.number,
            started_at=start.started_at,
            restart=start.restart,
            finished_at=start.ended_at,
            exit_reason=None if start.exit_reason is None else start.exit_reason.value,
            error=start.error,
        )
        self._submit(writer, store.save_service_start, slot.definition.name, record)

    def _save_log(self, line: ServiceLogLine) -> None:
        """Queue a log line for the writer (thread-safe); lines are saved in batches."""
        store, writer = self._store, self._writer
        if store is None or writer is None:
            return
        with self._log_lock:
            self._pending_logs.append(line)
            if len(self._pending_logs) > 1:
                return  # a save of the queue is already on its way
        # A line logged after close finds the writer shut down: it is not saved.
        with contextlib.suppress(RuntimeError):
            self._submit(writer, self._write_logs, store)

    def _write_logs(self, store: ServiceStore) -> None:
        with self._log_lock:
            lines, self._pending_logs = self._pending_logs, []
        if lines:
            store.add_service_log_lines(lines)

    async def flush(self) -> None:
        """Wait until every save made so far is written to the store."""
        writer = self._writer
        if writer is None:
            return
        with contextlib.suppress(RuntimeError):  # shut down: everything is written
            await asyncio.wrap_future(writer.submit(lambda: None))

    # --- requests from other processes -----------------------------------------------------

    async def handle_requests(self) -> int:
        """Perform the requests other processes left in the store; return how many.

        Each request's outcome is `{"ok": true, "status": {...}}` with the service's status
        after it, or `{"ok": false, "error": {"type", "message", "errors"}}` (`errors` lists
        the invalid fields of a config, each `{"field", "message"}`). The outcome is saved
        after the state changes it caused, so whoever reads it finds them in the store.
        A request for a service this supervisor does not run is left, for the serving
        process that runs it, for `UNKNOWN_GRACE` seconds; after that it is answered here
        (unknown service). The first answer recorded stands.
        """
        store = self._store
        if store is None:
            raise ServiceError("this supervisor has no store to take requests from")
        pending = await asyncio.to_thread(store.pending_service_requests)
        now = time.time()
        handled = 0
        for request in pending:
            known = request.service in self._slots or request.service in self._instances
            if not known and now - request.requested_at < UNKNOWN_GRACE:
                continue  # another serving process may run it
            outcome = await self.perform(request)
            await self.flush()
            if not await asyncio.to_thread(store.finish_service_request, request.id, outcome):
                logger.info(
                    "service request %d (%s %s) was answered by another process first",
                    request.id,
                    request.action,
                    request.service,
                )
            handled += 1
        return handled

    async def perform(self, request: ServiceRequest) -> dict[str, Any]:
        """Carry out one request; return its outcome (see `handle_requests`)."""
        try:
            action = request.action
            if action is ServiceAction.START:
                status = await self.start(request.service, request.config)
            elif action is ServiceAction.STOP:
                status = await self.stop(request.service)
            elif action is ServiceAction.RESTART:
                status = await self.restart(request.service, request.config)
            elif action is ServiceAction.SET:
                values = self._requested_values(request)
                by = request.requested_by or "request"
                attributes = await self.set_attributes(request.service, values, by=by)
                return {"ok": True, "attributes": attributes.as_dict()}
            else:
                raise ServiceError(
                    f"unknown action {request.action!r}; expected one of: {', '.join(ACTIONS)}"
                )
        except (ServiceError, InputValidationError) as exc:
            errors = exc.errors if isinstance(exc, InputValidationError) else []
            return {
                "ok": False,
                "error": {
                    "type": type(exc).__name__,
                    "message": str(exc),
                    "errors": [e.as_dict() for e in errors],
                },
            }
        if status.state is ServiceState.STARTING:
            # Let the new loop begin, so the outcome says `running` when it got that far.
            await asyncio.sleep(0)
            status = self.status(request.service)
        return {"ok": True, "status": status_summary(status)}

    def _requested_values(self, request: ServiceRequest) -> dict[str, Any]:
        """The values a `set` request asks for: `{"values": {...}}` as JSON values and
        `{"texts": {...}}` as typed on a command line, read by each attribute's type."""
        config = request.config if request.config is not None else {}
        if not isinstance(config, dict) or set(config) - {"values", "texts"}:
            raise ServiceError(
                f"a set request of service {request.service!r} holds `values` and/or "
                f"`texts` (objects by attribute name); got {config!r}"
            )
        values = dict(config.get("values") or {})
        texts = config.get("texts") or {}
        if texts:
            values.update(self._instance(request.service).attributes.from_texts(texts))
        return values

    @staticmethod
    def _submit(writer: ThreadPoolExecutor, fn: Callable[..., None], *args: Any) -> None:
        future = writer.submit(fn, *args)
        future.add_done_callback(_log_save_error)

    # --- the loop ---------------------------------------------------------------------

    async def _supervise(self, slot: _Slot) -> None:
        me = asyncio.current_task()
        policy = slot.definition.options.restart_policy
        restart = False
        while True:
            if restart:
                self._set_state(slot, ServiceState.STARTING)
            outcome = await self._run_once(slot, restart=restart)
            if slot.task is not me:  # given up on by a stop: it no longer owns the state
                return
            if outcome is ExitReason.COMPLETED:
                self._set_state(slot, ServiceState.COMPLETED)
                return
            at = policy.next_restart(slot.restart_times, failed_at=self._clock())
            if at is None:
                self._set_state(slot, ServiceState.FAILED)
                if policy.exit_on_failure:
                    self._request_exit(slot)
                return
            slot.next_restart_at = at
            self._set_state(slot, ServiceState.RESTARTING)
            await self._sleep(max(at - self._clock(), 0.0))
            slot.restart_times.append(self._clock())
            slot.restarts += 1
            restart = True

    async def _run_once(self, slot: _Slot, *, restart: bool) -> ExitReason:
        """One start of the service; a stop (cancellation) propagates after being recorded."""
        definition = slot.definition
        slot.starts += 1
        record = ServiceStart(number=slot.starts, started_at=self._clock(), restart=restart)
        slot.history.append(record)
        self._save_start(slot, record)
        self._save(slot)
        context = Context(
            run_id=f"{definition.name}#{record.number}",
            task=definition.name,
            attempt=record.number,
            timestamp=int(record.started_at * 1000),
            sink=_ServiceSink(slot, record, self._clock, self._on_log),
        )
        slot.context = context
        token = context_module.set_current(context)
        try:
            await self._call(slot, context)
        except asyncio.CancelledError:
            context._cancel()
            if record.ended_at is None:
                record.ended_at = self._clock()
                record.exit_reason = ExitReason.STOPPED
            raise
        except Exception as exc:
            record.ended_at = self._clock()
            record.error = ErrorInfo.from_exception(exc)
            if not context.cancelled:
                slot.last_error = record.error
            # A loop that was asked to stop and then raised (say RunCancelledError) stopped.
            record.exit_reason = ExitReason.STOPPED if context.cancelled else ExitReason.FAILED
            return ExitReason.FAILED
        else:
            record.ended_at = self._clock()
            record.exit_reason = ExitReason.STOPPED if context.cancelled else ExitReason.COMPLETED
            return ExitReason.COMPLETED
        finally:
            # A loop given up on by a stop may be closed much later, when its event loop
            # is, outside the context it began in: then there is nothing left to reset.
            with contextlib.suppress(ValueError):
                context_module.reset_current(token)
            if record.ended_at is not None:
                self._save_start(slot, record)

    def _kwargs(self, slot: _Slot, context: Context) -> dict[str, Any]:
        specials = slot.definition.specials
        kwargs: dict[str, Any] = {}
        if specials.config is not None:
            kwargs["config"] = slot.config
        if specials.state is not None:
            if slot.state_value is None:
                slot.state_value = specials.state()
            kwargs["state"] = slot.state_value
        if specials.context is not None:
            kwargs[specials.context] = context
        return kwargs

    async def _call(self, slot: _Slot, context: Context) -> None:
        definition = slot.definition
        kwargs = self._kwargs(slot, context)
        if isinstance(definition, LoopService):
            # The class's one instance: every loop of it shares `self`.
            bound = definition.fn.__get__(self._instances[definition.owner.name].instance)
            self._set_state(slot, ServiceState.RUNNING)
            if definition.is_async:
                await bound(**kwargs)
            else:
                await _in_thread(lambda: bound(**kwargs), name=definition.name)
            return
        if isinstance(definition, ClassService):
            instance = definition.cls()
            instance.context = context
            await maybe_await(instance.setup())
            try:
                self._set_state(slot, ServiceState.RUNNING)
                await instance.run(**kwargs)
            finally:
                await maybe_await(instance.teardown())
            return
        assert isinstance(definition, FunctionService)
        self._set_state(slot, ServiceState.RUNNING)
        if definition.is_async:
            await definition.fn(**kwargs)
        else:
            await _in_thread(lambda: definition.fn(**kwargs), name=definition.name)

    def _request_exit(self, slot: _Slot) -> None:
        logger.error(
            "service %r failed and has exit_on_failure set: the process should exit",
            slot.definition.name,
        )
        if self._exit_code is None:
            self._exit_code = EXIT_SERVICE_FAILED
        self._exit.set()


def status_summary(status: ServiceStatus) -> dict[str, Any]:
    """The JSON-compatible essentials of a status (no history, no traceback)."""
    error = status.last_error
    return {
        "name": status.name,
        "state": status.state.value,
        "since": status.since,
        "starts": status.starts,
        "restarts": status.restarts,
        "next_restart_at": status.next_restart_at,
        "stop_timed_out": status.stop_timed_out,
        "last_error": None if error is None else {"type": error.type, "message": error.message},
        "config": status.config,
    }


def _start_from_record(record: ServiceStartRecord) -> ServiceStart:
    reason = record.exit_reason
    try:
        exit_reason = None if reason is None else ExitReason(reason)
    except ValueError:
        exit_reason = ExitReason.STOPPED
    return ServiceStart(
        number=record.number,
        started_at=record.started_at,
        restart=record.restart,
        ended_at=record.finished_at,
        exit_reason=exit_reason,
        error=record.error,
    )


def _log_save_error(future: Future[None]) -> None:
    error = future.exception() if not future.cancelled() else None
    if error is not None:
        # A database that is down must not stop the services; the next save may succeed.
        logger.error("could not save the state of a service: %s", error, exc_info=error)


async def _in_thread(fn: Callable[[], Any], *, name: str) -> Any:
    """Run `fn` in a daemon thread of its own and wait for it.

    Not the loop's default executor: a loop that ignores the stop would keep that executor,
    and so the process, from shutting down. A cancelled wait leaves the thread running; the
    caller has already told it to stop through its context.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    run_context = contextvars.copy_context()

    def target() -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = run_context.run(fn)
        except BaseException as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(resolve, future, result, error)

    threading.Thread(target=target, name=f"taskloom-service-{name}", daemon=True).start()
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        # The thread was told to stop through its context; the stop is over when it ends
        # (or when the stop gives up waiting, cancelling this wait).
        await asyncio.wait({future})
        raise
