"""Schema versions: read the current revision, upgrade to the newest.

The revision is read with plain SQL, so opening an up-to-date database never imports
Alembic; Alembic is loaded only when an upgrade actually runs. The Alembic configuration
is built in code, pointing at the `migrations` folder inside this package, so an installed
taskloom needs no `alembic.ini`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import Connection, Engine

from ..exceptions import StoreError
from .connect import create_store_engine, resolve_database_url

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["HEAD_REVISION", "MIGRATIONS_DIR", "alembic_config", "current_revision", "upgrade"]

#: The newest revision in `migrations/versions`; a test checks it is Alembic's head.
HEAD_REVISION = "0017"

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

VERSION_TABLE = "alembic_version"

# Any constant works; it only has to be the same for every taskloom process, so two that
# open a new PostgreSQL database at once migrate it one after the other.
_PG_MIGRATION_LOCK = 0x7461736B6C6F6F6D  # "taskloom"


def current_revision(conn: Connection) -> str | None:
    """The revision the database is at, or None when it has never been migrated."""
    if not conn.dialect.has_table(conn, VERSION_TABLE):
        return None
    row = conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").first()
    return None if row is None else str(row[0])


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic configuration for taskloom's migrations, without an ini file."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolation treats % specially (URL-encoded passwords).
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def upgrade(engine_or_url: Engine | str, revision: str = "head") -> None:
    """Upgrade the database to `revision` (the newest by default), in one transaction.

    A URL is resolved like `taskloom.store.resolve_database_url` does (a bare path is a
    SQLite file) and opened with the store's connection settings.
    """
    if isinstance(engine_or_url, Engine):
        _upgrade(engine_or_url, revision)
        return
    engine = create_store_engine(resolve_database_url(engine_or_url))
    try:
        _upgrade(engine, revision)
    finally:
        engine.dispose()


def _upgrade(engine: Engine, revision: str) -> None:
    from alembic import command
    from alembic.util import CommandError

    # On SQLite the store's engine begins write transactions with BEGIN IMMEDIATE, which
    # takes the write lock before Alembic reads the current version: two processes opening
    # a new file at once migrate it in turn. PostgreSQL gets the same from an advisory lock.
    with engine.execution_options(taskloom_write=True).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
        try:
            command.upgrade(alembic_config(conn), revision)
        except CommandError as exc:
            # E.g. a database migrated by a newer taskloom, at a revision unknown here.
            raise StoreError(f"could not upgrade the database schema: {exc}") from exc
