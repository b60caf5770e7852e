"""Shared helpers for the benchmarks: the bare-asyncio baseline and result printing.

Benchmarks are not tests: they print figures, and the ratio to a baseline measured in the
same run on the same machine, so a slow or busy machine shows up in both numbers.
"""

from __future__ import annotations

import asyncio
import os
import platform
import re
import statistics
import subprocess
import sys
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


def start_serve(
    folder: Path, database: Path, *, url: str | None = None
) -> tuple[subprocess.Popen[str], str]:
    """`taskloom serve served.py --port 0` in `folder` on a SQLite `database` (or on the
    database `url`); returns the process and the URL it printed once it serves."""
    process = subprocess.Popen(
        [sys.executable, "-m", "taskloom", "serve", "served.py", "--port", "0"],
        cwd=folder,
        env={"PATH": "/usr/bin:/bin", "TASKLOOM_DATABASE_URL": url or f"sqlite:///{database}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        match = re.search(r"serving (http://\S+)", line)
        if match:
            return process, match.group(1)
    raise SystemExit(f"taskloom serve ended with {process.wait()}")


def percentiles_ms(samples: list[float]) -> str:
    """p50 and p95 of samples in seconds, as milliseconds."""
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"p50 {statistics.median(ordered) * 1e3:6.2f} ms, p95 {p95 * 1e3:6.2f} ms"
