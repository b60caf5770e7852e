"""An engine whose database cannot be opened fails with a clear error and starts nothing."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import taskloom


async def test_an_unreachable_database_raises_store_error_naming_it() -> None:
    engine = taskloom.Engine("postgresql://nobody@127.0.0.1:1/nowhere")
    with pytest.raises(taskloom.StoreError, match=r"127\.0\.0\.1:1/nowhere"):
        await engine.start()
    with pytest.raises(taskloom.EngineClosedError):
        await engine.submit("anything", {})


async def test_a_database_path_that_cannot_be_made_raises_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(taskloom.StoreError, match="cannot create the folder"):
        async with taskloom.Engine(str(blocker / "runs.db")):
            pass
    writers = [t for t in threading.enumerate() if t.name == "taskloom-writer"]
    assert writers == []
