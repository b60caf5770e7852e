"""`Store.schema_revision()`, on every backend: memory, a SQLite file and PostgreSQL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from alembic import command

from taskloom.store import Store
from taskloom.store.connect import create_store_engine, resolve_database_url
from taskloom.store.migrate import HEAD_REVISION, alembic_config, upgrade

if TYPE_CHECKING:
    from conftest import Backend


def test_an_open_store_is_at_the_newest_revision(backend: Backend) -> None:
    store: Store = backend.open()
    assert store.schema_revision() == HEAD_REVISION


def test_the_revision_is_read_from_the_database_each_time(shared_backend: Backend) -> None:
    store = shared_backend.open()
    previous = f"{int(HEAD_REVISION) - 1:04d}"
    engine = create_store_engine(resolve_database_url(shared_backend.url))
    try:
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), previous)
    finally:
        engine.dispose()
    assert store.schema_revision() == previous
    upgrade(shared_backend.url)
    assert store.schema_revision() == HEAD_REVISION
