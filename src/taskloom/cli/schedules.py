"""`taskloom schedules` and `taskloom schedule ...`: list, add, pause, resume, remove and
trigger schedules, and show when one fires next."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.table import Table

from ..schedules.book import ScheduleBook, summary
from ..schedules.rules import format_instant, parse_duration
from ..store import open_store
from ..tasks.definition import TaskDefinition
from .errors import reporting_errors
from .options import DbOption, JsonOption, VerboseOption, database_url, dump_json, examples
from .render import make_console
from .run import _split_pairs
from .runs import _opened_store
from .tasks import find_tasks, load_task

__all__ = ["SCHEDULES_EPILOG", "schedule_app", "schedules_command"]

SCHEDULES_EPILOG = examples(
    ("taskloom schedules tasks.py", "recorded schedules, and those the tasks' options give"),
    ("taskloom schedules --json", "as JSON, each with its next five fire times"),
)

schedule_app = typer.Typer(
    help="Add, pause, resume, remove and trigger schedules; show when one fires next.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

TargetsArgument = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="[TARGETS]...",
        help="Files or modules whose tasks to know (as for `taskloom run`).",
        show_default=False,
    ),
]
NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The schedule's name.")]


@contextmanager
def _book(
    db: str | None,
    targets: Sequence[str],
    *,
    writing: bool,
    tasks: Sequence[TaskDefinition] | None = None,
) -> Iterator[ScheduleBook]:
    """A book over the database, knowing the tasks of `targets` (or `tasks`)."""
    definitions: Sequence[TaskDefinition] = [] if tasks is None else tasks
    if targets:
        found, warnings = find_tasks(targets)
        for warning in warnings:
            typer.echo(f"warning: {warning}", err=True)
        definitions = [*definitions, *found]
    if not writing:
        with _opened_store(db) as store:
            yield ScheduleBook(store, definitions)
        return
    store = open_store(database_url(db))
    try:
        yield ScheduleBook(store, definitions)
    finally:
        store.close()


def schedules_command(
    targets: TargetsArgument = None,
    json_output: JsonOption = False,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """List schedules: name, task, rule, time zone, next fire (UTC), paused.

    Schedules the TARGETS' task options give are listed too, before anything serves
    them (source `task`, not recorded yet).
    """
    with reporting_errors(verbose=verbose), _book(db, targets or [], writing=False) as book:
        now = time.time()
        shown = [summary(record, now=now) for record in book.all()]
        if json_output:
            typer.echo(dump_json(shown))
            return
        if not shown:
            typer.echo("no schedules recorded", err=True)
            return
        table = Table(box=None, header_style="bold")
        for column in ("schedule", "task", "rule", "time zone", "next fire", "paused", "source"):
            table.add_column(column)
        for item in shown:
            source = item["source"] if item["recorded"] else f"{item['source']} (not recorded)"
            table.add_row(
                item["name"],
                item["task"],
                f"{item['rule']}  [dim]{item['description']}[/dim]"
                if item["kind"] == "cron"
                else item["description"],
                item["timezone"],
                item["next_fire"] or "-",
                "yes" if item["paused"] else "no",
                source,
            )
        make_console().print(table)


def _task_for(task: str, targets: Sequence[str]) -> TaskDefinition:
    definitions, _ = find_tasks(targets) if targets else ([], [])
    for definition in definitions:
        if definition.name == task:
            return definition
    return load_task(task)


@schedule_app.command(
    "add",
    epilog=examples(
        (
            'taskloom schedule add hourly-report report tasks.py --cron "0 * * * *" '
            "--timezone America/New_York --input region=us",
            "every hour on the hour, New York time",
        ),
        ("taskloom schedule add poll poll_queue tasks.py --interval 30s", "every 30 seconds"),
    ),
)
def add_command(
    name: NameArgument,
    task: Annotated[str, typer.Argument(metavar="TASK", help="The task each tick runs.")],
    targets: TargetsArgument = None,
    cron: Annotated[
        str | None,
        typer.Option(
            metavar="EXPR", help="Five cron fields, or @hourly, @daily...", show_default=False
        ),
    ] = None,
    interval: Annotated[
        str | None,
        typer.Option(metavar="DURATION", help="Every 90, 90s, 10m, 1h30m, 2d.", show_default=False),
    ] = None,
    timezone: Annotated[str, typer.Option(metavar="ZONE", help="An IANA time zone.")] = "UTC",
    pairs: Annotated[
        list[str] | None,
        typer.Option(
            "--input", metavar="KEY=VALUE", help="An input of each run.", show_default=False
        ),
    ] = None,
    start: Annotated[
        str | None, typer.Option(metavar="ISO", help="Fire from then on.", show_default=False)
    ] = None,
    end: Annotated[
        str | None, typer.Option(metavar="ISO", help="Fire no more after then.", show_default=False)
    ] = None,
    jitter: Annotated[
        float, typer.Option(metavar="SECONDS", help="Delay each run by up to this.")
    ] = 0.0,
    catch_up: Annotated[
        str, typer.Option("--catch-up", metavar="POLICY", help="Ticks missed: skip, one or all.")
    ] = "skip",
    max_catch_up: Annotated[
        int, typer.Option("--max-catch-up", metavar="N", help="With --catch-up all: at most N.")
    ] = 10,
    paused: Annotated[bool, typer.Option("--paused", help="Record it paused.")] = False,
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace a schedule of this name.")
    ] = False,
    json_output: JsonOption = False,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Record a schedule of TASK (found in TARGETS, or named as for `taskloom run`)."""
    with reporting_errors(verbose=verbose):
        definition = _task_for(task, targets or [])
        inputs = definition.parse_cli_inputs(_split_pairs(definition, pairs or ()))
        seconds = None if interval is None else parse_duration(interval, "interval")
        with _book(db, [], writing=True, tasks=[definition]) as book:
            record = book.add(
                name,
                definition.name,
                cron=cron,
                interval=seconds,
                timezone=timezone,
                inputs=inputs,
                start=start,
                end=end,
                jitter=jitter,
                catch_up=catch_up,
                max_catch_up=max_catch_up,
                paused=paused,
                replace=replace,
            )
            shown = summary(record, now=time.time())
        if json_output:
            typer.echo(dump_json(shown))
            return
        typer.echo(
            f"schedule {name!r} runs {definition.name!r} {shown['description']}; "
            f"next: {shown['next_fire'] or 'never'}",
            err=True,
        )


