"""One task as a stage of its own program: `task.run_sync()` in `__main__`, as streamtasks'
`fntask(...).run_sync()` is written.

The stage joins a deployment on a bus (a NATS URL, or a `Bus` object such as a
`MemoryBus` shared in-process) and runs until Ctrl-C, SIGTERM or a stop request. Its
topics and config come from the keyword arguments, else from the command line (`--input
a=numbers.a --output sums --config step=2 ...`), else from the deployment's record in the
database (a deployment started by `taskloom pipeline deploy` records every stage's
wiring and config, so `python adder.py --deployment demo` is all it takes), else each
port reads or writes the topic named like it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..store import DeploymentStore, Store, open_store, resolve_database_url
from ..store.connect import sqlite_file
from ..tasks.validation import config_from_arguments
from .buses import Bus
from .deployment import Deployment, deploy
from .errors import PipelineError
from .pipeline import Pipeline
from .stages import ports_of

__all__ = ["DEFAULT_BUS", "StageSettings", "parse_arguments", "run_stage", "settings_for"]

#: The bus a stage joins when none is given: a NATS server on this machine, as
#: streamtasks connects to a local server by default.
DEFAULT_BUS = "nats://127.0.0.1:4222"

#: The environment variable naming the database, as for the `taskloom` commands.
DATABASE_ENV = "TASKLOOM_DATABASE_URL"

#: The stage options a deployment's record keeps, which a joining stage takes over.
_OPTIONS = ("synchronized", "idle_after", "queue_size", "backpressure", "thread_safe")


@dataclass(kw_only=True)
class StageSettings:
    """What the stage is to do; None where neither the code nor the command line says."""

    bus: Bus | str | None = None
    deployment: str | None = None
    stage: str | None = None
    inputs: dict[str, str] | None = None
    outputs: dict[str, str] | list[str] | None = None
    config: Any = None
    database: str | None = None
    status_interval: float | None = None
    options: dict[str, Any] = field(default_factory=dict)


def parse_arguments(task_name: str, argv: Sequence[str]) -> StageSettings:
    """The settings a command line gives (`python adder.py --help` lists them)."""
    parser = argparse.ArgumentParser(
        description=f"Run the task {task_name!r} as a stream stage until Ctrl-C.",
        epilog=(
            "Without --input/--output, the wiring (and config) of the stage of that name in "
            "the deployment's record is used when the database has one; else each port "
            "reads or writes the topic of its own name."
        ),
    )
    parser.add_argument("--bus", metavar="URL", help=f"nats://host:port (default: {DEFAULT_BUS})")
    parser.add_argument("--deployment", metavar="NAME", help="the deployment to join")
    parser.add_argument("--stage", metavar="NAME", help=f"its stage name (default: {task_name})")
    parser.add_argument(
        "--input", action="append", metavar="PORT=TOPIC", default=[], help="repeatable"
    )
    parser.add_argument(
        "--output", action="append", metavar="[PORT=]TOPIC", default=[], help="repeatable"
    )
    parser.add_argument(
        "--config", action="append", metavar="JSON|KEY=VALUE", default=[], help="repeatable"
    )
    parser.add_argument(
        "--db",
        metavar="URL",
        default=os.environ.get(DATABASE_ENV) or None,
        help=f"the database recording its status (default: ${DATABASE_ENV}, else the "
        "default file if it exists)",
    )
    parser.add_argument("--status-interval", type=float, metavar="SECONDS")
    args = parser.parse_args(list(argv))
    settings = StageSettings(
        bus=args.bus,
        deployment=args.deployment,
        stage=args.stage,
        database=args.db,
        status_interval=args.status_interval,
    )
    try:
        if args.input:
            settings.inputs = dict(_pair(value, "--input") for value in args.input)
        if args.output:
            named = [v for v in args.output if "=" in v]
            if named and len(named) != len(args.output):
                raise ValueError("give every --output as PORT=TOPIC, or none of them")
            settings.outputs = (
                dict(_pair(v, "--output") for v in args.output) if named else list(args.output)
            )
        if args.config:
            settings.config = config_from_arguments(args.config)
    except ValueError as exc:
        parser.error(f"task {task_name!r}: {exc}")
    return settings


def settings_for(task_name: str, argv: Sequence[str] | None, **given: Any) -> StageSettings:
    """The keyword arguments given in code, completed by the command line `argv` (when
    given: what `run_sync()` passes) for whatever they leave out."""
    settings = parse_arguments(task_name, argv) if argv is not None else StageSettings()
    for key, value in given.items():
        if value is not None:
            setattr(settings, key, value)
    return settings


def _pair(value: str, what: str) -> tuple[str, str]:
    port, sep, topic = value.partition("=")
    if not sep or not port.strip() or not topic.strip():
        raise ValueError(f"expected {what} as PORT=TOPIC, got {value!r}")
    return port.strip(), topic.strip()


async def run_stage(
    task: Any,
    settings: StageSettings,
    *,
    announce: bool = True,
) -> None:
    """Run `task` as one stage until Ctrl-C, SIGTERM or a stop request (see the module)."""
    store = _open_store(settings)
    try:
        pipeline, name, bus = _plan(task, settings, store)
        deployment = await deploy(
            pipeline,
            name=name,
            bus=bus,
            store=store,
            status_interval=settings.status_interval or 1.0,
        )
        if announce:
            print(_joined(deployment), file=sys.stderr, flush=True)
        stop = asyncio.Event()
        with _on_signals(stop.set):
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(deployment.wait())]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
                await deployment.stop()
        if announce:
            print(f"stopped {deployment.name!r}", file=sys.stderr, flush=True)
    finally:
        if store is not None:
            store.close()


def _open_store(settings: StageSettings) -> Store | None:
    """The database named (`database=`, `--db`, `TASKLOOM_DATABASE_URL`), else the default
    one only if it exists: a stage run from any folder leaves no database behind."""
    url = resolve_database_url(settings.database)
    path = sqlite_file(url)
    if settings.database is None and path is not None and not path.exists():
        return None
    return open_store(url)


def _plan(
    task: Any, settings: StageSettings, store: DeploymentStore | None
) -> tuple[Pipeline, str, Bus | str]:
    """The one-stage pipeline to deploy, the deployment's name and the bus."""
    _, input_ports, output_ports, _ = ports_of(task)
    task_name = getattr(task, "name", None) or task.__name__
    name = settings.deployment or task_name
    stage = settings.stage or task_name
    recorded = _recorded_stage(store, name, stage, task_name) if settings.deployment else None
    record = store.get_deployment(name) if store is not None and recorded else None
    inputs = settings.inputs
    outputs: dict[str, str] | list[str] | None = settings.outputs
    config = settings.config
    options: dict[str, Any] = dict(settings.options)
    if recorded is not None:
        stage = recorded["name"]
        inputs = inputs if inputs is not None else dict(recorded.get("inputs") or {})
        outputs = outputs if outputs is not None else dict(recorded.get("outputs") or {})
        config = config if config is not None else recorded.get("config")
        for key in _OPTIONS:
            if key in recorded and key not in options:
                options[key] = recorded[key]
    if inputs is None:
        inputs = {port: port for port in input_ports}
    if outputs is None:
        outputs = {port: port for port in output_ports}
    bus = settings.bus or (record.bus if record is not None else None) or DEFAULT_BUS
    if isinstance(bus, str) and not bus.startswith(("nats://", "tls://")):
        raise PipelineError(
            f"stage {stage!r}: the bus {bus!r} cannot reach other processes; give a NATS URL "
            "(--bus nats://host:port) or a Bus object"
        )
    pipeline = Pipeline(record.pipeline if record is not None else name)
    pipeline.stage(task, name=stage, inputs=inputs, outputs=outputs, config=config, **options)
    return pipeline, name, bus


