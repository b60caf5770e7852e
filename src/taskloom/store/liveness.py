"""Worker liveness for the SQL store: a lock that a live worker's process holds.

A lock dies with its process, so a killed worker is known to be gone at once, with no
lease to wait out and no clock to trust:

* a SQLite file: an exclusive `flock` on `<database>.workers/<worker id>.lock`;
* PostgreSQL: a session-level advisory lock, held on a connection kept for it;
* an in-memory SQLite database: only this process can reach it, so the workers it
  registered are the live ones.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
from contextlib import suppress
from pathlib import Path
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from ..exceptions import StoreError

__all__ = ["AdvisoryLocks", "LocalWorkers", "LockFiles", "WorkerLocks", "advisory_key"]


class WorkerLocks(Protocol):
    def acquire(self, worker_id: str) -> None:
        """Take the worker's lock; StoreError if a live process holds it already."""

    def release(self, worker_id: str) -> None:
        """Let go of the worker's lock, if this store holds it."""

    def release_all(self) -> None: ...

    def check(self, worker_id: str) -> None:
        """Make sure a lock this store holds is still held (retake it if it was lost)."""

    def is_alive(self, worker_id: str) -> bool: ...


class LocalWorkers:
    """Workers of an in-memory database: alive while registered with this store."""

    def __init__(self) -> None:
        self._ids: set[str] = set()

    def acquire(self, worker_id: str) -> None:
        self._ids.add(worker_id)

    def release(self, worker_id: str) -> None:
        self._ids.discard(worker_id)

    def release_all(self) -> None:
        self._ids.clear()

    def check(self, worker_id: str) -> None:
        pass

    def is_alive(self, worker_id: str) -> bool:
        return worker_id in self._ids


_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")


class LockFiles:
    """One lock file per worker in a folder beside the SQLite database."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._held: dict[str, int] = {}

    def path(self, worker_id: str) -> Path:
        name = worker_id
        if not _SAFE_NAME.fullmatch(worker_id):
            # Any id maps to a file name that cannot escape the folder.
            name = "id-" + hashlib.blake2b(worker_id.encode(), digest_size=16).hexdigest()
        return self.directory / f"{name}.lock"

    def acquire(self, worker_id: str) -> None:
        if worker_id in self._held:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(worker_id)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise StoreError(
                    f"worker {worker_id!r} is already running (another process holds {path})"
                ) from None
            except OSError as exc:
                os.close(fd)
                raise StoreError(f"could not lock {path} for worker {worker_id!r}: {exc}") from exc
            # A checker that found the file unlocked may have removed it between our open
            # and our flock; then the lock we hold is on a file nobody can see: retry.
            try:
                if os.path.samestat(os.fstat(fd), os.stat(path)):
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._held[worker_id] = fd

    def release(self, worker_id: str) -> None:
        fd = self._held.pop(worker_id, None)
        if fd is None:
            return
        # Removed while still locked, so no checker can mistake a new file for ours.
        with suppress(FileNotFoundError):
            os.unlink(self.path(worker_id))
        os.close(fd)

    def release_all(self) -> None:
        for worker_id in list(self._held):
            self.release(worker_id)

    def check(self, worker_id: str) -> None:
        pass

    def is_alive(self, worker_id: str) -> bool:
        if worker_id in self._held:
            return True
        path = self.path(worker_id)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            # Nobody held it: the worker is gone. Tidy up while we hold the lock.
            with suppress(FileNotFoundError):
                if os.path.samestat(os.fstat(fd), os.stat(path)):
                    os.unlink(path)
            return False
        finally:
            os.close(fd)


def advisory_key(worker_id: str) -> int:
    """The PostgreSQL advisory lock key of a worker: a signed 64-bit hash of its id."""
    digest = hashlib.blake2b(f"taskloom-worker:{worker_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class AdvisoryLocks:
    """Session-level advisory locks, each on a connection kept open for it."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._held: dict[str, Connection] = {}
        #: Workers whose lock this store must hold, even while the server is away.
        self._wanted: set[str] = set()

    def acquire(self, worker_id: str) -> None:
        if worker_id in self._held:
            return
        self._wanted.add(worker_id)
        conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            taken = conn.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": advisory_key(worker_id)}
            ).scalar()
        except BaseException:
            conn.close()
            raise
        if not taken:
            conn.close()
            self._wanted.discard(worker_id)
            raise StoreError(f"worker {worker_id!r} is already running (its lock is held)")
        self._held[worker_id] = conn

    def release(self, worker_id: str) -> None:
        self._wanted.discard(worker_id)
        self._drop(worker_id)

    def _drop(self, worker_id: str) -> None:
        conn = self._held.pop(worker_id, None)
        if conn is None:
            return
        # Unlocked explicitly first: the server ends a closed session a moment after the
        # client hangs up, and until then another session would still find the lock held.
        with suppress(SQLAlchemyError):
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": advisory_key(worker_id)})
        # Then the connection is closed for real (not returned to the pool), which ends the
        # session and so releases the lock in any case.
        with suppress(SQLAlchemyError):
            conn.invalidate()
        conn.close()

    def release_all(self) -> None:
        for worker_id in list(self._held):
            self.release(worker_id)
        self._wanted.clear()

    def check(self, worker_id: str) -> None:
        if worker_id not in self._wanted:
            return
        conn = self._held.get(worker_id)
        if conn is not None:
            try:
                conn.exec_driver_sql("SELECT 1")
                return
            except SQLAlchemyError:
                # The session ended (server restart, network): so did the lock.
                self._drop(worker_id)
        # Retake it; while the server is away this fails, and the next check tries again.
        self.acquire(worker_id)

    def is_alive(self, worker_id: str) -> bool:
        if worker_id in self._held:
            return True
        key = {"key": advisory_key(worker_id)}
        with self._engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            free = conn.execute(text("SELECT pg_try_advisory_lock(:key)"), key).scalar()
            if free:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), key)
        return not free
