"""`taskloom serve --no-worker` in headless Chromium: a run it accepted waits, a worker in
another process executes it, and the run's page follows it live, log lines and all."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_harness import Dashboard, Server, served_folder, serving, taskloom_process
from playwright.sync_api import expect

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path, str]]:
    """The server that executes nothing, its folder and its database."""
    folder = tmp_path_factory.mktemp("serve-no-worker")
    database_url = served_folder(folder)
    with serving(folder, "--no-worker") as running:
        yield running, folder, database_url


@pytest.fixture(scope="module")
def server(served: tuple[Server, Path, str]) -> Server:
    return served[0]


def test_a_run_executed_by_a_worker_elsewhere_shows_live(
    dashboard: Dashboard, served: tuple[Server, Path, str]
) -> None:
    server, folder, database_url = served
    page = dashboard.page
    run = server.api("POST", "/runs", json={"task": "slow_count", "inputs": {"n": 8}})
    dashboard.open(f"#/runs/{run['id']}")
    expect(page.locator("#live")).to_have_attribute("data-state", "open")
    expect(page.locator("#run-status .status")).to_have_text("pending")
    worker = taskloom_process(folder, "worker", "examples/", "--db", database_url)
    try:
        expect(page.locator("#run-status .status")).to_have_text("running")
        expect(page.locator("#run-logs")).to_contain_text("counted 3 of 8")
        expect(page.locator("#run-status .status")).to_have_text("completed")
        expect(page.locator("#run-logs .line")).to_have_count(8)
        expect(page.locator("#run-result")).to_have_text("8")
        expect(page.locator("#run-attempts")).to_contain_text("completed")
        dashboard.screenshot("executed-elsewhere")
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            assert worker.wait(timeout=30) == 0
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
            raise
