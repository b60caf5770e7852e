"""While an engine runs, the cyclic garbage collector runs less often.

Every run keeps a dozen objects alive between its submit and its end (the run, its task
and coroutine, futures, queued changes). Under a burst of thousands of runs, CPython's
default first threshold (700 allocations) starts a collection of the youngest objects very
often, and each time many of them have survived, which soon triggers full collections
that walk every object in the process. Measured with 20,000 concurrent no-op runs on a
2-core machine: full collections took about 1.3 s of 4 s; with a first threshold of 50,000
they did not happen at all and throughput went from about 4,900 to 8,600 runs/s.

The middle threshold is raised too, from 10 young collections to `MIDDLE`: a collection
of the middle generation walks every object that survived a young one, which under such a
burst are the runs in flight (hundreds of thousands of objects). Measured with 6 rounds of
20,000 concurrent `async def` no-op runs on one engine (SQLite, 2 cores): with (50,000, 10)
one middle collection a round took 240-400 ms of a 2.5-3.5 s round, and the collector
about 0.5 s a round in all; with (50,000, 100) none happened and the collector took
0.1-0.2 s a round. The runs in flight die before most middle collections would have come,
so each one that does come walks no more than before; it comes ten times less often.

Reference counting still frees almost everything at once; only garbage that forms cycles
waits longer. The previous thresholds come back when the last engine closes, unless
someone else changed them meanwhile.
"""

from __future__ import annotations

import gc
import threading

__all__ = ["MIDDLE", "raise_gc_threshold", "restore_gc_threshold"]

#: While an engine runs, the middle threshold (young collections per middle one) is at
#: least this.
MIDDLE = 100

_lock = threading.Lock()
_users = 0
_saved: tuple[int, int, int] | None = None
_ours: tuple[int, int, int] | None = None


def raise_gc_threshold(first: int, middle: int = MIDDLE) -> None:
    """Set the first GC threshold to at least `first`, and the middle one to at least
    `middle`, while the caller runs."""
    global _users, _saved, _ours
    with _lock:
        current = gc.get_threshold()
        if _users == 0:
            _saved = current
        _users += 1
        wanted = (max(current[0], first), max(current[1], middle), current[2])
        if wanted != current:
            gc.set_threshold(*wanted)
        _ours = gc.get_threshold()


def restore_gc_threshold() -> None:
    global _users, _saved, _ours
    with _lock:
        _users = max(_users - 1, 0)
        if _users == 0 and _saved is not None:
            if gc.get_threshold() == _ours:
                gc.set_threshold(*_saved)
            _saved = _ours = None
