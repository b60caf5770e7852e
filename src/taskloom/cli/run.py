"""`taskloom run`: validate inputs, record a run, execute it here, print its result."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from ..engine import Engine
from ..runs import Run, RunStatus
from ..schedules.errors import ScheduleError
from ..schedules.rules import due_time, format_instant, parse_duration
from ..tasks.definition import TaskDefinition
from ..tasks.validation import config_from_arguments
from .errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    CliError,
    print_error,
    reporting_errors,
)
from .options import DbOption, VerboseOption, database_url, dump_json, examples
from .progress import RunReporter
from .render import make_console
from .tasks import load_task

__all__ = ["EPILOG", "run_command"]

EPILOG = examples(
    ("taskloom run examples/basics.py:adder a=1 b=2", "prints 3"),
    ("taskloom run examples/basics.py:greet name=Ada punctuation=.", "text inputs need no quotes"),
    (
        "taskloom run mypackage.tasks:resize --inputs inputs.json width=640",
        "a JSON file of inputs; pairs override it",
    ),
    ("taskloom run examples/basics.py:slow_count n=20 --json", "the whole run record as JSON"),
    ("total=$(taskloom run examples/basics.py:adder a=1 b=2)", "stdout carries only the result"),
    ("taskloom run examples/streams.py:adder a=1 b=2 --config step=5", "a config field: 8"),
    (
        "taskloom run examples/basics.py:adder a=1 b=2 --in 10m --no-wait",
        "due in ten minutes, for any worker; prints the run's id",
    ),
)

_JSON_TYPES = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
               int: "a number", float: "a number", type(None): "null"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Submission:
    """What to run, and how."""

    task: TaskDefinition
    inputs: dict[str, Any]
    priority: int | None
    idempotency_key: str | None
    config: Any
    due: float | None = None  # seconds since the epoch; None: at once


def run_command(
    target: Annotated[
        str,
        typer.Argument(
            metavar="TARGET",
            help="The task: module:attr, path/file.py:attr, or a registered name.",
            show_default=False,
        ),
    ],
    pairs: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="KEY=VALUE",
            help="Inputs. Values are read as JSON (3, true, [1, 2]) unless the input is text.",
            show_default=False,
        ),
    ] = None,
    inputs_file: Annotated[
        str | None,
        typer.Option(
            "--inputs",
            "-i",
            metavar="FILE",
            help="A JSON file with an object of inputs ('-' reads stdin).",
            show_default=False,
        ),
    ] = None,
    db: DbOption = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the whole run record instead of the result.")
    ] = False,
    priority: Annotated[
        int | None,
        typer.Option(
            help="Higher runs first; 0 is ordinary. Default: the task's own.", show_default=False
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            metavar="KEY",
            help="Run at most once per key: a run already recorded under it is reused.",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        list[str] | None,
        typer.Option(
            "--config",
            metavar="JSON|KEY=VALUE",
            help=(
                "The task's config: a JSON object, or KEY=VALUE (repeatable; values are "
                "read as JSON unless they are text)."
            ),
            show_default=False,
        ),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            metavar="ISO",
            help="Due then (ISO 8601; no offset: UTC): it waits for a worker until then.",
            show_default=False,
        ),
    ] = None,
    due_in: Annotated[
        str | None,
        typer.Option(
            "--in",
            metavar="DURATION",
            help="Due after this long (90, 90s, 10m, 1h30m, 2d).",
            show_default=False,
        ),
    ] = None,
    no_wait: Annotated[
        bool,
        typer.Option(
            "--no-wait",
            help="Record the run for the workers and print its id (its record with --json).",
        ),
    ] = False,
    verbose: VerboseOption = False,
) -> None:
    """Run a task once and print its result as JSON.

    Log lines and progress go to stderr while it runs; stdout carries only the result.
    With --at or --in the run waits for its due time and a worker executes it; with
    --no-wait the command leaves once the run is recorded.
    Exit status: 0 completed (or recorded, with --no-wait), 1 failed or cancelled, 2
    invalid input, 130 interrupted.
    """
    with reporting_errors(verbose=verbose):
        definition = load_task(target, database_url(db))
        inputs = _read_inputs_file(inputs_file) if inputs_file is not None else {}
        inputs.update(definition.parse_cli_inputs(_split_pairs(definition, pairs or ())))
        # Checked before the database is opened: a typo creates nothing and records nothing.
        definition.validate_inputs(inputs)
        submission = Submission(
            definition,
            inputs,
            priority,
            idempotency_key,
            _parse_config(definition.name, config),
            _due(definition.name, at, due_in),
        )
        if no_wait:
            run = asyncio.run(_record(database_url(db), submission))
            typer.echo(dump_json(run.as_dict()) if json_output else run.id)
            return
        reporter = RunReporter(make_console(stderr=True))
        try:
            run, interrupted = asyncio.run(_execute(database_url(db), submission, reporter))
        finally:
            reporter.stop()
        _report(run, interrupted=interrupted, json_output=json_output, verbose=verbose)


def _due(task: str, at: str | None, due_in: str | None) -> float | None:
    if at is not None and due_in is not None:
        raise CliError(f"task {task!r}: give --at or --in, not both")
    if due_in is not None:
        try:
            return due_time(task, delay=parse_duration(due_in, "in"))
        except ScheduleError as exc:
            raise CliError(f"task {task!r}: --{exc}") from None
    if at is not None:
        return due_time(task, run_at=at)
    return None


async def _submit(engine: Engine, submission: Submission) -> Run:
    return await engine.submit(
        submission.task,
        submission.inputs,
        priority=submission.priority,
        idempotency_key=submission.idempotency_key,
        config=submission.config,
        run_at=submission.due,
    )


async def _record(url: str, submission: Submission) -> Run:
    """Record the run for whichever worker takes it, and leave."""
    async with Engine(url, worker=False, recover=False) as engine:
        return await _submit(engine, submission)


def _split_pairs(definition: TaskDefinition, pairs: Sequence[str]) -> dict[str, str]:
    split: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CliError(
                f"task {definition.name!r}: expected an input as KEY=VALUE, got {pair!r}"
            )
        if key in split:
            raise CliError(f"task {definition.name!r}: input {key!r} is given twice")
        split[key] = value
    return split


def _read_inputs_file(path: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CliError(f"cannot read the inputs file {path!r}: {reason}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CliError(f"the inputs file {path!r} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        kind = _JSON_TYPES.get(type(data), type(data).__name__)
        raise CliError(f"the inputs file {path!r} must hold an object of inputs, not {kind}")
    return data


def _parse_config(task: str, values: Sequence[str] | None) -> Any:
    if not values:
        return None
    try:
        return config_from_arguments(values)
    except ValueError as exc:
        raise CliError(f"task {task!r}: {exc}") from exc


class _Interrupt:
    """The first Ctrl-C asks for the run to be cancelled; a second one exits at once."""

    def __init__(self, reporter: RunReporter) -> None:
        self.requested = asyncio.Event()
        self.reporter = reporter
        self.run_id: str | None = None

    def __call__(self) -> None:
        if not self.requested.is_set():
            self.requested.set()
            return
        # The task did not stop when cancelled. Exiting through asyncio would wait for it
        # again, so leave now; the run's engine is gone, and `cancel` then settles it.
        self.reporter.stop()
        hint = f"; `taskloom cancel {self.run_id}` marks it cancelled" if self.run_id else ""
        typer.echo(f"interrupted again: exiting without waiting for the run{hint}", err=True)
        os._exit(EXIT_INTERRUPTED)


@contextmanager
def _on_sigint(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> Iterator[None]:
    try:
        loop.add_signal_handler(signal.SIGINT, callback)
    except NotImplementedError:  # Windows: no loop signal handlers
        previous = signal.signal(signal.SIGINT, lambda *_: loop.call_soon_threadsafe(callback))
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)


async def _execute(url: str, submission: Submission, reporter: RunReporter) -> tuple[Run, bool]:
    """Submit the run, wait for it; returns the finished run and whether Ctrl-C stopped it."""
    interrupt = _Interrupt(reporter)
    # Installed before the engine starts, so that no Ctrl-C leaves a run behind unrecorded.
    with _on_sigint(asyncio.get_running_loop(), interrupt):
        # A run due later is executed by a worker when due; this process waits for it.
        later = submission.due is not None
        async with Engine(url, recover=False, worker=not later) as engine:
            engine.add_listener(reporter.on_event)
            run = await _submit(engine, submission)
            if later:
                reporter.note(f"run {run.id} is due {format_instant(submission.due or 0)}")
            interrupt.run_id = run.id
            finished = asyncio.ensure_future(engine.wait(run.id))
            interrupted = asyncio.ensure_future(interrupt.requested.wait())
            await asyncio.wait({finished, interrupted}, return_when=asyncio.FIRST_COMPLETED)
            interrupted.cancel()
            if finished.done():
                return finished.result(), False
            finished.cancel()
            reporter.stop()
            reporter.note(f"interrupted: cancelling run {run.id}")
            return await engine.cancel(run.id), True


def _report(run: Run, *, interrupted: bool, json_output: bool, verbose: bool) -> None:
    if json_output:
        typer.echo(dump_json(run.as_dict()))
    if interrupted:
        typer.echo(f"interrupted: run {run.id} of task {run.task!r} is {run.status}", err=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    if run.status == RunStatus.COMPLETED:
        if not json_output:
            typer.echo(dump_json(run.result))
        return
    if run.status == RunStatus.FAILED:
        error = run.error
        reason = f"{error.type}: {error.message}" if error is not None else "no error recorded"
        print_error(f"task {run.task!r} failed (run {run.id}): {reason}")
        if error is not None and error.traceback:
            if verbose:
                typer.echo(error.traceback.rstrip(), err=True)
            else:
                typer.echo(
                    f"(run with --verbose, or `taskloom show {run.id}`, to see the traceback)",
                    err=True,
                )
    elif run.status == RunStatus.CANCELLED:
        print_error(f"run {run.id} of task {run.task!r} was cancelled")
    else:
        print_error(f"run {run.id} of task {run.task!r} is {run.status}")
    raise typer.Exit(EXIT_FAILED)
