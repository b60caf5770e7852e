"""One thread per sync task that is not thread-safe: its calls never overlap.

The engine hands the thread several runs at once; the thread calls them one after
another and hands the outcomes back to the event loop in batches. A burst of cheap sync
runs then costs one thread wake-up per batch instead of two per run.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from .. import context as context_module
from .live import LiveRun

__all__ = ["SerialRunner"]

#: (run, attempt number, ok, result or exception)
Outcome = tuple[LiveRun, int, bool, Any]

_BATCH = 256


class SerialRunner:
    def __init__(
        self,
        name: str,
        loop: asyncio.AbstractEventLoop,
        begin: Callable[[LiveRun, int], bool],
        deliver: Callable[[list[Outcome]], None],
    ) -> None:
        self._begin = begin
        self._loop = loop
        self._deliver = deliver
        self._inbox: deque[tuple[LiveRun, int, context_module.Context, Callable[[], Any]]] = deque()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(
            target=self._main, name=f"taskloom-{name[:24]}", daemon=True
        )
        self._thread.start()

    def submit(
        self, live: LiveRun, token: int, context: context_module.Context, call: Callable[[], Any]
    ) -> None:
        """Queue a call of attempt `token`; it begins only if `begin(live, token)` agrees."""
        self._inbox.append((live, token, context, call))
        if not self._wake.is_set():
            self._wake.set()

    def stop(self) -> None:
        """Stop after the call in progress; queued calls are dropped (their runs stay queued
        in the store for the next engine)."""
        self._stopping = True
        self._wake.set()

    def _main(self) -> None:
        inbox = self._inbox
        while not self._stopping:
            self._wake.wait()
            self._wake.clear()
            outcomes: list[Outcome] = []
            while inbox and not self._stopping:
                live, attempt, context, call = inbox.popleft()
                if not self._begin(live, attempt):
                    continue  # cancelled while queued here, or the engine is closing
                token = context_module.set_current(context)
                try:
                    outcomes.append((live, attempt, True, call()))
                except BaseException as exc:
                    outcomes.append((live, attempt, False, exc))
                finally:
                    context_module.reset_current(token)
                if len(outcomes) >= _BATCH:
                    self._post(outcomes)
                    outcomes = []
            if outcomes:
                self._post(outcomes)

    def _post(self, outcomes: list[Outcome]) -> None:
        try:
            self._loop.call_soon_threadsafe(self._deliver, outcomes)
        except RuntimeError:  # the loop closed: the engine is gone
            self._stopping = True
