"""The Workers page in headless Chromium against a real `taskloom serve`: the server's own
worker alive, workers of other processes on the same database coming and going while the
page is open (alive ones before lost ones), and each attempt of a run naming its worker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from browser_harness import Dashboard, Server, served_folder, serving
from playwright.sync_api import expect

from taskloom.store import open_store

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    """The server, and the URL of its database (for workers of other processes)."""
    folder = tmp_path_factory.mktemp("serve-workers")
    database_url = served_folder(folder)
    with serving(folder) as running:
        yield running, database_url


@pytest.fixture(scope="module")
def server(served: tuple[Server, str]) -> Server:
    """This module's server is the one whose database the tests open too."""
    return served[0]


def _own_worker(server: Server) -> dict[str, object]:
    (own,) = server.api("GET", "/workers")  # nothing else has opened the database yet
    worker: dict[str, object] = own
    return worker


def test_workers_appear_and_are_lost_while_the_page_is_open(
    dashboard: Dashboard, served: tuple[Server, str]
) -> None:
    server, database_url = served
    page = dashboard.page
    own = _own_worker(server)
    dashboard.open("#/workers")
    expect(page.locator("#nav a[aria-current=page]")).to_have_text("Workers")
    rows = page.locator("#workers-table tbody tr[data-worker]")
    mine = page.locator(f'#workers-table tr[data-worker="{own["id"]}"]')
    expect(mine.locator(".state .status")).to_have_text("alive")
    expect(mine.locator(".pid")).to_have_text(str(own["pid"]))
    expect(mine.locator(".host")).to_have_text(str(own["hostname"]))
    expect(mine.locator(".heartbeat")).to_contain_text("ago")
    page.evaluate("window.stillTheSamePage = true")

    # A worker of another process: alive while its store holds the lock.
    gone = open_store(database_url)
    try:
        gone.register_worker("gone-worker", hostname="elsewhere", pid=4242)
        left = page.locator('#workers-table tr[data-worker="gone-worker"]')
        expect(left.locator(".state .status")).to_have_text("alive")
        expect(left.locator(".host")).to_have_text("elsewhere")
    finally:
        gone.close()  # without unregistering, as when its process dies
    expect(left.locator(".state .status")).to_have_text("lost")

    # A newer worker that stays alive is listed before the older lost one.
    second = open_store(database_url)
    try:
        second.register_worker("second-worker", hostname="elsewhere", pid=4343)
        expect(rows).to_have_count(3)
        expect(rows.nth(1)).to_have_attribute("data-worker", "second-worker")
        expect(rows.nth(2)).to_have_attribute("data-worker", "gone-worker")
        expect(rows.nth(0)).to_have_attribute("data-worker", str(own["id"]))
        dashboard.screenshot("workers")
    finally:
        second.close()
    assert page.evaluate("window.stillTheSamePage") is True, "the page was reloaded"


def test_each_attempt_names_the_worker_that_ran_it(dashboard: Dashboard) -> None:
    server = dashboard.server
    run = server.api("POST", "/runs", json={"task": "adder", "inputs": {"a": 1, "b": 2}})
    done = server.api("GET", f"/runs/{run['id']}/wait", params={"timeout": 30})
    assert done["status"] == "completed"
    (attempt,) = server.api("GET", f"/runs/{run['id']}/attempts")
    page = dashboard.page
    dashboard.open(f"#/runs/{run['id']}")
    worker = page.locator("#run-attempts li .attempt-worker")
    expect(worker).to_have_text(f"on {attempt['worker_id']}")
    worker.get_by_role("link").click()
    expect(page.locator("#workers-table")).to_be_visible()
