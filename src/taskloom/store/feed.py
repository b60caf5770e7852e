"""How a process hears of the commits other processes make on the same database.

* PostgreSQL: `LISTEN` on the queue's channels (see `queue.py`) on a connection of its
  own; each notification is handed on as `(channel, payload)`. After the connection was
  lost and made again, `("resync", "")` says that notifications may have been missed.
* A SQLite file: `PRAGMA data_version` changes whenever another connection commits; it is
  read every few milliseconds on a connection of its own (a cheap read of a counter), and
  a change is handed on as `("changed", "")`, or `("changed", "own?")` when it may be
  only this store's own commits: what changed is for the listener to read. Commits of
  stores that know another engine uses the file also add the runs they changed to
  `run_changes`; the feed reads the new rows on each change and hands each on as on
  PostgreSQL, `(RUNS_CHANNEL, lines)`.

The callback runs in the feed's thread and must not block (hand over to a loop).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from .queue import CANCEL_CHANNEL, LISTENING_CHANNEL, QUEUE_CHANNEL, RUNS_CHANNEL

__all__ = ["ChangeFeed", "Notice", "PostgresFeed", "SqliteFeed", "StoreThread"]

logger = logging.getLogger("taskloom.store")

Notice = Callable[[str, str], None]

#: How often a SQLite feed reads the database's change counter: soon after another
#: process committed, and otherwise; how long "soon" lasts; how often a change that may be
#: this store's own is told.
SQLITE_FAST = 0.004
SQLITE_SLOW = 0.02
SQLITE_FAST_FOR = 2.0
SQLITE_SLOW_TELL = 0.03
#: How long a commit of this store may take and still be known as its own (see SqliteFeed).
OWN_COMMIT_MAX = 0.05
#: Rows of `run_changes` a SQLite feed reads at once.
JOURNAL_PAGE = 500
#: Backoff while a PostgreSQL feed cannot connect.
RECONNECT_FIRST, RECONNECT_MAX = 0.1, 2.0


class StoreThread:
    """A daemon thread of a store's own (`_main`), told to end by `stop`."""

    def __init__(self, name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _main(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class ChangeFeed(StoreThread):
    """A thread that hands notices of other processes' commits to a callback."""

    def __init__(self, name: str, callback: Notice) -> None:
        super().__init__(name)
        self._callback = callback

    def _tell(self, channel: str, payload: str) -> None:
        try:
            self._callback(channel, payload)
        except Exception:
            logger.exception("taskloom: a change feed listener failed")


class SqliteFeed(ChangeFeed):
    """Reads the file's change counter: every `FAST` seconds for a while after another
    process committed, every `SLOW` seconds otherwise. A change while this store was
    committing too may be its own: such changes are told at most every `SLOW_TELL`
    seconds, so an engine busy on its own file is not woken by its own commits.

    `own_commit` gives when this store last began a commit (`time.monotonic()`). A change
    is surely another process's only when no commit of this store began since a little
    before the previous read (`OWN_COMMIT_MAX`: a commit that takes longer than that and
    is counted another's costs only a faster poll for a while; no change is ever dropped).
    """

    def __init__(
        self, path: Path, callback: Notice, own_commit: Callable[[], float] | None = None
    ) -> None:
        super().__init__("taskloom-feed", callback)
        self._path = path
        self._own = own_commit or (lambda: 0.0)

    def _main(self) -> None:
        connection = sqlite3.connect(self._path, check_same_thread=False, timeout=5)
        try:
            journal = self._journal_start(connection)
            last = None
            previous_read = 0.0
            fast_until = told = 0.0
            owed = pending = False  # a change to tell now; one to tell once SLOW_TELL is up
            foreign = False  # among the changes to tell, one surely another process's
            interval = SQLITE_SLOW
            while not self._stop.wait(interval):
                read_at = time.monotonic()
                try:
                    (version,) = connection.execute("PRAGMA data_version").fetchone()
                except sqlite3.Error:
                    continue  # locked or briefly away: read it next time
                now = time.monotonic()
                if last is not None and version != last:
                    journal = self._read_journal(connection, journal)
                    if self._own() < previous_read - OWN_COMMIT_MAX:  # another process's
                        fast_until = now + SQLITE_FAST_FOR
                        owed = foreign = True
                    elif now < fast_until:
                        owed = foreign = True
                    else:  # maybe ours alone: told, but not more often than SLOW_TELL
                        owed = owed or now - told >= SQLITE_SLOW_TELL
                        pending = True
                if owed or (pending and now - told >= SQLITE_SLOW_TELL):
                    told = now
                    self._tell("changed", "" if foreign else "own?")
                    owed = pending = foreign = False
                last = version
                previous_read = read_at
                interval = SQLITE_FAST if now < fast_until else SQLITE_SLOW
        finally:
            connection.close()

    @staticmethod
    def _journal_start(connection: sqlite3.Connection) -> int:
        try:
            (newest,) = connection.execute("SELECT max(id) FROM run_changes").fetchone()
        except sqlite3.Error:
            return 0  # locked: rows read from the start are told, which is harmless
        return int(newest or 0)

    def _read_journal(self, connection: sqlite3.Connection, after: int) -> int:
        """Tell the `run_changes` rows after `after`; returns the last id told."""
        while True:
            try:
                rows = connection.execute(
                    "SELECT id, lines FROM run_changes WHERE id > ? ORDER BY id LIMIT ?",
                    (after, JOURNAL_PAGE),
                ).fetchall()
            except sqlite3.Error:
                return after  # read them on the next change
            for row_id, lines in rows:
                self._tell(RUNS_CHANNEL, lines)
                after = row_id
            if len(rows) < JOURNAL_PAGE:
                return after


class PostgresFeed(ChangeFeed):
    def __init__(self, connect: Callable[[], Any], callback: Notice) -> None:
        super().__init__("taskloom-feed", callback)
        self._connect = connect
        self._connection: Any = None

    def _main(self) -> None:
        backoff = RECONNECT_FIRST
        first = True
        while not self._stop.is_set():
            try:
                connection = self._connect()
            except Exception as exc:
                logger.debug("taskloom: change feed cannot connect: %s", exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, RECONNECT_MAX)
                continue
            backoff = RECONNECT_FIRST
            try:
                connection.autocommit = True
                for channel in (QUEUE_CHANNEL, RUNS_CHANNEL, CANCEL_CHANNEL, LISTENING_CHANNEL):
                    connection.execute(f"LISTEN {channel}")
                if not first:
                    self._tell("resync", "")
                first = False
                while not self._stop.is_set():
                    for note in connection.notifies(timeout=0.25):
                        self._tell(note.channel, note.payload)
            except Exception as exc:
                if not self._stop.is_set():
                    logger.warning("taskloom: change feed lost its connection: %s", exc)
                    self._stop.wait(backoff)
            finally:
                try:
                    connection.close()
                except Exception:
                    logger.debug("taskloom: closing the change feed's connection failed")
