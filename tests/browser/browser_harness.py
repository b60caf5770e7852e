"""What the browser tests share: a `taskloom serve` subprocess, tokens, the page wrapper
that collects console errors, and where screenshots go."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import pytest

import support

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
FORM_TASKS = Path(__file__).resolve().parent / "form_tasks.py"
CHROMIUM = Path(os.environ.get("TASKLOOM_TEST_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: A laptop screen.
VIEWPORT: ViewportSize = {"width": 1366, "height": 800}
START_TIMEOUT = 30.0
_SERVING = re.compile(r"serving (http://\S+)")


def require_chromium() -> None:
    if CHROMIUM.is_file():
        return
    reason = f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI needs it for the browser tests")
    pytest.skip(f"{reason}; set TASKLOOM_TEST_CHROMIUM to use another")


@dataclass
class Server:
    """A `taskloom serve` subprocess: its URL and an HTTP client on its API."""

    url: str
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)

    token: str | None = None

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        response = httpx.request(
            method, f"{self.url}/api{path}", timeout=10, headers=headers, **kwargs
        )
        response.raise_for_status()
        return response.json()


def _read_lines(process: subprocess.Popen[str], lines: list[str], ready: threading.Event) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)
        if _SERVING.search(line):
            ready.set()
    ready.set()  # the output ended: the process is gone


def taskloom_process(folder: Path, *args: str) -> subprocess.Popen[str]:
    """Another `taskloom` command running in `folder` (a worker, say); its output is
    discarded. The caller stops it."""
    return subprocess.Popen(
        _taskloom(*args),
        cwd=folder,
        env=_environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _taskloom(*args: str) -> list[str]:
    return [sys.executable, "-m", "taskloom", *args]


def _environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TASKLOOM_")}
    env["NO_COLOR"] = "1"
    return env


def served_folder(folder: Path) -> str:
    """Copy `examples/` and `form_tasks.py` into `folder`; returns the database URL that
    `taskloom serve` uses there by default (`.taskloom/taskloom.db`)."""
    shutil.copytree(EXAMPLES, folder / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(FORM_TASKS, folder / FORM_TASKS.name)
    return f"sqlite:///{folder / '.taskloom' / 'taskloom.db'}"


def create_token(folder: Path, database_url: str, role: str) -> str:
    """`taskloom token create --role ROLE` on the served database; returns the secret."""
    result = subprocess.run(
        _taskloom(
            "token", "create", "--role", role, "--name", role, "--json", "--db", database_url
        ),
        cwd=folder,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    secret: str = json.loads(result.stdout)["token"]
    return secret


@contextlib.contextmanager
def serving(folder: Path, *options: str) -> Iterator[Server]:
    """The README's command, `taskloom serve examples/`, in a folder made by
    `served_folder` (with `form_tasks.py` too), on a free port of loopback and the
    embedded default database; `options` are more options of `serve`."""
    command = _taskloom("serve", "examples/", FORM_TASKS.name, "--port", "0", *options)
    process = subprocess.Popen(
        command,
        cwd=folder,
        env=_environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    ready = threading.Event()
    reader = threading.Thread(target=_read_lines, args=(process, lines, ready), daemon=True)
    reader.start()
    try:
        assert ready.wait(START_TIMEOUT), f"taskloom serve did not start: {''.join(lines)}"
        found = next((m for m in map(_SERVING.search, lines) if m), None)
        assert found is not None, f"taskloom serve ended: {''.join(lines)}"
        yield Server(url=found.group(1).rstrip("/"), process=process, output=lines)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        reader.join(timeout=5)
        if process.stdout is not None:
            process.stdout.close()


class Console:
    """The errors a page reported: console errors and uncaught exceptions.

    `allow(pattern)` accepts the errors that match (Chromium reports every 4xx answer of a
    fetch as a console error, so a test that expects a 422 allows exactly that one).
    """

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.allowed: list[re.Pattern[str]] = []

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]


@dataclass
class Dashboard:
    """A browser page on the server's dashboard."""

    page: Any
    server: Server
    console: Console
    name: str

    def open(self, address: str = "") -> None:
        self.page.goto(f"{self.server.url}/{address}")

    def screenshot(self, label: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{self.name}-{label}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


def wait_until(condition: Callable[[], T], timeout: float = 15.0, what: str = "condition") -> T:
    """Poll `condition()` (outside the browser) until it is truthy; fail after `timeout`."""
    return support.wait_until(condition, timeout, what=what)
