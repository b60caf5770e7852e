"""The Alembic migrations build exactly the schema of `taskloom.store.schema`."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

import taskloom.store
from support import SQL_KINDS, database_for
from taskloom.exceptions import StoreError
from taskloom.store import SqlStore
from taskloom.store.migrate import (
    HEAD_REVISION,
    MIGRATIONS_DIR,
    alembic_config,
    current_revision,
    upgrade,
)
from taskloom.store.schema import metadata

#: The folder that holds the `taskloom` package, for the Python of a child process.
PACKAGE_ROOT = str(Path(taskloom.store.__file__).resolve().parents[2])


#: Indexes on an expression (`priority DESC`), which Alembic cannot compare: each is
#: checked by its definition as the database reports it instead.
EXPRESSION_INDEXES = {
    "ix_runs_claimable": (
        "queue, priority desc, created_at, id where status = 'pending' and worker_id is null"
    ),
}


def _index_definitions(conn: Any) -> dict[str, str]:
    if conn.dialect.name == "sqlite":
        rows = conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'index'"))
    else:
        rows = conn.execute(
            text("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()")
        )
    found = {}
    for name, sql in rows:
        if name in EXPRESSION_INDEXES:
            # Compared without quotes, casts and parentheses, which each database adds its way.
            body = sql[sql.index("(") :].lower().replace("::text", "").replace("btree ", "")
            found[name] = " ".join(body.translate(str.maketrans("", "", '"()')).split())
    return found


def assert_matches_schema(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = [
                d
                for d in compare_metadata(context, metadata)
                if not (d[0] in ("add_index", "remove_index") and d[1].name in EXPRESSION_INDEXES)
            ]
            assert differences == []
            assert _index_definitions(conn) == EXPRESSION_INDEXES
            assert current_revision(conn) == HEAD_REVISION
    finally:
        engine.dispose()


def test_head_revision_is_alembic_head() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_heads() == [HEAD_REVISION]
    assert (MIGRATIONS_DIR / "env.py").is_file()


def test_empty_sqlite_file_upgrades_to_the_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'runs.db'}"
    upgrade(url)  # creates the missing folder too
    assert_matches_schema(url)
    upgrade(url)  # at head already: nothing to do
    assert_matches_schema(url)


def test_bare_path_upgrades(tmp_path: Path) -> None:
    upgrade(str(tmp_path / "runs.db"))
    assert_matches_schema(f"sqlite:///{tmp_path / 'runs.db'}")


@pytest.mark.postgres
def test_empty_postgres_database_upgrades_to_the_schema(postgres_database: str) -> None:
    upgrade(postgres_database)
    assert_matches_schema(postgres_database)
    upgrade(postgres_database.replace("postgresql+psycopg://", "postgresql://"))
    assert_matches_schema(postgres_database)


def test_current_revision_of_an_empty_database(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        with engine.connect() as conn:
            assert current_revision(conn) is None
    finally:
        engine.dispose()


def test_open_without_auto_migrate_asks_for_an_upgrade(tmp_path: Path) -> None:
    store = SqlStore(str(tmp_path / "runs.db"), auto_migrate=False)
    with pytest.raises(StoreError, match="taskloom db upgrade"):
        store.open()
    upgrade(str(tmp_path / "runs.db"))
    store.open()  # now at head
    store.close()


def test_stores_opening_a_new_file_at_once_migrate_it_once(tmp_path: Path) -> None:
    path = str(tmp_path / "runs.db")
    stores = [SqlStore(path) for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def open_one(store: SqlStore) -> None:
        barrier.wait()
        try:
            store.open()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for store in stores:
        store.close()
    assert errors == []
    assert_matches_schema(f"sqlite:///{path}")


def test_opening_an_up_to_date_database_does_not_import_alembic(tmp_path: Path) -> None:
    path = str(tmp_path / "runs.db")
    upgrade(path)
    script = (
        "import sys\n"
        "from taskloom.store import open_store\n"
        "store = open_store(sys.argv[1]); store.close()\n"
        "print('alembic' in sys.modules)\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, "-c", script, path],
        capture_output=True,
        text=True,
        env=env,
        timeout=50,
        check=True,
    )
    assert done.stdout.strip() == "False"


def test_database_at_an_unknown_revision_is_a_store_error(tmp_path: Path) -> None:
    path = str(tmp_path / "runs.db")
    upgrade(path)
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999_future'")
    finally:
        engine.dispose()
    with pytest.raises(StoreError, match="9999_future"):
        SqlStore(path).open()


def test_offline_mode_renders_the_sql(capsys: pytest.CaptureFixture[str]) -> None:
    from alembic import command

    command.upgrade(alembic_config(url="postgresql+psycopg://u@h/db"), "head", sql=True)
    out = capsys.readouterr().out
    assert "CREATE TABLE runs" in out
    assert "CREATE INDEX ix_runs_parent_id" in out


@pytest.mark.parametrize("kind", SQL_KINDS)
def test_runs_recorded_before_the_shared_queue_upgrade_and_stay_readable(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = database_for(kind, tmp_path, request)
    upgrade(url, "0006")  # the schema of the release before the shared queue
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for run_id, status, owner in (
                ("done", "completed", "old-worker"),
                ("waiting", "pending", "old-worker"),
                ("loose", "pending", None),
            ):
                conn.execute(
                    text(
                        "INSERT INTO runs (id, task, status, priority, inputs, result, attempts, "
                        "max_attempts, worker_id, created_at, cancel_requested) VALUES "
                        "(:id, 'demo.add', :status, 0, '{\"a\": 1}', :result, 0, 1, :owner, "
                        "1.0, false)"
                    ),
                    {
                        "id": run_id,
                        "status": status,
                        "owner": owner,
                        "result": "2" if status == "completed" else None,
                    },
                )
            conn.execute(
                text(
                    "INSERT INTO workers (id, hostname, pid, started_at, heartbeat_at) "
                    "VALUES ('old-worker', 'h', 1, 1.0, 1.0)"
                )
            )
    finally:
        engine.dispose()
    store = SqlStore(url)  # upgrades on open
    store.open()
    try:
        runs = {run.id: run for run in store.list_runs(limit=10)}
        assert runs["done"].status == "completed"
        assert runs["done"].result == 2
        assert runs["done"].inputs == {"a": 1}
        assert {run.queue for run in runs.values()} == {"default"}
        assert {run.lease for run in runs.values()} == {0}
        [old] = store.list_workers()
        assert old.id == "old-worker"
        assert old.state == "lost"  # it holds no lock: its process is long gone
        # Its unfinished run goes back to the queue, and any worker may claim it.
        assert store.reap("new-worker") == 1
        waiting = store.get_run("waiting")
        assert waiting is not None
        assert waiting.worker_id is None
    finally:
        store.close()
    assert_matches_schema(url)


@pytest.mark.parametrize("kind", SQL_KINDS)
def test_the_rollup_keeps_its_counts_through_the_shard_upgrade_and_back(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from alembic import command

    url = database_for(kind, tmp_path, request)
    upgrade(url, "0014")
    counts = "SELECT grain, bucket_start, task, status, runs FROM run_counts ORDER BY 1, 2, 3, 4"
    durations = "SELECT grain, bucket_start, task, bin, runs, max_seconds FROM run_durations"
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO run_counts (grain, bucket_start, task, status, runs) VALUES "
                    "(60, 600.0, 'demo.add', 'completed', 5), (60, 600.0, 'demo.add', 'failed', 2)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO run_durations (grain, bucket_start, task, bin, runs, "
                    "max_seconds) VALUES (60, 600.0, 'demo.add', 3, 7, 1.5)"
                )
            )
        upgrade(url)
        with engine.begin() as conn:
            assert conn.execute(text(counts)).all() == [
                (60, 600.0, "demo.add", "completed", 5),
                (60, 600.0, "demo.add", "failed", 2),
            ]
            assert conn.execute(text("SELECT DISTINCT shard FROM run_counts")).all() == [(0,)]
            # Another session's rows for the same bucket, as a second worker adds them.
            conn.execute(
                text(
                    "INSERT INTO run_counts (grain, bucket_start, task, status, shard, runs) "
                    "VALUES (60, 600.0, 'demo.add', 'completed', 4242, 3)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO run_durations (grain, bucket_start, task, bin, shard, runs, "
                    "max_seconds) VALUES (60, 600.0, 'demo.add', 3, 4242, 1, 2.5)"
                )
            )
        assert_matches_schema(url)
        with engine.connect() as conn:
            command.downgrade(alembic_config(conn, url), "0014")
            conn.commit()
        with engine.connect() as conn:
            assert conn.execute(text(counts)).all() == [
                (60, 600.0, "demo.add", "completed", 8),
                (60, 600.0, "demo.add", "failed", 2),
            ]
            assert conn.execute(text(durations)).all() == [(60, 600.0, "demo.add", 3, 8, 2.5)]
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", SQL_KINDS)
def test_idempotency_keys_stay_unique_through_the_partial_index_upgrade_and_back(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from alembic import command

    url = database_for(kind, tmp_path, request)
    upgrade(url, "0016")
    insert = text(
        "INSERT INTO runs (id, task, status, priority, inputs, attempts, max_attempts, "
        "idempotency_key, created_at, cancel_requested) VALUES "
        "(:id, 'demo.add', 'pending', 0, '{}', 0, 1, :key, 1.0, false)"
    )
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for run_id, key in (("keyed", "order-1"), ("plain-1", None), ("plain-2", None)):
                conn.execute(insert, {"id": run_id, "key": key})
        upgrade(url)
        assert_matches_schema(url)
        with engine.begin() as conn:
            rows = conn.execute(text("SELECT id, idempotency_key FROM runs ORDER BY id")).all()
            assert rows == [("keyed", "order-1"), ("plain-1", None), ("plain-2", None)]
            conn.execute(insert, {"id": "plain-3", "key": None})  # many runs without a key
        with pytest.raises(IntegrityError, match=r"(?i)unique"), engine.begin() as conn:
            conn.execute(insert, {"id": "again", "key": "order-1"})
        if kind == "postgresql":
            with engine.connect() as conn:
                options = conn.execute(
                    text("SELECT reloptions FROM pg_class WHERE relname = 'attempts'")
                ).scalar_one()
            assert options == ["fillfactor=50"]
        with engine.connect() as conn:
            command.downgrade(alembic_config(conn, url), "0016")
            conn.commit()
        with pytest.raises(IntegrityError, match=r"(?i)unique"), engine.begin() as conn:
            conn.execute(insert, {"id": "again", "key": "order-1"})
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM runs")).scalar_one() == 4
            if kind == "postgresql":
                options = conn.execute(
                    text("SELECT reloptions FROM pg_class WHERE relname = 'attempts'")
                ).scalar_one()
                assert options is None
            else:
                [claimable] = conn.execute(
                    text("SELECT sql FROM sqlite_master WHERE name = 'ix_runs_claimable'")
                ).scalars()
                assert "priority DESC" in claimable
        upgrade(url)
        assert_matches_schema(url)
    finally:
        engine.dispose()
