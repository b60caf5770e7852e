"""Fixtures for the dashboard in a real headless Chromium, against a real `taskloom serve`.

Chromium is Debian's (`apt-get install -y chromium`), driven by Playwright through
`executable_path`, so no browser download is needed. Without it the tests are skipped, except
under `CI=true`, where that is a failure. Every page's console is watched: an error there
fails the test. Screenshots go to `test-artifacts/screenshots/`, named after the test.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from browser_harness import (
    CHROMIUM,
    CHROMIUM_ARGS,
    SCREENSHOTS,
    VIEWPORT,
    Console,
    Dashboard,
    Server,
    require_chromium,
    served_folder,
    serving,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`taskloom serve examples/` (and `form_tasks.py`) on a free port; no token is needed."""
    folder = tmp_path_factory.mktemp("serve")
    served_folder(folder)
    with serving(folder) as running:
        yield running


# Module scope, not session: Playwright's sync API keeps an event loop of its own while it
# runs, and the asyncio tests that follow need the thread's loop to themselves.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium with a fresh profile folder: its one browser context."""
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    # A busy machine may take a while; a condition that never comes still fails in 15 s.
    expect.set_options(timeout=15_000)

    profile = tempfile.mkdtemp(prefix="taskloom-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=str(CHROMIUM),
                args=CHROMIUM_ARGS,
                headless=True,
                viewport=VIEWPORT,
            )
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def dashboard(browser: Any, server: Server, request: pytest.FixtureRequest) -> Iterator[Dashboard]:
    """A fresh page on the dashboard whose console errors fail the test."""
    page = browser.new_page()
    page.set_default_timeout(15_000)
    console = Console()

    def on_console(message: Any) -> None:
        if message.type == "error":
            console.errors.append(f"{message.text} ({message.location.get('url')})")

    page.on("console", on_console)
    page.on("pageerror", lambda error: console.errors.append(f"uncaught: {error}"))
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name).strip("-")
    try:
        yield Dashboard(page=page, server=server, console=console, name=name)
        unexpected = console.unexpected()
        assert not unexpected, "the page reported errors:\n" + "\n".join(unexpected)
    finally:
        page.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SCREENSHOTS.is_dir() and any(SCREENSHOTS.iterdir()):
        terminalreporter.write_line(f"dashboard screenshots: {SCREENSHOTS}")
