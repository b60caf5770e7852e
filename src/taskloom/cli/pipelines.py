"""`taskloom pipeline deploy|stop|status|list` and `taskloom topic tail|publish`.

`pipeline deploy` runs in the foreground until Ctrl-C, SIGTERM or `pipeline stop`, which
asks through the store (the deploying process looks at every status interval). `topic
tail` and `topic publish` reach a deployment's topics over its bus, found in the store:
a deployment on the in-process bus keeps its topics to its own process, so they need a
NATS bus (`--bus nats://...`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Annotated, Any

import jsonschema
import typer
from rich.table import Table

from ..engine import Engine
from ..processes import _on_signals, run_to_end
from ..store import DeploymentStore
from ..streams.deployment import deployment_status, request_stop
from ..streams.errors import DeploymentNotFoundError, PipelineError
from ..streams.messages import Message, now_ms
from ..streams.pipeline import load_pipeline
from ..streams.status import DeploymentState, DeploymentStatus, PartState
from ..tasks.validation import config_from_arguments
from .errors import EXIT_FAILED, EXIT_USAGE, CliError, reporting_errors
from .options import DbOption, JsonOption, VerboseOption, database_url, dump_json, examples
from .render import format_time, make_console
from .runs import _opened_store

__all__ = ["pipeline_app", "topic_app"]

pipeline_app = typer.Typer(
    help="Deploy stream pipelines, stop them and watch their stages.",
    no_args_is_help=True,
    epilog=examples(
        ("taskloom pipeline deploy demo.yaml", "run a pipeline until Ctrl-C"),
        ("taskloom pipeline status demo", "its stages: state, messages in and out, errors"),
        ("taskloom pipeline stop demo", "ask the deploying process(es) to stop it"),
    ),
)
topic_app = typer.Typer(
    help="Watch and feed the topics of a deployment on a NATS bus.",
    no_args_is_help=True,
    epilog=examples(
        ("taskloom topic tail demo/sums", "print its messages as they come"),
        ("taskloom topic publish demo/numbers.a 5", "publish 5 now"),
    ),
)

#: Seconds between two looks at the store while waiting for a deployment to stop.
POLL = 0.1

NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The deployment's name.")]
TopicArgument = Annotated[
    str, typer.Argument(metavar="DEPLOYMENT/TOPIC", help="A deployment's topic, e.g. demo/sums.")
]
BusOption = Annotated[
    str | None,
    typer.Option(
        "--bus",
        metavar="URL",
        show_default=False,
        help="The bus: memory:// (in this process, the default) or nats://host:port.",
    ),
]


# pipeline deploy --------------------------------------------------------------------------
@pipeline_app.command(
    "deploy",
    epilog=examples(
        ("taskloom pipeline deploy demo.yaml", "in-process bus; Ctrl-C stops"),
        ("taskloom pipeline deploy demo.yaml --bus nats://127.0.0.1:4222", "over NATS"),
        (
            "taskloom pipeline deploy flows.py:demo --bus nats://127.0.0.1:4222 --stage adder",
            "only some stages here; the others in another process",
        ),
        ("taskloom pipeline deploy demo.yaml --config adder.step=5", "a field of a stage's config"),
    ),
)
def deploy_command(
    target: Annotated[
        str,
        typer.Argument(metavar="FILE.yaml|module:attr", help="A pipeline file or object."),
    ],
    name: Annotated[
        str | None,
        typer.Option("--name", help="The deployment's name (default: the pipeline's)."),
    ] = None,
    bus: BusOption = None,
    stage: Annotated[
        list[str] | None,
        typer.Option("--stage", help="Run only this stage here (repeatable).", show_default=False),
    ] = None,
    status_interval: Annotated[
        float,
        typer.Option("--status-interval", min=0.01, help="Seconds between status saves."),
    ] = 1.0,
    config: Annotated[
        list[str] | None,
        typer.Option(
            "--config",
            metavar="STAGE.KEY=VALUE|STAGE=JSON",
            help=(
                "A field of a stage's config, over the pipeline's (repeatable; values are "
                "read as JSON unless they are text), or STAGE={...}: a JSON object of fields."
            ),
            show_default=False,
        ),
    ] = None,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Deploy a pipeline and run it here until Ctrl-C, SIGTERM or `taskloom pipeline stop`."""
    with reporting_errors(verbose=verbose), _pipeline_errors():
        pipeline = load_pipeline(target)
        for stage_name, values in _stage_configs(pipeline.name, config or ()).items():
            pipeline.configure(stage_name, values)
        url = database_url(db)

        async def main() -> None:
            async with Engine(url, recover=False) as engine:
                deployment = await engine.deploy(
                    pipeline, name=name, bus=bus, stages=stage, status_interval=status_interval
                )
                stages = ", ".join(r.spec.name for r in deployment.runners)
                signalled = asyncio.Event()
                with _on_signals(asyncio.get_running_loop(), signalled.set):
                    # Said once the signals are ours: a Ctrl-C right after this line
                    # stops the deployment as any other does (exit 0).
                    typer.echo(
                        f"deployed {deployment.name!r} (pipeline {pipeline.name!r}) on "
                        f"{deployment.bus.url}: {stages}",
                        err=True,
                    )
                    waiters = [
                        asyncio.ensure_future(signalled.wait()),
                        asyncio.ensure_future(deployment.wait()),
                    ]
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                    for waiter in waiters:
                        waiter.cancel()
                    await deployment.stop()
                typer.echo(f"stopped {deployment.name!r}", err=True)

        run_to_end(main())


