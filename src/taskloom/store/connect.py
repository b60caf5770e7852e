"""Database URLs and engines of the SQL store.

`resolve_database_url` turns what a user typed into a SQLAlchemy URL; `create_store_engine`
opens it with the store's settings: SQLite in WAL mode with explicit transactions (write
transactions take the lock up front), one shared connection for an in-memory database,
and a connection pool with pre-ping for PostgreSQL.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import StaticPool

from ..exceptions import StoreError

__all__ = [
    "create_store_engine",
    "default_database_url",
    "resolve_database_url",
    "sqlite_file",
]

#: Seconds a SQLite connection waits for another one's lock before giving up.
BUSY_TIMEOUT = 30.0


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


def _use_wal(cursor: Any) -> None:
    """Put the database in WAL mode (a setting kept in the file), retrying while busy.

    Two connections switching a new file at once can get SQLITE_BUSY at once: SQLite skips
    the busy handler there to avoid a deadlock, and may also just keep the old mode.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower() == "wal":
                return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
        if time.monotonic() > deadline:
            raise sqlite3.OperationalError("could not switch the database to WAL mode: busy")
        time.sleep(0.01)


#: Seconds PostgreSQL lets a store transaction sit idle before it ends the session.
IDLE_IN_TRANSACTION = 2.0


def create_store_engine(
    url: str, *, pool_size: int = 5, max_overflow: int = 10, checkpoints_elsewhere: bool = False
) -> Engine:
    """An engine with the store's connection settings (SQLite pragmas, transactions).

    `checkpoints_elsewhere`: a SQLite file's connections leave its WAL checkpoints to a
    `Checkpointer` the caller runs (see `checkpoint.py`) instead of making them in a commit.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        server = create_engine(
            parsed, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True
        )
        if server.dialect.name == "postgresql":

            @event.listens_for(server, "connect")
            def _on_pg_connect(dbapi_conn: Any, _record: Any) -> None:
                # The store's transactions never wait on the client: one left open (its
                # process paused with SIGSTOP, say) is ended by the server, so its locks
                # cannot hold up the other workers for longer than this.
                autocommit = dbapi_conn.autocommit
                dbapi_conn.autocommit = True
                dbapi_conn.execute(
                    f"SET idle_in_transaction_session_timeout = {int(IDLE_IN_TRANSACTION * 1000)}"
                )
                # psycopg prepares a statement it runs often; PostgreSQL may then keep one
                # generic plan for it, made while the tables were nearly empty (a scan of the
                # whole table, slower as it grows). Each execution is planned for its values.
                dbapi_conn.execute("SET plan_cache_mode = force_custom_plan")
                dbapi_conn.autocommit = autocommit

        return server
    path = sqlite_file(url)
    if path is None:
        # One shared connection, or every thread would see its own empty database; the
        # store serialises its use with a lock.
        engine = create_engine(
            parsed, poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
    else:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the folder of the database file {str(path)!r}: {exc.strerror}"
            ) from exc
        engine = create_engine(
            parsed,
            pool_size=pool_size,
            max_overflow=max_overflow,
            connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT},
        )
    file_db = path is not None

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from the sqlite3 module (see `_on_begin`).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        try:
            # First, so that switching a new file to WAL waits for a concurrent opener.
            cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
            if file_db:
                # Readers never block the writer nor each other; NORMAL is durable across
                # process crashes (only a power loss may drop the last commits).
                _use_wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
            if file_db and checkpoints_elsewhere:
                cursor.execute("PRAGMA wal_autocheckpoint=0")
            # The store keeps no foreign keys: their checks would cost on every write.
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
