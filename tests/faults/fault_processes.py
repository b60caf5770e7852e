"""The real processes the fault tests start, break and start again.

`taskloom serve` (killed with SIGKILL), a PostgreSQL made with `initdb` and driven with
`pg_ctl`, a `nats-server`: each on a free port, in a folder of its own. A program that is
not installed skips the test locally and fails it under `CI=true`.
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from taskloom.runs import Attempt, Run
from taskloom.store import open_store

SERVING = re.compile(r"serving (http://\S+)")
STARTUP = 30.0  # seconds a process may take to be ready


def require_program(name: str) -> str:
    """The path of `name` on PATH; skips the test when it is missing (fails under CI=true)."""
    found = shutil.which(name)
    if found is None:
        reason = f"{name} is not on PATH"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI needs it for the fault-injection tests")
        pytest.skip(f"{reason}; install it to run this fault-injection test")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Lines:
    """The lines a process writes on one of its pipes, read by a thread of their own."""

    def __init__(self, stream: object) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        with stream:  # type: ignore[attr-defined]
            for line in stream:  # type: ignore[attr-defined]
                self.seen.append(line)
                self._queue.put(line)
        self._queue.put(None)

    async def wait_for(self, match: Callable[[str], re.Match[str] | bool | None]) -> str:
        """The first line (from now on) that `match` accepts; fails at EOF or after STARTUP s."""
        async with asyncio.timeout(STARTUP):
            while True:
                line = await asyncio.to_thread(self._queue.get)
                if line is None:
                    raise AssertionError("the process ended:\n" + "".join(self.seen[-50:]))
                if match(line):
                    return line


class Server:
    """`taskloom serve TARGET --port 0 --db URL` as a real process; its stderr goes to a file."""

    def __init__(
        self,
        target: Path,
        database_url: str,
        folder: Path,
    ) -> None:
        self.target = target
        self.database_url = database_url
        self.folder = folder
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self._errors: Lines | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self) -> str:
        """Start the process; its URL once it serves."""
        self._spawn()
        assert self.process is not None
        assert self.process.stdout is not None
        lines = Lines(self.process.stdout)
        try:
            line = await lines.wait_for(SERVING.search)
        except BaseException:
            self.kill()
            raise AssertionError(f"taskloom serve did not start:\n{self.stderr()}") from None
        match = SERVING.search(line)
        assert match is not None
        self.url = match.group(1)
        return self.url

    def _spawn(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "FORCE_COLOR"}
        env.update(NO_COLOR="1")
        env.pop("TASKLOOM_DATABASE_URL", None)
        command = [sys.executable, "-m", "taskloom", "serve", str(self.target), "--port", "0"]
        self.process = subprocess.Popen(
            [*command, "--db", self.database_url],
            cwd=self.folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            # A pipe, not a file: a file-size limit on the process must not stop its logging.
            stderr=subprocess.PIPE,
            text=True,
        )
        self._errors = Lines(self.process.stderr)

    def stderr(self) -> str:
        """The last lines the process wrote on stderr."""
        return "".join(self._errors.seen[-60:]) if self._errors is not None else ""

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    async def stop(self) -> int:
        """SIGTERM, and its exit code (killed if it does not exit within 30 s)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(self.process.wait, 30)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"taskloom serve ignored SIGTERM:\n{self.stderr()}") from None


def snapshot(url: str) -> dict[str, Run]:
    """Every run in the database, read by a store of its own."""
    store = open_store(url)
    try:
        return {run.id: run for run in store.list_runs(limit=100_000)}
    finally:
        store.close()


def attempts_of(url: str, run_ids: list[str]) -> dict[str, list[Attempt]]:
    store = open_store(url)
    try:
        return {run_id: store.get_attempts(run_id) for run_id in run_ids}
    finally:
        store.close()


def unfinished(url: str) -> int:
    """How many runs are `pending` or `running`, as committed."""
    store = open_store(url)
    try:
        return len(store.list_runs(status=["pending", "running"], limit=100_000))
    finally:
        store.close()


# PostgreSQL ---------------------------------------------------------------------------------


def _as_postgres_user() -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its programs as `postgres`."""
    if os.geteuid() != 0:
        return []
    return [require_program("runuser"), "-u", "postgres", "--"]


class Postgres:
    """A PostgreSQL cluster of the test's own, on a free port."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._as_user = _as_postgres_user()

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*self._as_user, *args], capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode != 0:
            log = self.folder / "postgres.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise AssertionError(f"{args[0]} failed: {done.stdout}{done.stderr}{tail}")
        return done

    def init(self) -> None:
        self._run(
            require_program("initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            require_program("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.folder / "postgres.log"),
            "-o",
            options,
            "-w",
            "-t",
            "30",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(require_program("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        pid_file = self.data / "postmaster.pid"
        return pid_file.exists()


@contextmanager
def postgres_cluster() -> Iterator[Postgres]:
    """A new cluster, started; stopped and removed on exit."""
    require_program("initdb")
    require_program("pg_ctl")
    folder = Path(tempfile.mkdtemp(prefix="taskloom-pg-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres", "postgres")
        cluster = Postgres(folder)
        cluster.init()
        cluster.start()
        try:
            yield cluster
        finally:
            if cluster.running():
                cluster.stop("immediate")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# NATS ---------------------------------------------------------------------------------------


class NatsServer:
    """A `nats-server` on a free port, which can be stopped and started again on it."""

    def __init__(self) -> None:
        self.program = require_program("nats-server")
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[str] | None = None

    async def start(self) -> None:
        """Start it (again, on the same port); returns once it is ready."""
        self._spawn()
        assert self.process is not None
        lines = Lines(self.process.stderr)
        await lines.wait_for(lambda line: "Server is ready" in line)

    def _spawn(self) -> None:
        self.process = subprocess.Popen(
            [self.program, "-a", "127.0.0.1", "-p", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait()
