"""`taskloom workers`: the engines' processes recorded on a database, alive or lost."""

from __future__ import annotations

import dataclasses

import typer
from rich.table import Table

from ..store import WorkerRecord
from .errors import reporting_errors
from .options import DbOption, JsonOption, VerboseOption, dump_json, examples
from .render import format_time, make_console
from .runs import _opened_store

__all__ = ["WORKERS_EPILOG", "workers_command"]

WORKERS_EPILOG = examples(
    ("taskloom workers", "who is alive, who was lost, and how many runs each holds"),
    ("taskloom workers --db postgresql://db.internal/taskloom --json", "as a JSON list"),
)


def _as_dict(worker: WorkerRecord) -> dict[str, object]:
    return {"state": worker.state, **dataclasses.asdict(worker)}


def workers_command(
    json_output: JsonOption = False,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """List the workers recorded on the database: `alive` while their process holds its
    lock and renews its lease, `lost` once it is gone or stopped answering (pruned a week
    after its last heartbeat). Concurrency `none`: an engine that executes no runs."""
    with reporting_errors(verbose=verbose), _opened_store(db) as store:
        workers = store.list_workers()
        if json_output:
            typer.echo(dump_json([_as_dict(worker) for worker in workers]))
            return
        if not workers:
            typer.echo("no workers recorded", err=True)
            return
        table = Table(box=None, header_style="bold")
        columns = (
            "worker",
            "name",
            "state",
            "host",
            "pid",
            "queues",
            "concurrency",
            "started",
            "last heartbeat",
            "holds",
        )
        for column in columns:
            right = column in ("pid", "concurrency", "holds")
            table.add_column(column, justify="right" if right else "left")
        for worker in workers:
            table.add_row(
                worker.id,
                worker.name or "",
                "[green]alive[/green]" if worker.alive else "[red]lost[/red]",
                worker.hostname,
                str(worker.pid),
                "all" if worker.queues is None else ", ".join(worker.queues),
                "none" if worker.concurrency is None else str(worker.concurrency),
                format_time(worker.started_at),
                format_time(worker.heartbeat_at),
                str(worker.holds),
            )
        make_console().print(table)