@schedule_app.command(
    "next",
    epilog=examples(
        ("taskloom schedule next nightly_backup tasks.py --count 5", "one ISO 8601 time a line"),
    ),
)
def next_command(
    name: NameArgument,
    targets: TargetsArgument = None,
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=1000, help="How many.")] = 5,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Print the next fire times of a schedule, in UTC, one a line (none while paused)."""
    with reporting_errors(verbose=verbose), _book(db, targets or [], writing=False) as book:
        for instant in book.next_fires(name, count):
            typer.echo(format_instant(instant))


def _changed(action: str, record: Any, json_output: bool) -> None:
    if json_output:
        typer.echo(dump_json(dataclasses.asdict(record)))
    else:
        typer.echo(f"schedule {record.name!r} {action}", err=True)


@schedule_app.command("pause")
def pause_command(
    name: NameArgument,
    targets: TargetsArgument = None,
    json_output: JsonOption = False,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Stop a schedule from firing until it is resumed."""
    with reporting_errors(verbose=verbose), _book(db, targets or [], writing=True) as book:
        _changed("paused", book.pause(name), json_output)


@schedule_app.command("resume")
def resume_command(
    name: NameArgument,
    targets: TargetsArgument = None,
    json_output: JsonOption = False,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Fire a paused schedule again, from its first tick after now."""
    with reporting_errors(verbose=verbose), _book(db, targets or [], writing=True) as book:
        _changed("resumed", book.resume(name), json_output)


@schedule_app.command("remove")
def remove_command(
    name: NameArgument,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Forget a schedule.

    One a task option gives comes back when a worker serving the task starts again:
    pause it instead to keep it from firing.
    """
    with reporting_errors(verbose=verbose), _book(db, [], writing=True) as book:
        book.remove(name)
        typer.echo(f"schedule {name!r} removed", err=True)


@schedule_app.command("trigger")
def trigger_command(
    name: NameArgument,
    targets: TargetsArgument = None,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Start one run of the schedule now, recorded as manual.

    A worker serving its task starts it within a second. Prints the run's idempotency key.
    """
    with reporting_errors(verbose=verbose), _book(db, targets or [], writing=True) as book:
        typer.echo(book.trigger(name))
