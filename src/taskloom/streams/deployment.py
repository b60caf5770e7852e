"""A deployment: a pipeline's stages running in this process, on a bus, in a namespace.

Topics of a deployment named `demo` are `demo.<topic>` on the bus, so one pipeline can be
deployed twice (under two names) without crosstalk. The deployment and the status of each
of its stages are saved in the store every `status_interval` seconds (not per message),
and a stop requested through the store (`taskloom pipeline stop`) is acted on then.
The same deployment name may run in several processes over NATS, each process running
some of the stages (`stages=[...]`): they share the namespace, the record and the stop.
Each process is a *part* of the deployment, with a record of its own: the deployment is
stopped once every part is (or was lost), and a stop request reaches them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ..store import DeploymentStore
from ..store.base import DeploymentPartRecord, DeploymentRecord
from ..tasks.signature import dump_special
from .buses import Bus, open_bus
from .errors import DeploymentNotFoundError, PortValidationError, WiringError
from .messages import Message, now_ms
from .pipeline import Pipeline
from .queues import Backpressure, Subscription
from .runner import StageRunner
from .stages import StageSpec
from .status import (
    DeploymentState,
    DeploymentStatus,
    PartState,
    PartStatus,
    StageStatus,
)

__all__ = ["Deployment", "deploy", "deployment_status", "request_stop"]

logger = logging.getLogger("taskloom.streams")

_PLAIN = (int, float, str, bool, bytes)


class Deployment:
    """A running pipeline (or the part of it this process runs). See `deploy()`."""

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        name: str,
        bus: Bus,
        owns_bus: bool,
        store: DeploymentStore | None,
        stages: Iterable[str] | None,
        configs: dict[str, Any],
        status_interval: float,
    ) -> None:
        self.pipeline = pipeline
        self.name = name
        self.bus = bus
        self.store = store
        self.namespace = f"{name}."
        self.status_interval = status_interval
        self._owns_bus = owns_bus
        self._configs = configs
        chosen = set(stages) if stages is not None else None
        self.local_stages = [s for s in pipeline.stages if chosen is None or s.name in chosen]
        self.runners: list[StageRunner] = []
        self.started_at = time.time()
        self.stopped_at: float | None = None
        self.state = DeploymentState.RUNNING
        #: This process's part of the deployment (its record in the store).
        self.part = DeploymentPartRecord(
            deployment=name,
            part=uuid.uuid4().hex[:12],
            host=socket.gethostname(),
            pid=os.getpid(),
            stages=[s.name for s in self.local_stages],
            state="running",
            started_at=self.started_at,
            updated_at=self.started_at,
            status_interval=status_interval,
        )
        self._stopped = asyncio.Event()
        self._status_task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Task[None] | None = None
        # Kept in the final record: the other processes of this deployment stop on it too.
        self._stop_requested = False
        self._on_stop: list[Callable[[Deployment], None]] = []
        self._validators: dict[str, list[tuple[str, str, Any, Callable[[Any], Any]]]] = {}
        self._subscriptions: list[Subscription] = []
        # A status save runs in a thread that a stop's cancel does not end: under this lock,
        # one that comes after the part's last record writes nothing, so a late save never
        # marks a stopped part running again.
        self._store_lock = threading.Lock()
        self._left = False

    def __repr__(self) -> str:
        return f"<Deployment {self.name!r} of {self.pipeline.name!r} on {self.bus.url}>"

    async def _start(self) -> None:
        if self._owns_bus:
            await self.bus.start()
        try:
            kept = self.pipeline.kept_topics
            if kept:
                await self.bus.keep(
                    f"taskloom_{self.name}",
                    [self.namespace + t for t in kept],
                    max_age=self.pipeline.keep_max_age,
                )
            self.runners = [
                StageRunner(
                    spec,
                    namespace=self.namespace,
                    bus=self.bus,
                    config=self._configs[spec.name],
                    kept=frozenset(kept),
                )
                for spec in self.local_stages
            ]
            # Every stage listens before any source publishes.
            readies = [s.ready for r in self.runners for s in r.subscriptions if s.ready]
            if readies:
                await asyncio.gather(*readies)
            await self._join()
        except BaseException:
            for runner in self.runners:
                await runner.stop()
            if self._owns_bus:
                await self.bus.close()
            raise
        for runner in self.runners:
            runner.start()
        self._status_task = asyncio.get_running_loop().create_task(self._report())

    # messages from outside -------------------------------------------------------------
    async def publish(
        self,
        topic: str,
        value: Any,
        *,
        timestamp: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Publish `value` on `topic` (timestamp: now in ms by default).

        The value is checked against the type of every stage input the topic feeds;
        `PortValidationError` names the stage, the input and what was expected.
        """
        for stage, port, annotation, validate in self._validators_for(topic):
            if type(value) is annotation:
                continue
            try:
                value = validate(value)
            except ValidationError as exc:
                message = "; ".join(e["msg"] for e in exc.errors())
                raise PortValidationError(self.name, topic, stage, port, message) from None
        stamp = now_ms() if timestamp is None else timestamp
        await self.bus.publish(self.namespace + topic, Message(stamp, value, metadata))

    def _validators_for(self, topic: str) -> list[tuple[str, str, Any, Callable[[Any], Any]]]:
        validators = self._validators.get(topic)
        if validators is None:
            validators = []
            for spec in self.pipeline.stages:
                for port, wired in spec.inputs.items():
                    input_port = spec.input_ports.get(port)
                    if wired == topic and input_port is not None:
                        annotation = input_port.annotation
                        adapter = TypeAdapter(annotation)
                        validators.append((spec.name, port, annotation, adapter.validate_python))
            self._validators[topic] = validators
        return validators

    def subscribe(
        self,
        topic: str,
        *,
        maxsize: int = 1000,
        backpressure: Backpressure | str = Backpressure.BLOCK,
    ) -> Subscription:
        """A subscription to `topic`: `async for message in deployment.subscribe("sums")`.

        Over NATS, `await subscription.ready` before relying on messages from other
        processes. Close it (or use `async with`) when done: a `block` subscription
        nobody reads holds its producers back.
        """
        subscription = self.bus.subscribe(
            self.namespace + topic, maxsize=maxsize, policy=backpressure
        )
        self._subscriptions.append(subscription)
        return subscription

    async def has_subscribers(self, topic: str) -> bool:
        """Whether anyone listens to `topic` of this deployment."""
        return await self.bus.has_subscribers(self.namespace + topic)

    # status -------------------------------------------------------------------------------
    def stage_statuses(self) -> list[StageStatus]:
        """The live status of the stages this process runs."""
        now = time.time()
        statuses = [runner.status() for runner in self.runners]
        for status in statuses:
            status.updated_at = now
        return statuses

    def status(self) -> DeploymentStatus:
        """The live status of this process's part of the deployment."""
        return DeploymentStatus(
            name=self.name,
            pipeline=self.pipeline.name,
            state=self.state,
            bus=self.bus.url,
            started_at=self.started_at,
            stopped_at=self.stopped_at,
            topics=self.pipeline.topics(),
            stages=self.stage_statuses(),
            parts=[_part_status(self.part, time.time())],
        )

    def _record(self) -> DeploymentRecord:
        return DeploymentRecord(
            name=self.name,
            pipeline=self.pipeline.name,
            state=self.state.value,
            bus=self.bus.url,
            topics=self.pipeline.topics(),
            started_at=self.started_at,
            stopped_at=self.stopped_at,
            updated_at=time.time(),
            stages=[_describe(spec, self._configs.get(spec.name)) for spec in self.pipeline.stages],
        )

    async def _join(self) -> None:
        """Record this part, and the deployment unless another part runs it already."""
        store = self.store
        if store is None:
            return
        record, part = self._record(), self.part
        stages = [s.record(self.name) for s in self.stage_statuses()]

        def join() -> None:
            stored = store.join_deployment(record, part)
            self._stop_requested = stored.stop_requested
            store.save_stage_records(self.name, stages)

        await asyncio.to_thread(join)

    async def _save(self) -> None:
        """Save the stages' status and this part's (its heartbeat)."""
        store = self.store
        if store is None:
            return
        now = time.time()
        part = self.part = replace(self.part, updated_at=now)
        stages = [s.record(self.name) for s in self.stage_statuses()]

        def save() -> None:
            with self._store_lock:
                if self._left:
                    return
                store.save_stage_records(self.name, stages)
                store.save_deployment_part(part)

        await asyncio.to_thread(save)

    async def _report(self) -> None:
        store = self.store
        while True:
            await asyncio.sleep(self.status_interval)
            try:
                await self._save()
                if store is not None:
                    record = await asyncio.to_thread(store.get_deployment, self.name)
                    if record is not None and record.stop_requested:
                        self._stop_requested = True
                        self._stopping = asyncio.get_running_loop().create_task(self.stop())
                        return
            except Exception as exc:  # the store is away for a moment: try next time
                logger.warning("deployment %r: could not save its status: %s", self.name, exc)

    # the end ------------------------------------------------------------------------------
    async def stop(self) -> None:
        """Stop every stage this process runs, save the final status, release the bus."""
        if self.state is DeploymentState.STOPPED:
            await self._stopped.wait()
            return
        self.state = DeploymentState.STOPPED
        task = self._status_task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for runner in self.runners:
            await runner.stop()
        for subscription in self._subscriptions:
            subscription.close()
        self.stopped_at = time.time()
        try:
            await self._leave()
        finally:
            if self._owns_bus:
                await self.bus.close()
            self._stopped.set()
            for callback in self._on_stop:
                callback(self)

    async def _leave(self) -> None:
        """Save the stages' last status and record this part stopped (and the deployment,
        when it was the last part running it)."""
        self.part = replace(
            self.part, state="stopped", stopped_at=self.stopped_at, updated_at=time.time()
        )
        store = self.store
        if store is None:
            return
        stages = [s.record(self.name) for s in self.stage_statuses()]
        stopped_at = self.stopped_at or time.time()

        def leave() -> None:
            with self._store_lock:
                self._left = True
                store.save_stage_records(self.name, stages)
                store.leave_deployment(self.name, self.part.part, stopped_at=stopped_at)

        await asyncio.to_thread(leave)

    async def wait(self) -> None:
        """Until the deployment is stopped (by `stop()` or a stop request in the store)."""
        await self._stopped.wait()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def add_stop_callback(self, callback: Callable[[Deployment], None]) -> None:
        self._on_stop.append(callback)

    async def __aenter__(self) -> Deployment:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


