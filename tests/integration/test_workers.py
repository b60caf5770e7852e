"""Lost workers are shown as lost (`taskloom workers`) and pruned by a live engine once
their retention has passed; a live worker and one holding runs are kept."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from support import until
from taskloom import Engine
from taskloom.store import SqlStore

pytestmark = pytest.mark.timeout(60)

SpawnWorker = Callable[[str, str], AbstractContextManager[subprocess.Popen[str]]]


def _workers_cli(url: str) -> list[dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-m", "taskloom", "workers", "--db", url, "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    listed: list[dict[str, object]] = json.loads(done.stdout)
    return listed


async def test_a_lost_worker_is_shown_lost_then_pruned_by_a_live_engine(
    tmp_path: Path, spawn_worker: SpawnWorker
) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    with SqlStore(url) as store, spawn_worker(url, "gone-worker") as proc:
        proc.kill()
        proc.wait()
        assert not store.is_worker_alive("gone-worker")
    listed = _workers_cli(url)
    assert [(w["id"], w["state"], w["holds"]) for w in listed] == [("gone-worker", "lost", 0)]

    async with Engine(url, heartbeat_interval=0.05, lost_worker_retention=0.0) as engine:
        engine_store = engine.store
        assert engine_store is not None

        async def pruned() -> bool:
            return [w.id for w in engine_store.list_workers()] == [engine.worker_id]

        await until(pruned)
        shown = _workers_cli(url)
        assert [(w["id"], w["state"]) for w in shown] == [(engine.worker_id, "alive")]
