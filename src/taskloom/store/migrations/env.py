"""Alembic environment of the taskloom store.

`taskloom.store.migrate` builds the Alembic configuration in code and hands over an open
connection (`config.attributes["connection"]`), so no `alembic.ini` is needed and the
migration runs inside the caller's transaction. Offline mode (`--sql`) renders the SQL for
the URL in `sqlalchemy.url`.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from taskloom.store.schema import metadata

config = context.config


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things in place; batch mode recreates tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    connection = config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError(
            "taskloom migrations run through taskloom.store.migrate.upgrade(), "
            "which provides the database connection"
        )
    run_online(connection)
