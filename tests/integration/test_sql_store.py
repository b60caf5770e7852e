"""`SqlStore` and `open_store` themselves: URLs, opening, SQLite's settings and locks,
a closed store, and a write that may not wait."""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from conformance.records import T0, SpawnWorker, make_run

from support import wait_until
from taskloom.exceptions import StoreError
from taskloom.store import (
    MemoryStore,
    SqlStore,
    WriteBatch,
    default_database_url,
    open_store,
    resolve_database_url,
)
from taskloom.store.base import StoreBusyError
from taskloom.store.checkpoint import Checkpointer


def test_resolve_database_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    default = f"sqlite:///{tmp_path / '.taskloom' / 'taskloom.db'}"
    assert default_database_url() == default
    assert not (tmp_path / ".taskloom").exists()  # created on open, not here
    assert resolve_database_url(None) == default
    assert resolve_database_url("runs.db") == f"sqlite:///{tmp_path / 'runs.db'}"
    assert resolve_database_url("/x/y.db") == "sqlite:////x/y.db"
    assert resolve_database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert resolve_database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert resolve_database_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert resolve_database_url("sqlite://") == "sqlite://"
    assert resolve_database_url("sqlite:///:memory:") == "sqlite:///:memory:"


def test_open_store_default_creates_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store()
    try:
        assert isinstance(store, SqlStore)
        assert (tmp_path / ".taskloom" / "taskloom.db").is_file()
    finally:
        store.close()
    memory = open_store("memory://")
    assert isinstance(memory, MemoryStore)
    memory.close()


def test_sqlite_file_settings(tmp_path: Path) -> None:
    store = SqlStore(str(tmp_path / "deep" / "er" / "runs.db"))
    store.open()
    try:
        engine = store._engine
        assert engine is not None
        with engine.connect() as conn:
            pragmas = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in (
                    "journal_mode",
                    "synchronous",
                    "busy_timeout",
                    "foreign_keys",
                    "wal_autocheckpoint",
                )
            }
        assert pragmas == {
            "journal_mode": "wal",
            "synchronous": 1,
            "busy_timeout": 30000,
            "foreign_keys": 0,
            "wal_autocheckpoint": 0,  # no commit checkpoints: the store's thread does
        }
    finally:
        store.close()


def checkpointed(checkpointer: Checkpointer, done: int) -> bool:
    return checkpointer.checkpoints > done


