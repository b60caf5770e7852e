"""Helpers shared by the test modules: deadline-bound waits and loading test task modules.

Every wait-until-true loop of the tests is `until` (awaited) or `wait_until` (blocking).
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import TypeVar

import pytest

T = TypeVar("T")

WAIT = 10.0  # seconds any single wait may take before it is a failure
HELPERS = Path(__file__).resolve().parent / "helpers"
#: The folder holding the `taskloom` package, for PYTHONPATH of the processes tests start.
PACKAGE_ROOT = str(Path(__file__).resolve().parents[1] / "src")
#: The SQL databases a test may ask for by kind (see `database_for`).
SQL_KINDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def database_for(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The URL of an empty database of `kind` (one of `SQL_KINDS`): a SQLite file in
    `tmp_path`, or a PostgreSQL database of the test's own."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    url: str = request.getfixturevalue("postgres_database")
    return url


async def until(
    predicate: Callable[[], Awaitable[bool]], timeout: float = WAIT, interval: float = 0.005
) -> None:
    """Poll `predicate` until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached within {timeout} s")
        await asyncio.sleep(interval)


def wait_until(
    condition: Callable[[], T | None],
    timeout: float = WAIT,
    interval: float = 0.05,
    what: str | Callable[[], str] = "condition",
) -> T:
    """Call `condition` until it returns something truthy (None, False or an empty value
    mean not yet) and return that; fail after `timeout` seconds, saying `what` was not
    reached (a callable `what` is asked then, so the message can tell the last state seen)."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what() if callable(what) else what} not reached within {timeout} s")
        time.sleep(interval)
    return value


async def in_thread_wait(event: threading.Event, timeout: float = WAIT) -> None:
    """Wait for a threading.Event without blocking the event loop."""
    assert await asyncio.to_thread(event.wait, timeout), "the event was not set in time"


def load_helper(name: str) -> ModuleType:
    """Import `tests/helpers/<name>.py` once, as a top-level module."""
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, HELPERS / f"{name}.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module


def _other_sessions(url: str) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            count: int = connection.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
            return count
    finally:
        engine.dispose()


async def killed_sessions_ended(url: str, timeout: float = WAIT) -> None:
    """Wait until a killed process's PostgreSQL sessions have ended.

    A SIGKILL closes the sockets, but a COMMIT the server had already read still lands
    while its backend winds down: the database is settled only once no other session is
    left on it. A SQLite file has no sessions of its own, so nothing is waited for.
    """
    if not url.startswith("postgresql"):
        return

    async def settled() -> bool:
        return await asyncio.to_thread(_other_sessions, url) == 0

    await until(settled, timeout=timeout, interval=0.02)
