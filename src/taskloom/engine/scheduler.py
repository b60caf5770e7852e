"""The ready queue: which run starts next, within the engine's and each task's limits.

Higher priority first, then first come first served. A run whose task is at its own limit
is parked with that task and comes back, in order, when one of the task's runs ends; so a
busy task never blocks the runs of other tasks behind it.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Protocol

__all__ = ["ReadyQueue"]


class Schedulable(Protocol):
    priority: int
    task_name: str
    task_limit: int | None
    dropped: bool  # cancelled while queued: skipped when it comes up


class ReadyQueue:
    def __init__(self, concurrency: int, start: Callable[[Schedulable], None]) -> None:
        self.concurrency = concurrency
        self._start = start
        self._heap: list[tuple[int, int, Schedulable]] = []
        self._parked: dict[str, list[tuple[int, int, Schedulable]]] = {}
        self._active_per_task: dict[str, int] = {}
        self._seq = itertools.count()
        self.active = 0

    def __len__(self) -> int:
        return len(self._heap) + sum(len(p) for p in self._parked.values())

    def waiting(self) -> list[Schedulable]:
        """The runs queued and not started (a dropped one is left out)."""
        entries = [*self._heap, *(e for parked in self._parked.values() for e in parked)]
        return [e[2] for e in entries if not e[2].dropped]

    def push(self, item: Schedulable) -> None:
        """Queue a run, or start it at once when a slot is free and nothing waits before it."""
        if self.would_start(item):
            self._begin(item)
            return
        heapq.heappush(self._heap, (-item.priority, next(self._seq), item))
        self.dispatch()

    def would_start(self, item: Schedulable) -> bool:
        """Whether `push(item)` would start it at once."""
        return not self._heap and self.active < self.concurrency and self._fits(item)

    def release(self, item: Schedulable) -> None:
        """A started run ended (or gave up its slot): let the next ones in."""
        self.active -= 1
        name = item.task_name
        count = self._active_per_task.get(name, 0) - 1
        if count > 0:
            self._active_per_task[name] = count
        else:
            self._active_per_task.pop(name, None)
        parked = self._parked.get(name)
        while parked:
            entry = heapq.heappop(parked)
            if not entry[2].dropped:
                heapq.heappush(self._heap, entry)
                break
        if parked is not None and not parked:
            del self._parked[name]
        self.dispatch()

    def dispatch(self) -> None:
        heap = self._heap
        while heap and self.active < self.concurrency:
            entry = heapq.heappop(heap)
            item = entry[2]
            if item.dropped:
                continue
            if not self._fits(item):
                heapq.heappush(self._parked.setdefault(item.task_name, []), entry)
                continue
            self._begin(item)

    def _fits(self, item: Schedulable) -> bool:
        limit = item.task_limit
        return limit is None or self._active_per_task.get(item.task_name, 0) < limit

    def _begin(self, item: Schedulable) -> None:
        self.active += 1
        if item.task_limit is not None:
            self._active_per_task[item.task_name] = self._active_per_task.get(item.task_name, 0) + 1
        self._start(item)