def _recorded_stage(
    store: DeploymentStore | None, deployment: str, stage: str, task_name: str
) -> Mapping[str, Any] | None:
    """The stage of that name in the deployment's record, or the one running this task."""
    if store is None:
        return None
    record = store.get_deployment(deployment)
    if record is None or not record.stages:
        return None
    stages: list[Mapping[str, Any]] = list(record.stages)
    for candidate in stages:
        if candidate.get("name") == stage:
            return candidate
    by_task = [s for s in stages if s.get("task") == task_name]
    return by_task[0] if len(by_task) == 1 else None


def _joined(deployment: Deployment) -> str:
    runner = deployment.runners[0]
    spec = runner.spec
    wiring = [f"{port} <- {topic}" for port, topic in spec.inputs.items()]
    wiring += [f"{port} -> {topic}" for port, topic in spec.outputs.items()]
    return f"joined {deployment.name!r} as stage {spec.name!r} on {deployment.bus.url}: " + (
        ", ".join(wiring) or "no topics"
    )


@contextlib.contextmanager
def _on_signals(callback: Any) -> Iterator[None]:
    """SIGINT (Ctrl-C) and SIGTERM call `callback` on the loop instead of raising."""
    loop = asyncio.get_running_loop()
    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, callback)
        except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
            continue
        installed.append(signum)
    try:
        yield
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
