"""`taskloom db`: the database schema, upgraded with Alembic migrations."""

from __future__ import annotations

import typer

from ..store import MEMORY_URL
from ..store.connect import create_store_engine, sqlite_file
from ..store.migrate import HEAD_REVISION, current_revision, upgrade
from .errors import CliError, reporting_errors
from .options import DbOption, VerboseOption, database_url, display_url, examples

__all__ = ["db_app"]

db_app = typer.Typer(
    help="Create and upgrade the database schema.",
    no_args_is_help=True,
    epilog=examples(
        ("taskloom db upgrade", "create or upgrade .taskloom/taskloom.db"),
        ("taskloom db current --db postgresql://user@host/taskloom", "the schema revision"),
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
