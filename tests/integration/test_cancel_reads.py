"""A busy SQLite engine reads cancel requests on changes that may be its own at most every
`OWN_CHANGES_CANCELS` seconds; a read skipped for that gap comes once it is up, so a
request made by another process meanwhile still stops its run."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

import taskloom
from support import WAIT
from taskloom import Engine
from taskloom.engine.claims import OWN_CHANGES_CANCELS
from taskloom.store import open_store

pytestmark = pytest.mark.timeout(60)


async def test_a_read_skipped_for_the_gap_comes_when_it_is_up(tmp_path: Path) -> None:
    path = str(tmp_path / "runs.db")
    started = asyncio.Event()

    @taskloom.task
    async def long_haul() -> str:
        started.set()
        await asyncio.sleep(WAIT * 3)
        return "finished"

    # The heartbeat (which reads the requests too) stays out of the way.
    async with Engine(path, heartbeat_interval=20.0, lease_ttl=60.0) as engine:
        claims = engine._claims
        assert claims is not None
        # Only this test tells the engine of changes: the feed's own notices are dropped.
        heard = claims._notice
        claims._notice = lambda channel, payload: (  # type: ignore[method-assign]
            None if channel == "changed" else heard(channel, payload)
        )
        run = await engine.submit(long_haul)
        await asyncio.wait_for(started.wait(), WAIT)
        other = open_store(path)  # another process's store on the same file
        try:
            assert other.request_cancel(run.id) is not None
        finally:
            other.close()
        # The change it made, as a busy engine hears it, right after a read of its own.
        told_at = time.monotonic()
        claims._cancels_read_at = told_at
        claims._cancels_changed(False, told_at)
        assert claims._cancels_deferred  # not read now: once the gap is up
        ended = await engine.wait(run.id, timeout=WAIT)
        assert ended.status == "cancelled"
        assert time.monotonic() - told_at >= OWN_CHANGES_CANCELS * 0.9
        assert not claims._cancels_deferred