def _stage_configs(pipeline: str, values: Sequence[str]) -> dict[str, dict[str, Any]]:
    """`--config` values by stage: `adder.step=5` and `adder={"step": 5}` (the stage's
    name ends at the first `.` or `=`; stage names have neither)."""
    by_stage: dict[str, list[str]] = {}
    for value in values:
        dot, equals = value.find("."), value.find("=")
        if dot > 0 and (equals < 0 or dot < equals):
            stage, rest = value[:dot], value[dot + 1 :]
        elif equals > 0 and value[equals + 1 :].lstrip().startswith("{"):
            stage, rest = value[:equals], value[equals + 1 :]
        else:
            raise CliError(
                f"pipeline {pipeline!r}: expected --config as STAGE.KEY=VALUE or "
                f"STAGE={{...}}, got {value!r}"
            )
        by_stage.setdefault(stage.strip(), []).append(rest)
    configs: dict[str, dict[str, Any]] = {}
    for stage, raw in by_stage.items():
        try:
            configs[stage] = config_from_arguments(raw)
        except ValueError as exc:
            raise CliError(f"pipeline {pipeline!r}, stage {stage!r}: {exc}") from exc
    return configs


# pipeline stop / status / list ------------------------------------------------------------
@pipeline_app.command(
    "stop", epilog=examples(("taskloom pipeline stop demo", "stop it; prints its status"))
)
def stop_command(
    name: NameArgument,
    wait_timeout: Annotated[
        float,
        typer.Option("--wait-timeout", min=0.1, help="Seconds to wait for it to stop."),
    ] = 30.0,
    json_output: JsonOption = False,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Ask every process running a deployment to stop its part, and wait until all have.

    Exit status: 0 once every part is stopped (also when none was running: it says so),
    1 when some part did not stop in time, 2 for an unknown deployment.
    """
    with reporting_errors(verbose=verbose), _pipeline_errors(), _opened_store(db) as store:
        status = deployment_status(store, name)
        if _stopped(status):
            typer.echo(f"deployment {name!r} is stopped already: no part of it runs", err=True)
        else:
            running = _running_parts(status)
            request_stop(store, name)
            deadline = time.monotonic() + wait_timeout
            while not _stopped(status):
                if time.monotonic() > deadline:
                    left = ", ".join(
                        f"{p.part} (pid {p.pid} on {p.host}: {', '.join(p.stages) or 'no stage'})"
                        for p in status.parts
                        if p.state is PartState.RUNNING
                    )
                    raise CliError(
                        f"deployment {name!r} did not stop within {wait_timeout:g} s; still "
                        f"running: {left or 'its process'} (the request stays; each part "
                        "stops when it next looks)",
                        exit_code=EXIT_FAILED,
                    )
                time.sleep(POLL)
                status = deployment_status(store, name)
            typer.echo(f"stopped {name!r}: {running} part(s)", err=True)
        _print_status(status, json_output)


def _running_parts(status: DeploymentStatus) -> int:
    return sum(p.state is PartState.RUNNING for p in status.parts) or 1


@pipeline_app.command(
    "status",
    epilog=examples(
        ("taskloom pipeline status demo", "state, counters and last error of each stage"),
        ("taskloom pipeline status demo --json", "the same as JSON"),
    ),
)
def status_command(
    name: NameArgument,
    json_output: JsonOption = False,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """The saved status of a deployment: each stage's state, messages, drops and errors."""
    with reporting_errors(verbose=verbose), _pipeline_errors(), _opened_store(db) as store:
        _print_status(deployment_status(store, name), json_output)


@pipeline_app.command("list", epilog=examples(("taskloom pipeline list", "every deployment")))
def list_command(
    json_output: JsonOption = False, db: DbOption = None, verbose: VerboseOption = False
) -> None:
    """Every deployment in the store, running or stopped."""
    with reporting_errors(verbose=verbose), _opened_store(db) as store:
        records = store.list_deployments()
        if json_output:
            typer.echo(dump_json([deployment_status(store, r.name).as_dict() for r in records]))
            return
        table = Table("deployment", "pipeline", "state", "bus", "started")
        for record in records:
            table.add_row(
                record.name,
                record.pipeline,
                record.state,
                record.bus,
                format_time(record.started_at),
            )
        make_console().print(table)


def _stopped(status: DeploymentStatus) -> bool:
    return status.state is DeploymentState.STOPPED


def _print_status(status: DeploymentStatus, json_output: bool) -> None:
    if json_output:
        typer.echo(dump_json(status.as_dict()))
        return
    console = make_console()
    stop = " (stop requested)" if status.stop_requested else ""
    console.print(
        f"{status.name}: {status.state.value}{stop}  pipeline {status.pipeline}  "
        f"bus {status.bus}  started {format_time(status.started_at)}",
        markup=False,
        highlight=False,
    )
    table = Table("stage", "state", "in", "out", "dropped", "errors", "restarts", "last ts")
    for stage in status.stages:
        table.add_row(
            stage.stage,
            stage.state.value,
            str(stage.messages_in),
            str(stage.messages_out),
            str(stage.dropped),
            str(stage.errors),
            str(stage.restarts),
            "" if stage.last_timestamp is None else str(stage.last_timestamp),
        )
    console.print(table)
    if status.parts:
        parts = Table("part", "host", "pid", "stages", "state", "started", "last seen")
        for part in status.parts:
            parts.add_row(
                part.part,
                part.host,
                str(part.pid),
                ", ".join(part.stages),
                part.state.value,
                format_time(part.started_at),
                format_time(part.updated_at),
            )
        console.print(parts)
    for stage in status.stages:
        if stage.last_error is not None:
            error = stage.last_error
            console.print(
                f"{stage.stage}: last error {error.type}: {error.message}",
                markup=False,
                highlight=False,
            )


# topic tail / publish ---------------------------------------------------------------------
def _split(address: str) -> tuple[str, str]:
    deployment, sep, topic = address.partition("/")
    if not sep or not deployment or not topic:
        raise CliError(f"{address!r}: give DEPLOYMENT/TOPIC, e.g. demo/sums")
    return deployment, topic


def _bus_of(
    store: DeploymentStore, deployment: str, bus: str | None
) -> tuple[str, DeploymentStatus]:
    status = deployment_status(store, deployment)
    url = bus or status.bus
    if not url.startswith(("nats://", "tls://")):
        raise CliError(
            f"deployment {deployment!r} runs on the in-process bus ({url}): its topics live "
            "inside the deploying process; deploy it with --bus nats://HOST:PORT to reach "
            "them from here"
        )
    return url, status


@topic_app.command(
    "tail",
    epilog=examples(
        ("taskloom topic tail demo/sums", "timestamp and value of each message; Ctrl-C ends"),
        ("taskloom topic tail demo/sums --count 10 --json", "ten messages as JSON lines"),
    ),
)
def tail_command(
    address: TopicArgument,
    count: Annotated[
        int | None,
        typer.Option("--count", "-n", min=1, help="Stop after this many messages."),
    ] = None,
    json_output: JsonOption = False,
    bus: BusOption = None,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Print a topic's messages as they come, with their timestamps."""
    with reporting_errors(verbose=verbose), _pipeline_errors():
        deployment, topic = _split(address)
        with _opened_store(db) as store:
            url, _ = _bus_of(store, deployment, bus)
        run_to_end(_tail(url, deployment, topic, count, json_output))


async def _tail(url: str, deployment: str, topic: str, count: int | None, as_json: bool) -> None:
    from ..streams.buses.nats import NatsBus

    nats_bus = NatsBus(url)
    await nats_bus.start()
    try:
        subscription = nats_bus.subscribe(
            f"{deployment}.{topic}", maxsize=10_000, policy="drop_oldest"
        )
        assert subscription.ready is not None
        await subscription.ready
        typer.echo(f"listening to {deployment}/{topic} on {url}", err=True)
        signalled = asyncio.Event()
        seen = 0
        with _on_signals(asyncio.get_running_loop(), signalled.set):
            while count is None or seen < count:
                getter = asyncio.ensure_future(subscription.get())
                stopper = asyncio.ensure_future(signalled.wait())
                await asyncio.wait([getter, stopper], return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                if not getter.done():
                    getter.cancel()
                    break
                typer.echo(_render(getter.result(), as_json))
                sys.stdout.flush()
                seen += 1
        if subscription.dropped:
            typer.echo(f"{subscription.dropped} message(s) dropped: printing fell behind", err=True)
    finally:
        await nats_bus.close()


def _render(message: Message, as_json: bool) -> str:
    value = message.value
    if as_json:
        line: dict[str, Any] = {"timestamp": message.timestamp}
        if isinstance(value, bytes):
            line["value_base64"] = base64.b64encode(value).decode()
        else:
            line["value"] = value
        if message.metadata:
            line["metadata"] = message.metadata
        return json.dumps(line, ensure_ascii=False)
    shown = f"<{len(value)} bytes>" if isinstance(value, bytes) else json.dumps(value)
    meta = f"  {json.dumps(message.metadata)}" if message.metadata else ""
    return f"{message.timestamp}  {shown}{meta}"


@topic_app.command(
    "publish",
    epilog=examples(
        ("taskloom topic publish demo/numbers.a 5", "the number 5, timestamped now"),
        ('taskloom topic publish demo/points \'{"x": 1, "y": 2}\' --timestamp 1000', "JSON"),
        ("taskloom topic publish demo/names hello", "text that is not JSON is sent as text"),
    ),
)
def publish_command(
    address: TopicArgument,
    value: Annotated[str, typer.Argument(metavar="VALUE", help="JSON, or else text.")],
    timestamp: Annotated[
        int | None,
        typer.Option("--timestamp", "-t", help="Milliseconds (default: now).", show_default=False),
    ] = None,
    bus: BusOption = None,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Publish one message on a deployment's topic, checked against the inputs it feeds."""
    with reporting_errors(verbose=verbose), _pipeline_errors():
        deployment, topic = _split(address)
        with _opened_store(db) as store:
            url, status = _bus_of(store, deployment, bus)
        try:
            parsed: Any = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        _check_value(status, topic, parsed)
        stamp = now_ms() if timestamp is None else timestamp
        run_to_end(_publish(url, f"{deployment}.{topic}", Message(stamp, parsed)))
        typer.echo(f"published to {deployment}/{topic} at {stamp}", err=True)


def _check_value(status: DeploymentStatus, topic: str, value: Any) -> None:
    described = status.topics.get(topic)
    if described is None:
        known = ", ".join(sorted(status.topics)) or "none"
        raise CliError(f"deployment {status.name!r} has no topic {topic!r} (topics: {known})")
    for consumer in described.get("consumers", []):
        schema = consumer.get("schema")
        if not schema:
            continue
        error = jsonschema.exceptions.best_match(
            jsonschema.Draft202012Validator(schema).iter_errors(value)
        )
        if error is not None:
            raise CliError(
                f"deployment {status.name!r}, topic {topic!r}: stage {consumer['stage']!r} "
                f"input {consumer['port']!r}: {error.message} (expected {consumer['type']})"
            )


async def _publish(url: str, subject: str, message: Message) -> None:
    from ..streams.buses.nats import NatsBus

    nats_bus = NatsBus(url)
    await nats_bus.start()
    try:
        await nats_bus.publish(subject, message)
        await nats_bus.flush()
    finally:
        await nats_bus.close()


@contextlib.contextmanager
def _pipeline_errors() -> Iterator[None]:
    """Pipeline errors a person can act on become `error:` lines with exit code 2."""
    try:
        yield
    except (DeploymentNotFoundError, PipelineError) as exc:
        raise CliError(str(exc), exit_code=EXIT_USAGE) from exc
