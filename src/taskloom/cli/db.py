"""`taskloom db`: the database schema, upgraded with Alembic migrations; what the
database holds (`db stats`); and removing old finished runs (`db prune`)."""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.table import Table

from ..observability.retention import (
    DEFAULT_BATCH_SIZE,
    MAX_BATCH_SIZE,
    PRUNABLE_STATUSES,
    PruneReport,
    RetentionError,
    RetentionPolicy,
    parse_age,
    parse_statuses,
    prune,
)
from ..schedules.rules import format_instant
from ..store import MEMORY_URL, DatabaseStats, PruneBatch, Store, open_store
from ..store.connect import create_store_engine, sqlite_file
from ..store.migrate import HEAD_REVISION, current_revision, upgrade
from .errors import CliError, reporting_errors
from .options import (
    DbOption,
    JsonOption,
    VerboseOption,
    database_url,
    display_url,
    dump_json,
    examples,
)
from .render import make_console

__all__ = ["db_app", "retention_policy"]

#: Seconds between two progress lines of a long prune on a terminal.
PROGRESS_EVERY = 5.0

db_app = typer.Typer(
    help="Create and upgrade the database schema; see what it holds; prune old runs.",
    no_args_is_help=True,
    epilog=examples(
        ("taskloom db upgrade", "create or upgrade .taskloom/taskloom.db"),
        ("taskloom db current --db postgresql://user@host/taskloom", "the schema revision"),
        ("taskloom db stats", "rows per table, size on disk, the oldest runs"),
        ("taskloom db prune --older-than 30d", "remove runs finished more than 30 days ago"),
    ),
)


def _sql_url(db: str | None) -> str:
    url = database_url(db)
    if url.strip() == MEMORY_URL:
        raise CliError(f"{MEMORY_URL} keeps nothing between commands: it has no schema to manage")
    return url


def _revision(url: str) -> str | None:
    """The schema revision of the database, or None when it has none (or does not exist)."""
    path = sqlite_file(url)
    if path is not None and not path.exists():
        return None  # reading it must not create it
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            return current_revision(conn)
    finally:
        engine.dispose()


def _label(revision: str | None) -> str:
    if revision is None:
        return "none"
    return f"{revision} (head)" if revision == HEAD_REVISION else revision


@db_app.command(
    "upgrade",
    epilog=examples(
        ("taskloom db upgrade", "the default database"),
        ("taskloom db upgrade --db sqlite:///runs.db", "another SQLite file"),
    ),
)
def upgrade_command(db: DbOption = None, verbose: VerboseOption = False) -> None:
    """Create the schema, or upgrade it to the newest revision."""
    with reporting_errors(verbose=verbose):
        url = _sql_url(db)
        before = _revision(url)
        upgrade(url)
        after = _revision(url)
        where = display_url(url)
        if before == after:
            typer.echo(f"{where}: already at revision {_label(after)}")
        else:
            typer.echo(f"{where}: upgraded from revision {_label(before)} to {_label(after)}")


@db_app.command(
    "current",
    epilog=examples(
        ("taskloom db current", "prints e.g. 0002 (head)"),
        ("taskloom db current --db postgresql://user@host/taskloom", "another database"),
    ),
)
def current_command(db: DbOption = None, verbose: VerboseOption = False) -> None:
    """Print the schema revision of the database."""
    with reporting_errors(verbose=verbose):
        url = _sql_url(db)
        revision = _revision(url)
        typer.echo(_label(revision))
        if revision is None:
            typer.echo(
                f"{display_url(url)} has no taskloom schema yet: `taskloom db upgrade` creates it",
                err=True,
            )
        elif revision != HEAD_REVISION:
            typer.echo(
                f"the newest revision is {HEAD_REVISION}: run `taskloom db upgrade`", err=True
            )


@contextmanager
def _existing_store(db: str | None) -> Iterator[Store]:
    """The store of a database that exists: a SQLite file that does not is an error,
    and is not created."""
    url = _sql_url(db)
    path = sqlite_file(url)
    if path is not None and not path.exists():
        raise CliError(f"--db: there is no database file at {path}")
    store = open_store(url)
    try:
        yield store
    finally:
        store.close()


def _policy(older_than: str, status: str | None, batch_size: int) -> RetentionPolicy:
    try:
        statuses = PRUNABLE_STATUSES if status is None else parse_statuses(status)
        return RetentionPolicy(
            older_than=parse_age(older_than), statuses=statuses, batch_size=batch_size
        )
    except RetentionError as exc:
        raise CliError(exc.message) from None


def retention_policy(retention: str | None) -> RetentionPolicy | None:
    """The policy of `--retention` (None: keep every run); `CliError` naming the option."""
    if retention is None or not retention.strip():
        return None
    try:
        return RetentionPolicy(older_than=parse_age(retention, "--retention"))
    except RetentionError as exc:
        raise CliError(exc.message) from None


def _report_dict(report: PruneReport) -> dict[str, Any]:
    found = dataclasses.asdict(report)
    found["cutoff_at"] = format_instant(report.cutoff)
    return found


