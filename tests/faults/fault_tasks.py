"""Tasks the fault tests run: each one notes in a ledger when its body starts and ends.

The ledger is a folder; an entry is an empty file named `<start|end> <key> <pid> <n>`.
Creating one is atomic, a process killed with SIGKILL loses none it made, and it writes no
byte, so a file-size limit on the process (the full-disk test) does not stop it. The
ledger tells how often a run's code began and how often it ran to completion, whatever
the store recorded.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import taskloom


def note(ledger: str, event: str, key: str) -> None:
    os.makedirs(ledger, exist_ok=True)
    entry = os.path.join(ledger, f"{event} {key} {os.getpid()} {uuid.uuid4().hex}")
    os.close(os.open(entry, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))


@taskloom.task(retries=5)
async def recorded(key: str, ledger: str, seconds: float = 0.0) -> str:
    """An async body that may be retried after a crash."""
    note(ledger, "start", key)
    await asyncio.sleep(seconds)
    note(ledger, "end", key)
    return key


@taskloom.task(retries=5)
def recorded_in_thread(key: str, ledger: str, seconds: float = 0.0) -> str:
    """The same body, synchronous: it runs in the task's own thread."""
    note(ledger, "start", key)
    time.sleep(seconds)
    note(ledger, "end", key)
    return key


@taskloom.task
async def recorded_once(key: str, ledger: str, seconds: float = 0.0) -> str:
    """No retries: a crash during its body fails it as lost."""
    note(ledger, "start", key)
    await asyncio.sleep(seconds)
    note(ledger, "end", key)
    return key


@taskloom.task
def refused(key: str, ledger: str, seconds: float = 0.0) -> str:
    """Fails on purpose, with a message naming its key."""
    note(ledger, "start", key)
    raise ValueError(f"refused {key} on purpose")


#: Task name -> what a finished run of it may end as.
RETRIED = ("recorded", "recorded_in_thread")
NAMES = (*RETRIED, "recorded_once", "refused")


def read_ledger(ledger: str) -> list[tuple[str, str, int]]:
    """The ledger's entries as (event, key, pid)."""
    try:
        names = os.listdir(ledger)
    except FileNotFoundError:
        return []
    entries = []
    for name in names:
        event, key, pid, _ = name.split()
        entries.append((event, key, int(pid)))
    return entries
