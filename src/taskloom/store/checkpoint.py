"""WAL checkpoints of a SQLite file, off the commit path.

By default SQLite checkpoints inside a commit: the commit that takes the write-ahead log
past 1,000 pages also copies the log into the database and syncs the file, which makes
one commit in about a hundred take milliseconds instead of tens of microseconds (the p99
of a run's submit-to-result). A store on a file turns that off on its connections
(`PRAGMA wal_autocheckpoint=0`) and runs a `Checkpointer` instead: a thread with its own
connection that looks at the file every `CHECKPOINT_EVERY` seconds and, while it
changes, makes a PASSIVE checkpoint every `BUSY_EVERY` seconds. A passive checkpoint
never takes the write lock and never waits, so no commit waits for it.

A passive checkpoint alone does not keep the log short while writes go on: SQLite starts
the log over only when a write begins after a checkpoint that copied all of it, and a
busy writer has always added frames since. The log then grows with everything written
(hundreds of megabytes in a minute of runs), and every commit, appending to a file that
grows, gets slower. So once the log holds `RESTART_FRAMES` frames, the thread makes a
RESTART checkpoint right after the passive one: it takes the file's write lock between
two commits, copies the few frames added meanwhile, and waits for readers to leave the
log, so that the next write starts it over. It waits for the lock and the readers at
most `RESTART_WAIT` seconds (its busy timeout; one it cannot finish in time returns and
is tried at the next look), and so do commits for it; an inline write, which never
waits, fails at once with `StoreBusyError` and is left to the writer thread.

Every process on the file runs its own (SQLite lets one checkpoint run at a time; one
that finds another running returns at once), and the last connection to close a file
checkpoints it as always.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from .feed import StoreThread

__all__ = ["BUSY_EVERY", "CHECKPOINT_EVERY", "RESTART_FRAMES", "RESTART_WAIT", "Checkpointer"]

logger = logging.getLogger("taskloom.store")

#: Seconds between two looks at a file that did not change since the last.
CHECKPOINT_EVERY = 0.25
#: Frames in the log (4 KiB pages each) from which a checkpoint starts it over; SQLite's
#: own checkpoints in a commit come at 1,000.
RESTART_FRAMES = 1000
#: Seconds between two looks while the file changes.
BUSY_EVERY = 0.05
#: Seconds a RESTART checkpoint waits for the write lock and for readers to leave the log.
RESTART_WAIT = 0.01


class Checkpointer(StoreThread):
    """A thread that checkpoints a SQLite file's write-ahead log while it changes."""

    def __init__(self, path: Path, every: float = CHECKPOINT_EVERY) -> None:
        super().__init__("taskloom-checkpoint")
        self._path = path
        self._every = every
        #: Checkpoints made so far (for tests and diagnostics).
        self.checkpoints = 0
        #: Of those, the ones that started the log over.
        self.restarts = 0

    def _main(self) -> None:
        try:
            connection = sqlite3.connect(self._path, check_same_thread=False, timeout=RESTART_WAIT)
        except sqlite3.Error as exc:
            logger.warning("taskloom: cannot checkpoint %s: %s", self._path, exc)
            return
        try:
            seen = None
            wait = self._every
            while not self._stop.wait(wait):
                wait = self._every
                try:
                    # Changed by every commit of another connection (all of them, here).
                    (version,) = connection.execute("PRAGMA data_version").fetchone()
                    if version == seen:
                        continue
                    wait = BUSY_EVERY  # changing: looked at again soon
                    _, frames, _ = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if frames >= RESTART_FRAMES:
                        (busy, _, _) = connection.execute(
                            "PRAGMA wal_checkpoint(RESTART)"
                        ).fetchone()
                        if not busy:  # busy: readers or writers took too long, next time
                            self.restarts += 1
                except sqlite3.Error as exc:
                    # Locked, or a checkpoint of another process running: next time.
                    logger.debug("taskloom: checkpoint of %s skipped: %s", self._path, exc)
                    continue
                seen = version
                self.checkpoints += 1
        finally:
            connection.close()