@db_app.command(
    "prune",
    epilog=examples(
        ("taskloom db prune --older-than 30d", "every run finished more than 30 days ago"),
        (
            "taskloom db prune --older-than 7d --status completed,skipped --dry-run",
            "what would go of the runs that completed or were skipped",
        ),
        (
            "taskloom db prune --older-than 90d --db postgresql://db.internal/taskloom",
            "on another database, while workers use it",
        ),
    ),
)
def prune_command(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            metavar="AGE",
            show_default=False,
            help="Remove runs that finished longer ago than this: 30d, 12h, 90m, 1h30m.",
        ),
    ],
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            metavar="LIST",
            show_default=False,
            help=(
                "Only families whose first run ended so, comma-separated: "
                f"{', '.join(PRUNABLE_STATUSES)}. Default: all of them."
            ),
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be removed; remove nothing.")
    ] = False,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            metavar="N",
            min=1,
            max=MAX_BATCH_SIZE,
            help="Runs removed per transaction (a larger family goes whole in one).",
        ),
    ] = DEFAULT_BATCH_SIZE,
    json_output: JsonOption = False,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Remove finished runs older than --older-than, with their attempts and log lines.

    Runs go with their family: a workflow run with its step runs, a run with the child
    runs it started (and theirs). A family goes only when every run of it is finished
    and finished before the cutoff; a pending or running run is never removed, nor any
    run of its family. The removal is done in batches, each one short transaction, so
    workers and servers on the database go on meanwhile.
    """
    with reporting_errors(verbose=verbose):
        policy = _policy(older_than, status, batch_size)
        with _existing_store(db) as store:
            report = prune(
                store, policy, now=time.time(), dry_run=dry_run, on_batch=_progress(dry_run)
            )
        if json_output:
            typer.echo(dump_json(_report_dict(report)))
            return
        typer.echo(report.summary())
        if report.by_status:
            parts = ", ".join(f"{name} {count:,}" for name, count in report.by_status.items())
            typer.echo(f"  by the status of each family's first run: {parts}")
        if report.kept:
            families = "family" if report.kept == 1 else "families"
            typer.echo(
                f"  kept {report.kept:,} {families} old enough but with a run unfinished "
                "or finished since the cutoff"
            )


def _progress(dry_run: bool) -> Callable[[str, PruneBatch], None] | None:
    """On a terminal, a line on stderr every few seconds while a long prune goes on."""
    if not sys.stderr.isatty():
        return None
    counted = [0, time.monotonic()]
    verb = "would remove" if dry_run else "removed"

    def on_batch(status: str, batch: PruneBatch) -> None:
        counted[0] += batch.runs
        if time.monotonic() - counted[1] >= PROGRESS_EVERY:
            counted[1] = time.monotonic()
            typer.echo(f"... {verb} {int(counted[0]):,} runs so far ({status})", err=True)

    return on_batch


def _size(count: int | None) -> str:
    if count is None:
        return "-"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _stats_dict(stats: DatabaseStats, url: str) -> dict[str, Any]:
    found = dataclasses.asdict(stats)
    found["database"] = display_url(url)
    for key in ("oldest_run_at", "oldest_finished_at"):
        value = found[key]
        found[key.replace("_at", "")] = None if value is None else format_instant(value)
    return found


def _ago(instant: float | None) -> str:
    if instant is None:
        return "-"
    days = (time.time() - instant) / 86400
    return f"{format_instant(instant)} ({days:,.1f} days ago)"


@db_app.command(
    "stats",
    epilog=examples(
        ("taskloom db stats", "the default database"),
        ("taskloom db stats --db postgresql://db.internal/taskloom --json", "as JSON"),
    ),
)
def stats_command(
    json_output: JsonOption = False, db: DbOption = None, verbose: VerboseOption = False
) -> None:
    """Print rows per table, size on disk, runs by status, the oldest run and the oldest
    finished run.

    Sizes: on SQLite the file and its write-ahead log, and each table with its indexes;
    on PostgreSQL the database and each table with its indexes (`pg_total_relation_size`).
    """
    with reporting_errors(verbose=verbose):
        url = _sql_url(db)
        with _existing_store(db) as store:
            stats = store.database_stats()
        if json_output:
            typer.echo(dump_json(_stats_dict(stats, url)))
            return
        size = _size(stats.size_bytes)
        if stats.files:
            size += " (" + ", ".join(f"{n} {_size(b)}" for n, b in stats.files.items()) + ")"
        statuses = ", ".join(f"{s} {c:,}" for s, c in sorted(stats.runs_by_status.items()))
        total = sum(stats.runs_by_status.values())
        overview = Table.grid(padding=(0, 2))
        for label, value in (
            ("database", f"{display_url(url)} ({stats.backend})"),
            ("size", size),
            ("runs", f"{total:,}" + (f" ({statuses})" if statuses else "")),
            ("oldest run", _ago(stats.oldest_run_at)),
            ("oldest finished run", _ago(stats.oldest_finished_at)),
        ):
            overview.add_row(f"[bold]{label}[/bold]", value)
        tables = Table(box=None, header_style="bold")
        tables.add_column("table")
        tables.add_column("rows", justify="right")
        tables.add_column("size", justify="right")
        for table in stats.tables:
            tables.add_row(table.name, f"{table.rows:,}", _size(table.bytes))
        console = make_console()
        console.print(overview)
        console.print()
        console.print(tables)
