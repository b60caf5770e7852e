"""WAL checkpoints of a SQLite file, off the commit path.

By default SQLite checkpoints inside a commit: the commit that takes the write-ahead log
past 1,000 pages also copies the log into the database and syncs the file, which makes
one commit in about a hundred take milliseconds instead of tens of microseconds (the p99
of a run's submit-to-result). A store on a file turns that off on its connections
(`PRAGMA wal_autocheckpoint=0`) and runs a `Checkpointer` instead: a thread with its own
connection that, while the database changes, makes a PASSIVE checkpoint every
`CHECKPOINT_EVERY` seconds. A passive checkpoint never takes the write lock and never
waits, so no commit waits for it; the log is bounded by what is written between two
checkpoints (SQLite starts the log over once a checkpoint has copied all of it).

Every process on the file runs its own (SQLite lets one checkpoint run at a time; one
that finds another running returns at once), and the last connection to close a file
checkpoints it as always.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from .feed import StoreThread

__all__ = ["CHECKPOINT_EVERY", "Checkpointer"]

logger = logging.getLogger("taskloom.store")

#: Seconds between two checkpoints of a file that changed meanwhile.
CHECKPOINT_EVERY = 0.25


class Checkpointer(StoreThread):
    """A thread that checkpoints a SQLite file's write-ahead log while it changes."""

    def __init__(self, path: Path, every: float = CHECKPOINT_EVERY) -> None:
        super().__init__("taskloom-checkpoint")
        self._path = path
        self._every = every
        #: Checkpoints made so far (for tests and diagnostics).
        self.checkpoints = 0

    def _main(self) -> None:
        try:
            connection = sqlite3.connect(self._path, check_same_thread=False, timeout=0)
        except sqlite3.Error as exc:
            logger.warning("taskloom: cannot checkpoint %s: %s", self._path, exc)
            return
        try:
            seen = None
            while not self._stop.wait(self._every):
                try:
                    # Changed by every commit of another connection (all of them, here).
                    (version,) = connection.execute("PRAGMA data_version").fetchone()
                    if version == seen:
                        continue
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:
                    # Locked, or a checkpoint of another process running: next time.
                    logger.debug("taskloom: checkpoint of %s skipped: %s", self._path, exc)
                    continue
                seen = version
                self.checkpoints += 1
        finally:
            connection.close()
