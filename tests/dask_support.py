"""A Dask cluster of real processes for the tests: `dask scheduler` and `dask worker`.

The scheduler gives up on a call at once when its worker dies
(`allowed-failures` 0), as taskloom asks of a scheduler, so that a lost call is an attempt
that taskloom retries. Workers run without a nanny: killing one kills it for good.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from support import HELPERS


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    env["DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES"] = "0"
    # The workers import the tasks by module name, as a cluster's workers would.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HELPERS), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class DaskCluster:
    """A scheduler on a free port, and the workers started on it."""

    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        self.port = port or _free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.log_dir = log_dir
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - kept open by the child
        try:
            return subprocess.Popen(
                [sys.executable, "-m", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_environment(),
                start_new_session=True,
            )
        finally:
            log.close()

    def start_scheduler(self, timeout: float = 60.0) -> None:
        self.scheduler = self._spawn(
            "scheduler",
            [
                "distributed.cli.dask_scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-dashboard",
            ],
        )
        deadline = time.monotonic() + timeout
        while True:  # accepting connections: the scheduler is up
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.scheduler.poll() is not None:
                    exited = self.log("scheduler")
                    raise RuntimeError(f"the Dask scheduler exited: {exited}") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no Dask scheduler: {self.log('scheduler')}") from None
                time.sleep(0.05)

    def start_worker(self, *, threads: int = 4) -> subprocess.Popen[bytes]:
        index = len(self.workers)
        worker = self._spawn(
            f"worker{index}",
            [
                "distributed.cli.dask_worker",
                self.address,
                "--nthreads",
                str(threads),
                "--no-nanny",
                "--no-dashboard",
                "--name",
                f"w{index}",
                "--death-timeout",
                "60",
            ],
        )
        self.workers.append(worker)
        return worker

    def wait_for_workers(self, count: int, timeout: float = 60.0) -> None:
        """Until the scheduler knows `count` workers (asked through a client of its own)."""
        from distributed import Client

        with Client(self.address, timeout=timeout) as client:  # type: ignore[no-untyped-call]
            client.wait_for_workers(count, timeout=timeout)

    def kill_scheduler(self) -> None:
        if self.scheduler is not None:
            os.kill(self.scheduler.pid, signal.SIGKILL)
            self.scheduler.wait(10)

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        for process in [*self.workers, self.scheduler]:
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(10)


@contextmanager
def running_cluster(log_dir: Path, *, workers: int = 2, threads: int = 4) -> Iterator[DaskCluster]:
    """A scheduler and `workers` workers of `threads` threads, known to the scheduler
    before it is yielded; every process stopped after."""
    cluster = DaskCluster(log_dir)
    try:
        cluster.start_scheduler()
        for _ in range(workers):
            cluster.start_worker(threads=threads)
        cluster.wait_for_workers(workers)
        yield cluster
    finally:
        cluster.stop()