def test_the_write_ahead_log_of_a_file_stays_bounded(tmp_path: Path) -> None:
    """No commit checkpoints, yet the log does not grow with what is written: the store's
    checkpoints copy it into the database while it changes, and SQLite starts it over."""
    path = tmp_path / "runs.db"
    wal = path.with_name("runs.db-wal")
    chunk, rounds = 4 << 20, 12  # 48 MiB in all, in rounds of 4 MiB
    with SqlStore(str(path)) as store:
        checkpointer = store._checkpointer
        assert checkpointer is not None
        largest = 0
        for _ in range(rounds):
            runs = [make_run(inputs={"text": "x" * 8_000}) for _ in range(chunk // 8_000)]
            for start in range(0, len(runs), 100):
                store.write(WriteBatch(new_runs=runs[start : start + 100]))
            largest = max(largest, wal.stat().st_size)
            # The next round writes after a checkpoint of this one's pages.
            wait_until(functools.partial(checkpointed, checkpointer, checkpointer.checkpoints))
    with sqlite3.connect(path) as check:
        (count,) = check.execute("SELECT count(*) FROM runs").fetchone()
    assert count == rounds * (chunk // 8_000)
    # A round and a half at most (a checkpoint may come in the middle of a round), where
    # without checkpoints the log would hold all 48 MiB.
    assert largest < 2.5 * chunk, largest


def test_the_write_ahead_log_stays_short_while_writes_never_pause(tmp_path: Path) -> None:
    """A writer that commits without a break never lets a passive checkpoint copy the
    whole log, so SQLite would never start it over and the log would hold every commit:
    the store's checkpoints start it over once it is long."""
    path = tmp_path / "runs.db"
    wal = path.with_name("runs.db-wal")
    with SqlStore(str(path)) as store:
        checkpointer = store._checkpointer
        assert checkpointer is not None
        runs = [make_run() for _ in range(1_000)]
        store.write(WriteBatch(new_runs=runs))

        def commit(i: int) -> None:
            changes = {runs[(i * 10 + k) % 1_000].id: {"progress": i / 1e6} for k in range(10)}
            store.write(WriteBatch(run_updates=changes))

        # What a commit adds to the log, before a checkpoint may have looked at it (the
        # first looks only copies: a restart waits for RESTART_FRAMES).
        before = wal.stat().st_size
        for i in range(50):
            commit(i)
        per_commit = (wal.stat().st_size - before) / 50
        assert per_commit >= 4096  # a page at least
        commits, largest = 50, 0
        writing_until = time.monotonic() + 3
        # Three seconds at least, and until two restarts (for at most 20 s more).
        while time.monotonic() < writing_until or (
            checkpointer.restarts < 2 and time.monotonic() < writing_until + 20
        ):
            commit(commits)
            commits += 1
            largest = max(largest, wal.stat().st_size)
        assert checkpointer.restarts >= 2
    # Without the restarts the log holds all that was written.
    assert largest < commits * per_commit / 3, (largest, commits, per_commit)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite_is_shared_by_threads(url: str) -> None:
    with SqlStore(url) as store:
        errors: list[BaseException] = []

        def work(i: int) -> None:
            try:
                run = make_run(created_at=T0 + i)
                store.write(WriteBatch(new_runs=[run]))
                assert store.get_run(run.id) == run
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(store.list_runs()) == 8
        store.register_worker("w", hostname="h", pid=1)
        assert store.is_worker_alive("w")
        assert not store.is_worker_alive("x")


def test_closed_store_raises_store_error(tmp_path: Path) -> None:
    store = SqlStore(str(tmp_path / "runs.db"))
    with pytest.raises(StoreError, match="not open"):
        store.get_run("x")
    store.open()
    store.close()
    with pytest.raises(StoreError, match="not open"):
        store.list_runs()


def test_killed_worker_lock_file_is_removed(tmp_path: Path, spawn_worker: SpawnWorker) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    with SqlStore(url) as store, spawn_worker(url, "child") as proc:
        lock = tmp_path / "runs.db.workers" / "child.lock"
        assert lock.read_text().strip() == str(proc.pid)
        proc.kill()
        proc.wait()
        assert lock.exists()
        assert not store.is_worker_alive("child")
        assert not lock.exists()


def test_a_write_that_may_not_wait_is_refused_at_once_while_another_connection_writes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs.db"
    run = make_run()
    with SqlStore(str(path)) as store:
        assert store.inline_writes
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # holds the file's write lock
            started = time.monotonic()
            with pytest.raises(StoreBusyError):
                store.write(WriteBatch(new_runs=[run]), wait=False)
            assert time.monotonic() - started < 1.0  # not the 30 s a waiting write allows
            assert store.get_run(run.id) is None
            other.execute("ROLLBACK")
        finally:
            other.close()
        store.write(WriteBatch(new_runs=[run]), wait=False)
        assert store.get_run(run.id) == run


def test_a_write_that_may_wait_waits_again_after_writes_that_may_not(tmp_path: Path) -> None:
    # The write connection keeps the timeout of its last write: a waiting write after
    # inline ones must set it back, and so wait for a lock that is let go meanwhile.
    path = tmp_path / "runs.db"
    first, second = make_run(), make_run()
    with SqlStore(str(path)) as store:
        store.write(WriteBatch(new_runs=[first]), wait=False)
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            other.execute("BEGIN IMMEDIATE")
            release = threading.Timer(0.3, lambda: other.execute("ROLLBACK"))
            release.start()
            store.write(WriteBatch(new_runs=[second]))  # waits for the ROLLBACK
            release.join(timeout=10)
        finally:
            other.close()
        assert store.get_run(second.id) == second


def test_a_sqlite_file_journals_changed_runs_while_another_engine_uses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "runs.db"
    store, other = SqlStore(str(path)), SqlStore(str(path))
    store.open()
    other.open()

    def journal() -> list[str]:
        with sqlite3.connect(path) as connection:
            rows = connection.execute("SELECT lines FROM run_changes ORDER BY id").fetchall()
        return [line for (lines,) in rows for line in lines.splitlines()]

    try:
        store.register_worker("me", hostname="h", pid=1)
        alone = make_run()
        store.write(WriteBatch(new_runs=[alone]))
        assert journal() == []  # nobody else on the file: nothing to tell
        other.register_worker("you", hostname="h", pid=2)
        assert store.heartbeat("me")
        seen = make_run()
        store.write(WriteBatch(new_runs=[seen], run_updates={alone.id: {"status": "running"}}))
        assert journal() == [f"{seen.id} pending", f"{alone.id} running"]
        monkeypatch.setattr("taskloom.store.sql.JOURNAL_KEEP", -1.0)  # all of it is old
        assert store.heartbeat("me")
        assert journal() == []
        other.unregister_worker("you")
        assert store.heartbeat("me")
        store.write(WriteBatch(run_updates={seen.id: {"status": "running"}}))
        assert journal() == []  # alone again
    finally:
        store.close()
        other.close()
