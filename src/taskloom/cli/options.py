"""Options several commands share, the database they point at, and help epilogs."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ..observability.logs import LOG_FORMAT_ENV, LogFormat
from ..store import resolve_database_url

__all__ = [
    "DATABASE_ENV",
    "DaskOption",
    "DbOption",
    "JsonOption",
    "LogFormatOption",
    "MaxItemsOption",
    "MaxStepsOption",
    "RetentionOption",
    "VerboseOption",
    "database_url",
    "display_url",
    "dump_json",
    "examples",
]

#: The environment variable naming the database when `--db` is not given.
DATABASE_ENV = "TASKLOOM_DATABASE_URL"

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar=DATABASE_ENV,
        metavar="URL",
        show_default=False,
        help=(
            "Database URL (sqlite:///file.db, postgresql://...) or SQLite file path. "
            "Default: .taskloom/taskloom.db under the working directory."
        ),
    ),
]
MaxStepsOption = Annotated[
    int,
    typer.Option(
        "--max-workflow-steps",
        envvar="TASKLOOM_MAX_WORKFLOW_STEPS",
        min=1,
        help="The most steps one workflow may have.",
    ),
]
MaxItemsOption = Annotated[
    int,
    typer.Option(
        "--max-map-items",
        envvar="TASKLOOM_MAX_MAP_ITEMS",
        min=1,
        help="The most items one map step may run.",
    ),
]

RetentionOption = Annotated[
    str | None,
    typer.Option(
        "--retention",
        envvar="TASKLOOM_RETENTION",
        metavar="AGE",
        show_default=False,
        help=(
            "Remove finished runs older than this (30d, 12h) in the background, in "
            "batches: soon after start, then every 5 minutes. Default: keep every run."
        ),
    ),
]

LogFormatOption = Annotated[
    LogFormat,
    typer.Option(
        "--log-format",
        envvar=LOG_FORMAT_ENV,
        help=(
            "How log lines are written on stderr: plain, for people, or json, one object "
            "per line (time, level, logger, message; run_id, task and attempt inside a run)."
        ),
    ),
]

DaskOption = Annotated[
    str | None,
    typer.Option(
        "--dask",
        envvar="TASKLOOM_DASK_ADDRESS",
        metavar="ADDRESS",
        show_default=False,
        help=(
            "Make the calls of tasks with executor='dask' on this Dask scheduler "
            "(tcp://host:8786), or on a local cluster sized to this machine (local). "
            "Default: those calls are made in this process."
        ),
    ),
]

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks of errors.")]


def database_url(db: str | None) -> str:
    """The SQLAlchemy URL of the database: `--db`, else the environment, else the default."""
    return resolve_database_url(db)


def display_url(url: str) -> str:
    """`url` with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def dump_json(value: Any) -> str:
    """JSON for stdout: indented, non-ASCII text kept as it is."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def examples(*lines: tuple[str, str]) -> str:
    """A help epilog listing examples, each a (command, what it does) pair."""
    rendered = [f"  [bold]{escape(command)}[/bold]\n    {escape(text)}" for command, text in lines]
    return "[bold]Examples[/bold]\n\n" + "\n\n".join(rendered)