def _describe(spec: StageSpec, config: Any) -> dict[str, Any]:
    """A stage as the deployment's record keeps it (JSON): what a process that joins the
    deployment wires itself from."""
    return {
        "name": spec.name,
        "task": spec.task_name,
        "inputs": dict(spec.inputs),
        "outputs": dict(spec.outputs),
        "config": dump_special(config) if config is not None else None,
        "synchronized": spec.synchronized,
        "idle_after": spec.idle_after,
        "queue_size": spec.queue_size,
        "backpressure": spec.backpressure.value,
        "thread_safe": spec.thread_safe,
    }


def _part_status(part: DeploymentPartRecord, now: float) -> PartStatus:
    if part.state == "running":
        state = PartState.RUNNING if part.alive(now) else PartState.LOST
    else:
        state = PartState.STOPPED
    return PartStatus(
        part=part.part,
        host=part.host,
        pid=part.pid,
        stages=list(part.stages),
        state=state,
        started_at=part.started_at,
        stopped_at=part.stopped_at,
        updated_at=part.updated_at,
    )


async def deploy(
    pipeline: Pipeline,
    *,
    name: str | None = None,
    bus: Bus | str | None = None,
    store: DeploymentStore | None = None,
    stages: Iterable[str] | None = None,
    status_interval: float = 1.0,
) -> Deployment:
    """Check the pipeline's wiring and configs, then run its stages in this process.

    - `name`: the deployment's name and topic namespace (default: the pipeline's name).
    - `bus`: a bus, or its URL (`memory://`, the default, or `nats://host:port`); a bus
      given by URL is opened here and closed with the deployment.
    - `stages`: names of the stages to run in this process (default: all of them).
    """
    configs = pipeline.check()
    deployment_name = name or pipeline.name
    if name is not None and not isinstance(name, str):
        raise WiringError(pipeline.name, [f"deployment name {name!r} must be a string"])
    chosen = None if stages is None else list(stages)
    if chosen is not None:
        known = {s.name for s in pipeline.stages}
        unknown = [s for s in chosen if s not in known]
        if unknown:
            raise WiringError(
                pipeline.name,
                [
                    f"stage {s!r} does not exist (stages: {', '.join(sorted(known))})"
                    for s in unknown
                ],
            )
    owns_bus = bus is None or isinstance(bus, str)
    the_bus = open_bus(bus) if bus is None or isinstance(bus, str) else bus
    from .wiring import NAME

    if not NAME.match(deployment_name):
        raise WiringError(
            pipeline.name,
            [f"deployment name {deployment_name!r}: use letters, digits, '_' and '-' only"],
        )
    deployment = Deployment(
        pipeline,
        name=deployment_name,
        bus=the_bus,
        owns_bus=owns_bus,
        store=store,
        stages=chosen,
        configs=configs,
        status_interval=status_interval,
    )
    await deployment._start()
    return deployment


