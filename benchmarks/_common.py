"""Shared helpers for the benchmarks: the bare-asyncio baseline and result printing.

Benchmarks are not tests: they print figures, and the ratio to a baseline measured in the
same run on the same machine, so a slow or busy machine shows up in both numbers.
"""

from __future__ import annotations

import asyncio
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


async def _noop() -> None:
    return None


async def bare_asyncio_rate(n: int) -> float:
    """No-op coroutines per second, gathered as asyncio tasks: the ceiling to compare with."""
    start = time.perf_counter()
    await asyncio.gather(*(_noop() for _ in range(n)))
    return n / (time.perf_counter() - start)


def machine() -> str:
    python = f"{platform.python_implementation()} {platform.python_version()}"
    return f"{python}, {os.cpu_count()} cores, {platform.machine()}"


@contextmanager
def database_file(name: str = "bench.db", url: str | None = None) -> Iterator[str]:
    """A fresh SQLite file, or `url` as given (e.g. an empty PostgreSQL database)."""
    if url is not None:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="taskloom-bench-") as folder:
        yield str(Path(folder) / name)


def report(title: str, figures: dict[str, str]) -> None:
    print(f"\n{title}")
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"  {key.ljust(width)}  {value}")
