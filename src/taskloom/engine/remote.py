"""Events of runs other processes execute, for this engine's listeners (the server's).

An engine's listeners hear of the runs it holds as it changes them. A server that
executes nothing (`serve --no-worker`), or a run another worker took, needs the runs
other processes change too: `RemoteEvents` turns the store's change feed into the same
`RunEvent`s. Each commit's notice names the runs it changed (`id status`, `id log`):
NOTIFY on PostgreSQL, the `run_changes` journal on a SQLite file (written while the
writer knows of another engine on the file); on SQLite the runs executing are also
compared with the last look, for commits made before a writer knew. Either way the runs
are read back in one query, and log lines by their id (every line after the last one
seen), at most every `GAP` seconds. A run told finished is remembered (the last
`REMEMBERED` of them), so a later notice of the same end is not told again; what a look
tells goes out in slices of `SLICE`, the loop let run between them, so a stream sends a
burst as it is told.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from ..runs import LogLine, Run, RunEventKind, RunStatus

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["RemoteEvents"]

logger = logging.getLogger("taskloom.engine")

#: The least time between two reads of what other processes changed.
GAP = 0.05
#: While runs of other processes execute, how often to look even without a notice.
BACKSTOP = 1.0
#: How many runs told finished are remembered, not to be told again.
REMEMBERED = 50_000
#: Events told between two turns of the loop.
SLICE = 256
_KINDS = {
    RunStatus.PENDING: RunEventKind.SUBMITTED,
    RunStatus.RUNNING: RunEventKind.STARTED,
}


class RemoteEvents:
    """Reads back what other processes changed and tells the engine's listeners."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._ids: set[str] = set()
        self._look_all = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_log = 0
        self._running: set[str] = set()  # runs of others seen executing at the last look
        self._seen: dict[str, tuple[str, int]] = {}  # (status, attempts) last told
        self._ended: OrderedDict[str, None] = OrderedDict()  # told finished, oldest first
        self._told = 0  # events told since the loop last ran

    async def start(self) -> None:
        store = self._engine.store
        assert store is not None
        self._last_log = await self._engine._in_thread(store.last_log_id)
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def heard(self, lines: list[str] | None) -> None:
        """A notice: these `id status` lines, or None for "something changed"."""
        if lines is None:
            self._look_all = True
        else:
            live = self._engine._live
            for line in lines:
                run_id = line.partition(" ")[0]
                if run_id not in live:
                    self._ids.add(run_id)
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            try:
                async with asyncio.timeout(BACKSTOP if self._running else None):
                    await self._wake.wait()
            except TimeoutError:
                self._look_all = True
            self._wake.clear()
            started = time.monotonic()
            if not self._engine._listeners:
                self._ids.clear()
                self._look_all = False
                continue
            try:
                await self._look()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("taskloom: reading other processes' runs failed: %s", exc)
            await asyncio.sleep(max(0.0, GAP - (time.monotonic() - started)))

    async def _look(self) -> None:
        engine = self._engine
        store = engine.store
        assert store is not None
        ids, self._ids = self._ids, set()
        if self._look_all:
            self._look_all = False
            running = await engine._in_thread(
                lambda: {r.id for r in store.list_runs(status="running", limit=10_000)}
            )
            ids |= running ^ self._running  # started, or no longer running
            self._running = running
        # What this engine holds, or held until it ended it, its listeners heard already.
        mine = engine._live.keys() | engine._finished.keys()
        ids -= mine
        # Runs first, then lines: a run read as ended has all its lines committed, so they
        # are read too and told before its end.
        runs = {r.id: r for r in await engine._in_thread(store.get_runs, ids)} if ids else {}
        lines = await engine._in_thread(lambda: store.logs_after(self._last_log, limit=1000))
        if lines:
            self._last_log = lines[-1].id or self._last_log
            if len(lines) == 1000:
                self._wake.set()  # more to read
        mine = engine._live.keys() | engine._finished.keys()
        lines = [g for g in lines if g.run_id not in mine]
        more = {g.run_id for g in lines} - runs.keys()
        if more:
            for run in await engine._in_thread(store.get_runs, more):
                if run.is_finished:
                    # Read after its lines: it may have logged more before it ended. Its
                    # end is told on the next look, after whatever lines it still has.
                    self._ids.add(run.id)
                    self._wake.set()
                    run = _as_running(run)
                runs[run.id] = run
        for run in runs.values():
            if run.id not in engine._live and not run.is_finished:
                self._tell(run)
                await self._turn()
        for line in lines:
            found = runs.get(line.run_id)
            if found is not None and line.run_id not in engine._live:
                self._tell_line(found, line)
                await self._turn()
        for run in runs.values():
            if run.id not in engine._live and run.is_finished:
                self._tell(run)
                await self._turn()

    async def _turn(self) -> None:
        """Every `SLICE` events, let the loop run: the streams send what they were told."""
        if self._told >= SLICE:
            self._told = 0
            await asyncio.sleep(0)

    def _tell(self, run: Run) -> None:
        run_id = run.id
        if run_id in self._ended:
            return
        state = (str(run.status), run.attempts)
        if self._seen.get(run_id) == state:
            return
        if run.status is RunStatus.RUNNING:
            self._running.add(run_id)
        else:
            self._running.discard(run_id)
        if run.is_finished:
            kind = RunEventKind.FINISHED
            self._seen.pop(run_id, None)
            ended = self._ended
            ended[run_id] = None
            if len(ended) > REMEMBERED:
                ended.popitem(last=False)
        else:
            self._seen[run_id] = state
            if run.status is RunStatus.PENDING and run.attempts:
                kind = RunEventKind.RETRYING
            else:
                kind = _KINDS.get(run.status, RunEventKind.PROGRESS)
        self._told += 1
        self._engine._execution.emit(kind, run, remote=True)

    def _tell_line(self, run: Run, line: LogLine) -> None:
        self._told += 1
        self._engine._execution.emit(RunEventKind.LOG, run, line, remote=True)


def _as_running(run: Run) -> Run:
    """A run read as ended, told for now as it was while its lines were written."""
    shown = run.copy()
    shown.status = RunStatus.RUNNING
    shown.result = None
    shown.finished_at = None
    return shown
