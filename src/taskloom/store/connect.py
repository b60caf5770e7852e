"""Database URLs and engines of the SQL store.

`resolve_database_url` turns what a user typed into a SQLAlchemy URL; `create_store_engine`
opens it with the store's settings: SQLite in WAL mode with explicit transactions (write
transactions take the lock up front), one shared connection for an in-memory database,
and a connection pool with pre-ping for PostgreSQL.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import StaticPool

__all__ = [
    "create_store_engine",
    "default_database_url",
    "resolve_database_url",
    "sqlite_file",
]


def default_database_url() -> str:
    """The SQLite file `.taskloom/taskloom.db` under the current working directory."""
    return f"sqlite:///{Path.cwd() / '.taskloom' / 'taskloom.db'}"


def resolve_database_url(url: str | None) -> str:
    """Turn what a user typed into a SQLAlchemy URL.

    None (or blank) is the default file; a bare path is a SQLite file; `postgresql://` and
    `postgres://` use psycopg 3; `:memory:` is an in-memory SQLite database.
    """
    if url is None or not url.strip():
        return default_database_url()
    url = url.strip()
    if url == ":memory:":
        return "sqlite://"
    if "://" not in url:
        return f"sqlite:///{os.path.abspath(os.path.expanduser(url))}"
    scheme, rest = url.split("://", 1)
    if scheme in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    return url


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL, or None for another database or an in-memory one."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if parsed.query.get("mode") == "memory" or database.startswith("file::memory:"):
        return None
    return Path(database)


def create_store_engine(url: str, *, pool_size: int = 5, max_overflow: int = 10) -> Engine:
    """An engine with the store's connection settings (SQLite pragmas, transactions)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(
            parsed, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True
        )
    path = sqlite_file(url)
    if path is None:
        # One shared connection, or every thread would see its own empty database; the
        # store serialises its use with a lock.
        engine = create_engine(
            parsed, poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            parsed,
            pool_size=pool_size,
            max_overflow=max_overflow,
            connect_args={"check_same_thread": False, "timeout": 30.0},
        )
    file_db = path is not None

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from the sqlite3 module (see `_on_begin`).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        try:
            if file_db:
                # Readers never block the writer nor each other; NORMAL is durable across
                # process crashes (only a power loss may drop the last commits).
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=OFF")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A write transaction takes the write lock up front: a deferred one that upgrades
        # from reading can fail at once with SQLITE_BUSY, skipping the busy timeout.
        write = conn.get_execution_options().get("taskloom_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine
