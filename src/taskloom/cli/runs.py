"""`taskloom runs`, `show` and `cancel`: reading and controlling recorded runs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from ..engine import Engine
from ..exceptions import RunNotFoundError
from ..runs import LogLine, Run, RunStatus
from ..store import MEMORY_URL, RunStore, Store, open_store
from ..store.connect import sqlite_file
from .errors import reporting_errors
from .options import DbOption, JsonOption, VerboseOption, database_url, dump_json, examples
from .render import make_console, run_details, runs_table

__all__ = [
    "CANCEL_EPILOG",
    "RUNS_EPILOG",
    "SHOW_EPILOG",
    "cancel_command",
    "runs_command",
    "show_command",
]

RUNS_EPILOG = examples(
    ("taskloom runs", "the 20 newest runs"),
    ("taskloom runs --task adder --status failed", "failed runs of one task"),
    ("taskloom runs --status pending --status running", "runs not finished yet"),
    ("taskloom runs --limit 50 --before RUN_ID", "the next page, older than RUN_ID"),
    ("taskloom runs --json", "run records as a JSON list"),
)
SHOW_EPILOG = examples(
    ("taskloom show RUN_ID", "inputs, attempts, result or error, and log lines"),
    ("taskloom show RUN_ID --json", '{"run": ..., "attempts": [...], "logs": [...]}'),
)
CANCEL_EPILOG = examples(
    ("taskloom cancel RUN_ID", "cancel a run, wherever it executes"),
    ("taskloom cancel RUN_ID --wait", "and wait until it has stopped"),
)

LOG_PAGE = 1000


@contextmanager
def _opened_store(db: str | None) -> Iterator[Store]:
    """The store, for reading. A SQLite file that does not exist yet has no runs: reading
    it must not create it, so an empty in-memory store stands in for it."""
    url = database_url(db)
    path = sqlite_file(url) if url.startswith("sqlite") else None
    store = open_store(MEMORY_URL if path is not None and not path.exists() else url)
    try:
        yield store
    finally:
        store.close()


def runs_command(
    task: Annotated[
        str | None, typer.Option("--task", "-t", help="Only runs of this task.", show_default=False)
    ] = None,
    status: Annotated[
        list[RunStatus] | None,
        typer.Option(
            "--status", "-s", help="Only runs with this status (repeatable).", show_default=False
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many runs.")] = 20,
    before: Annotated[
        str | None,
        typer.Option(
            metavar="RUN_ID",
            help="Only runs older than this one (the next page).",
            show_default=False,
        ),
    ] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """List recorded runs, newest first."""
    with reporting_errors(verbose=verbose), _opened_store(db) as store:
        runs = store.list_runs(
            task=task,
            status=[s.value for s in status] if status else None,
            limit=limit,
            before=before,
        )
        if json_output:
            typer.echo(dump_json([run.as_dict() for run in runs]))
            return
        if not runs:
            typer.echo("no runs found", err=True)
            return
        make_console().print(runs_table(runs))
        if len(runs) == limit:
            typer.echo(f"older runs: taskloom runs --before {runs[-1].id}", err=True)


def _all_logs(store: RunStore, run_id: str) -> list[LogLine]:
    lines: list[LogLine] = []
    while True:
        after_id = (lines[-1].id or 0) if lines else 0
        page = store.get_logs(run_id, after_id=after_id, limit=LOG_PAGE)
        lines += page
        if len(page) < LOG_PAGE:
            return lines


def show_command(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The run's id.", show_default=False)],
    json_output: JsonOption = False,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Show one run: its inputs, attempts, result or error, progress and log lines."""
    with reporting_errors(verbose=verbose), _opened_store(db) as store:
        run = store.get_run(run_id)
        if run is None:
            raise RunNotFoundError(run_id)
        attempts = store.get_attempts(run_id)
        logs = _all_logs(store, run_id)
        if json_output:
            document = {
                "run": run.as_dict(),
                "attempts": [attempt.as_dict() for attempt in attempts],
                "logs": [line.as_dict() for line in logs],
            }
            typer.echo(dump_json(document))
            return
        make_console().print(run_details(run, attempts, logs))


async def _cancel(url: str, run_id: str, *, wait: bool) -> Run:
    async with Engine(url, recover=False) as engine:
        run = await engine.cancel(run_id)
        if wait and not run.is_finished:
            run = await engine.wait(run_id)
        return run


def cancel_command(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The run's id.", show_default=False)],
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the run has stopped.")] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the run record as JSON.")
    ] = False,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Cancel a run that has not finished.

    A run executing in another process is stopped by that process's engine, which sees
    the request within about a second.
    """
    with reporting_errors(verbose=verbose):
        run = asyncio.run(_cancel(database_url(db), run_id, wait=wait))
        if json_output:
            typer.echo(dump_json(run.as_dict()))
            return
        name = f"run {run.id} of task {run.task!r}"
        if run.status == RunStatus.CANCELLED:
            typer.echo(f"{name}: cancelled")
        elif run.is_finished:
            typer.echo(f"{name} had already finished: {run.status}")
        else:
            typer.echo(
                f"{name}: cancellation requested; it is {run.status} in another process, "
                "whose engine stops it within about a second "
                f"(`taskloom show {run.id}` shows when it has)"
            )
