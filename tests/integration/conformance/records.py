"""What the conformance suites share: runs made for them, a fixed epoch, a model."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from subprocess import Popen
from typing import Any

from pydantic import BaseModel

from taskloom.runs import Run, new_run_id
from taskloom.store import RunStore, WriteBatch

#: The `spawn_worker` fixture: a child process that registers a worker id on a URL.
SpawnWorker = Callable[[str, str], AbstractContextManager[Popen[str]]]

T0 = 1_700_000_000.0


def make_run(**fields: Any) -> Run:
    fields.setdefault("id", new_run_id())
    fields.setdefault("task", "demo.add")
    fields.setdefault("inputs", {"a": 1, "b": 2})
    fields.setdefault("created_at", T0)
    return Run(**fields)


def add_runs(store: RunStore, *runs: Run) -> list[Run]:
    store.write(WriteBatch(new_runs=list(runs)))
    return list(runs)


class Point(BaseModel):
    x: int
    y: int