def deployment_status(store: DeploymentStore, name: str) -> DeploymentStatus:
    """The saved status of a deployment (every process's stages); blocking, store I/O."""
    record = store.get_deployment(name)
    if record is None:
        raise DeploymentNotFoundError(name)
    stages = [StageStatus.from_record(r) for r in store.get_stage_records(name)]
    now = time.time()
    parts = [_part_status(p, now) for p in store.get_deployment_parts(name)]
    state = DeploymentState(record.state)
    if parts:  # running while some part is; a part whose process died is lost, not running
        running = any(p.state is PartState.RUNNING for p in parts)
        state = DeploymentState.RUNNING if running else DeploymentState.STOPPED
    return DeploymentStatus(
        name=record.name,
        pipeline=record.pipeline,
        state=state,
        bus=record.bus,
        started_at=record.started_at,
        stopped_at=record.stopped_at,
        stop_requested=record.stop_requested,
        topics=record.topics or {},
        stages=stages,
        parts=parts,
    )


def request_stop(store: DeploymentStore, name: str) -> DeploymentStatus:
    """Ask the processes running a deployment to stop it (they act within a status
    interval); blocking, store I/O."""
    if not store.request_deployment_stop(name):
        raise DeploymentNotFoundError(name)
    return deployment_status(store, name)
