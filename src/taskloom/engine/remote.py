"""Events of runs other processes execute, for this engine's listeners (the server's).

An engine's listeners hear of the runs it holds as it changes them. A server that
executes nothing (`serve --no-worker`), or a run another worker took, needs the runs
other processes change too: `RemoteEvents` turns the store's change feed into the same
`RunEvent`s. Each commit's notice names the runs it changed (`id status`, `id log`):
NOTIFY on PostgreSQL, the `run_changes` journal on a SQLite file (written while the
writer knows of another engine on the file); on SQLite the runs executing are also
compared with the last look, for commits made before a writer knew. On PostgreSQL the
notice of an end the writer knew whole carries the run as stored when it is small (`id
status {json}`, see `queue.notices`) while some process asks for that (this one does
every `ASK_EVERY` seconds while it has listeners): it is told as it came, unread. A run
said submitted or started is held `HOLD` seconds first (a short run's end soon follows).
The other runs named are read back in one query, and log lines (when a notice named
some) by their id, every line after the last one seen, at most every `GAP` seconds. A
run told finished is remembered (the last `REMEMBERED` of them), so a later notice of
the same end is not told again; what a look tells goes out in slices of `SLICE`, the
loop let run between them, so a stream sends a burst as it is told.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..exceptions import StoreError
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
#: How long a run said submitted or started waits before it is read back: a short run's
#: end comes first, and it is told once (unread when its notice carries its record).
HOLD = 0.25
#: Seconds between two asks, while this engine has listeners, that the other processes
#: put the records of their ends in their notices (`Store.want_records`; they do for
#: `store.queue.RECORDS_FOR` seconds after each).
ASK_EVERY = 1.0
#: Statuses whose notices are held (`HOLD`).
_HELD = frozenset({"pending", "running"})
#: Events told between two turns of the loop.
SLICE = 256
_KINDS = {
    RunStatus.PENDING: RunEventKind.SUBMITTED,
    RunStatus.RUNNING: RunEventKind.STARTED,
}


class RemoteEvents:
    """Reads back what other processes changed and tells the engine's listeners.

    Two tasks: a reader that reads what the notices name (at most every `GAP` seconds), and
    a teller that tells each read in order. The next read is made while the last is told,
    so a burst's events wait for one read, not for a read and the telling of the one before.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._ids: set[str] = set()  # runs to read back
        self._records: dict[str, str] = {}  # ends a notice carried whole: their JSON
        # Runs said submitted or started, and when first: read back once `HOLD` old.
        self._held: OrderedDict[str, float] = OrderedDict()
        self._logs = False  # a notice named log lines
        self._look_all = False
        self._wake = asyncio.Event()
        # A read waiting to be told: at most one, so the reader stays one read ahead.
        self._read: asyncio.Queue[_Read] = asyncio.Queue(maxsize=1)
        self._tasks: list[asyncio.Task[None]] = []
        self._last_log = 0
        self._running: set[str] = set()  # runs of others seen executing at the last look
        self._seen: dict[str, tuple[str, int]] = {}  # (status, attempts) last told
        self._ended: OrderedDict[str, None] = OrderedDict()  # told finished, oldest first
        self._told = 0  # events told since the loop last ran
        self._listening = asyncio.Event()  # a first listener came: ask for records now

    async def start(self) -> None:
        store = self._engine.store
        assert store is not None
        self._last_log = await self._engine._in_thread(store.last_log_id)
        if self._engine._listeners:
            self._listening.set()
        self._tasks = [
            asyncio.ensure_future(self._reader()),
            asyncio.ensure_future(self._teller()),
            asyncio.ensure_future(self._asker()),
        ]

    def listening(self) -> None:
        """A listener was added: the other processes are asked for records at once."""
        self._listening.set()

    async def _asker(self) -> None:
        """While this engine has listeners, ask every `ASK_EVERY` seconds that the ends
        other processes write come with their records, which are told unread."""
        engine = self._engine
        store = engine.store
        assert store is not None
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ASK_EVERY):
                    await self._listening.wait()
            self._listening.clear()
            if not engine._listeners:
                continue
            try:
                await engine._in_thread(store.want_records)
            except StoreError as exc:  # read back meanwhile: slower, nothing missed
                logger.debug("taskloom: could not ask for the records of ends: %s", exc)

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def heard(self, lines: list[str] | None) -> None:
        """A notice: these `id status` lines, or None for "something changed"."""
        if lines is None:
            self._look_all = True
        else:
            live = self._engine._live
            ended = self._ended
            ids, records, held = self._ids, self._records, self._held
            now = time.monotonic()
            for line in lines:
                run_id, _, rest = line.partition(" ")
                # A run told finished does not change again: its later notices need no read.
                if run_id in live or run_id in ended:
                    continue
                status, _, record = rest.partition(" ")
                if record:  # its end, as this commit stored it: newer than any read
                    records[run_id] = record
                    ids.discard(run_id)
                    held.pop(run_id, None)
                elif status in _HELD:
                    if run_id not in held and run_id not in ids:
                        held[run_id] = now
                else:
                    if status == "log":
                        self._logs = True
                    if run_id not in records:
                        ids.add(run_id)
                        held.pop(run_id, None)
        self._wake.set()

    async def _reader(self) -> None:
        # While runs of others execute, all of them are looked at once no notice has come
        # for `BACKSTOP` seconds.
        backstop = time.monotonic() + BACKSTOP
        while True:
            now = time.monotonic()
            wait = backstop - now if self._running else None
            held = self._held
            if held:
                due = next(iter(held.values())) + HOLD - now
                wait = due if wait is None else min(wait, due)
            woken = True
            if wait is None or wait > 0:
                try:
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                except TimeoutError:
                    woken = False
            self._wake.clear()
            started = time.monotonic()
            if woken:
                backstop = started + BACKSTOP
            elif self._running and started >= backstop:
                self._look_all = True
                backstop = started + BACKSTOP
            if not self._engine._listeners:
                self._ids.clear()
                self._records.clear()
                self._held.clear()
                self._look_all = False
                continue
            try:
                read = await self._look()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("taskloom: reading other processes' runs failed: %s", exc)
            else:
                await self._read.put(read)
            await asyncio.sleep(max(0.0, GAP - (time.monotonic() - started)))

    async def _teller(self) -> None:
        while True:
            read = await self._read.get()
            try:
                await self._tell_read(read)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("taskloom: telling other processes' runs failed")

    async def _look(self) -> _Read:
        engine = self._engine
        store = engine.store
        assert store is not None
        ids, self._ids = self._ids, set()
        records, self._records = self._records, {}
        held, now = self._held, time.monotonic()
        while held:
            run_id, heard_at = next(iter(held.items()))
            if heard_at + HOLD > now:
                break
            del held[run_id]
            ids.add(run_id)
        logs, self._logs = self._logs, False
        if self._look_all:
            self._look_all = False
            logs = True
            running = await engine._in_thread(
                lambda: {r.id for r in store.list_runs(status="running", limit=10_000)}
            )
            ids |= running ^ self._running  # started, or no longer running
            self._running = running
        # What this engine holds, or held until it ended it, its listeners heard already;
        # what was told finished since its notice came needs no read either.
        mine = engine._live.keys() | engine._finished.keys()
        ended = self._ended
        ids = {run_id for run_id in ids if run_id not in mine and run_id not in ended}
        records = {
            run_id: record
            for run_id, record in records.items()
            if run_id not in mine and run_id not in ended
        }
        runs = {run_id: Run.from_dict(json.loads(record)) for run_id, record in records.items()}
        ids -= runs.keys()
        # Runs first, then lines: a run read as ended has all its lines committed, so they
        # are read too and told before its end (a run's log lines are named by the notice
        # of their commit, which comes before the notice of its end).
        if ids:
            runs.update((r.id, r) for r in await engine._in_thread(store.get_runs, ids))
        lines: list[LogLine] = []
        if logs:
            lines = await engine._in_thread(lambda: store.logs_after(self._last_log, limit=1000))
        if lines:
            self._last_log = lines[-1].id or self._last_log
            if len(lines) == 1000:
                self._logs = True
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
        return _Read(runs, lines, records)

    async def _tell_read(self, read: _Read) -> None:
        live = self._engine._live
        runs = read.runs
        for run in runs.values():
            if run.id not in live and not run.is_finished:
                self._tell(run)
                await self._turn()
        for line in read.lines:
            found = runs.get(line.run_id)
            if found is not None and line.run_id not in live:
                self._tell_line(found, line)
                await self._turn()
        records = read.records
        for run in runs.values():
            if run.id not in live and run.is_finished:
                self._tell(run, records.get(run.id))
                await self._turn()

    async def _turn(self) -> None:
        """Every `SLICE` events, let the loop run: the streams send what they were told."""
        if self._told >= SLICE:
            self._told = 0
            await asyncio.sleep(0)

    def _tell(self, run: Run, record: str | None = None) -> None:
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
        self._engine._execution.emit(kind, run, remote=True, record=record)

    def _tell_line(self, run: Run, line: LogLine) -> None:
        self._told += 1
        self._engine._execution.emit(RunEventKind.LOG, run, line, remote=True)


@dataclass(slots=True)
class _Read:
    """One look's runs (by id) and log lines, in the order they are told; the JSON of
    those a notice carried."""

    runs: dict[str, Run]
    lines: list[LogLine]
    records: dict[str, str]


def _as_running(run: Run) -> Run:
    """A run read as ended, told for now as it was while its lines were written."""
    shown = run.copy()
    shown.status = RunStatus.RUNNING
    shown.result = None
    shown.finished_at = None
    return shown
