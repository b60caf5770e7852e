"""The engine raises the first two GC thresholds while it runs and puts them back after."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

import taskloom
from taskloom.engine.gc_tuning import MIDDLE
from taskloom.store import MemoryStore


@pytest.fixture(autouse=True)
def default_thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*saved)


async def test_raised_while_running_and_restored_after() -> None:
    async with taskloom.Engine(store=MemoryStore(), gc_threshold=40_000):
        assert gc.get_threshold() == (40_000, MIDDLE, 10)
        async with taskloom.Engine(store=MemoryStore(), gc_threshold=40_000):
            assert gc.get_threshold() == (40_000, MIDDLE, 10)
        assert gc.get_threshold() == (40_000, MIDDLE, 10)  # the outer engine still runs
    assert gc.get_threshold() == (700, 10, 10)


async def test_none_leaves_the_collector_alone() -> None:
    async with taskloom.Engine(store=MemoryStore(), gc_threshold=None):
        assert gc.get_threshold() == (700, 10, 10)


async def test_a_threshold_changed_meanwhile_is_not_overwritten() -> None:
    async with taskloom.Engine(store=MemoryStore(), gc_threshold=40_000):
        gc.set_threshold(1234, 5, 5)
    assert gc.get_threshold() == (1234, 5, 5)


async def test_thresholds_already_higher_are_kept() -> None:
    gc.set_threshold(90_000, 500, 10)
    async with taskloom.Engine(store=MemoryStore(), gc_threshold=40_000):
        assert gc.get_threshold() == (90_000, 500, 10)
    assert gc.get_threshold() == (90_000, 500, 10)
