"""The Schedules page in headless Chromium against a real `taskloom serve` that requires
tokens: schedules listed with their next fire times, an operator pausing, resuming and
triggering one from its page (the API agreeing each time), runs that say which schedule
made them, and a viewer who reads but cannot pause."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from browser_harness import (
    Dashboard,
    Server,
    create_token,
    served_folder,
    serving,
    wait_until,
)
from playwright.sync_api import expect

from taskloom.schedules.hooks import SIGNATURE_HEADER, HookBook, sign
from taskloom.store import open_store

pytestmark = pytest.mark.timeout(120)

#: Chromium logs each 401 and 403 answer as a console error: signing in starts with one.
REFUSED = r"status of 40[13] "

#: A task with a schedule option (hourly, Zurich time), served next to `examples/`.
SCHEDULED_TASKS = '''\
import taskloom


HOURLY = taskloom.Cron("0 * * * *", timezone="Europe/Zurich", inputs={"region": "eu"})


@taskloom.task(schedule=HOURLY)
def hourly_report(region: str = "eu") -> str:
    """Write the hourly report of a region."""
    return f"report for {region}"
'''

#: A stored schedule whose name holds a ":" and whose inputs hold markup.
STORED: dict[str, Any] = {
    "name": "reports:nightly",
    "task": "hourly_report",
    "cron": "30 2 * * *",
    "timezone": "America/New_York",
    "inputs": {"region": "<img src=x onerror=window.injected=1>"},
}


@dataclass
class Tokens:
    viewer: str
    operator: str
    hook_secret: str  # of the webhook "ship", which runs hourly_report


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Tokens]]:
    folder = tmp_path_factory.mktemp("serve-schedules")
    database_url = served_folder(folder)
    (folder / "scheduled_tasks.py").write_text(SCHEDULED_TASKS, encoding="utf-8")
    store = open_store(database_url)  # the database exists before the tokens are made
    try:
        _, secret = HookBook(store).create("ship", "hourly_report")
    finally:
        store.close()
    made = Tokens(
        viewer=create_token(folder, database_url, "viewer"),
        operator=create_token(folder, database_url, "operator"),
        hook_secret=secret,
    )
    with serving(folder, "scheduled_tasks.py") as running:
        yield running, made


@pytest.fixture(scope="module")
def server(served: tuple[Server, Tokens]) -> Server:
    """This module's server serves the scheduled task and requires tokens."""
    return served[0]


@pytest.fixture(scope="module")
def tokens(served: tuple[Server, Tokens]) -> Tokens:
    return served[1]


def _call(server: Server, token: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(
        method,
        f"{server.url}/api{path}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
        **kwargs,
    )


def _read(server: Server, token: str, path: str) -> Any:
    response = _call(server, token, "GET", path)
    response.raise_for_status()
    return response.json()


def _sign_in(dashboard: Dashboard, address: str, token: str) -> None:
    dashboard.console.allow(REFUSED)
    page = dashboard.page
    dashboard.open(address)
    expect(page.locator("#sign-in-form")).to_be_visible()
    page.fill("#token", token)
    page.get_by_role("button", name="Sign in").click()


def _expect_fires(dashboard: Dashboard, fires: list[str]) -> None:
    rows = dashboard.page.locator("#schedule-fire-times tbody tr")
    expect(rows).to_have_count(len(fires))
    for index, fire in enumerate(fires):
        expect(rows.nth(index)).to_have_attribute("data-fire", fire)


def _utc(iso: str) -> str:
    """How the page writes an instant in UTC: `2027-01-31 01:30:00 UTC`."""
    return f"{iso[:19].replace('T', ' ')} UTC"


def _next_fire(schedule: dict[str, Any]) -> re.Pattern[str]:
    """The schedule's next fire in UTC as the page writes it, or the one after (should a
    tick pass between the API's answer and the page's)."""
    return re.compile("|".join(re.escape(_utc(iso)) for iso in schedule["next_fires"][:2]))


def test_the_page_lists_schedules_with_their_next_fire_times(
    dashboard: Dashboard, server: Server, tokens: Tokens
) -> None:
    added = _call(server, tokens.operator, "POST", "/schedules", json=STORED)
    assert added.status_code == 201, added.text
    listed = {s["name"]: s for s in _read(server, tokens.viewer, "/schedules")}
    option, stored = listed["hourly_report"], listed[STORED["name"]]
    assert option["source"] == "task"
    assert option["recorded"]
    page = dashboard.page
    _sign_in(dashboard, "#/schedules", tokens.viewer)
    expect(page.locator("#nav a[aria-current=page]")).to_have_text("Schedules")

    row = page.locator('#schedules-table tr[data-schedule="hourly_report"]')
    expect(row.locator(".task")).to_have_text("hourly_report")
    expect(row.locator(".rule")).to_contain_text(option["description"])
    expect(row.locator(".rule")).to_contain_text("0 * * * *")
    expect(row.locator(".timezone")).to_have_text("Europe/Zurich")
    expect(row.locator(".next-fire")).to_contain_text(_next_fire(option))
    expect(row.locator(".state")).to_have_text("active")
    expect(row.locator(".source")).to_have_text("task option")
    other = page.locator(f'#schedules-table tr[data-schedule="{STORED["name"]}"]')
    expect(other.locator(".timezone")).to_have_text("America/New_York")
    expect(other.locator(".next-fire")).to_contain_text(_next_fire(stored))
    expect(other.locator(".source")).to_have_text("stored")
    dashboard.screenshot("schedules")

    # The detail of the stored one: the name's ":" survives the address, the inputs are text.
    other.get_by_role("link", name=STORED["name"]).click()
    expect(page.locator("#schedule-description")).to_have_text(stored["description"])
    expect(page.locator("#schedule-timezone")).to_have_text("America/New_York")
    expect(page.locator("#schedule-inputs")).to_contain_text(STORED["inputs"]["region"])
    fires = _read(server, tokens.viewer, f"/schedules/{STORED['name']}/next?count=5")["fires"]
    assert len(fires) == 5
    _expect_fires(dashboard, fires)
    first = page.locator("#schedule-fire-times tbody tr").first
    expect(first.locator("td.utc")).to_have_text(_utc(fires[0]))
    headers = page.locator("#schedule-fire-times thead th")
    expect(headers.first).to_have_text("UTC")
    expect(headers.nth(1)).to_contain_text("Local")
    expect(page.locator("#schedule-runs-empty")).to_be_visible()
    assert page.evaluate("window.injected") is None, "the inputs' markup was run"
    dashboard.screenshot("schedule")


def test_an_operator_pauses_resumes_and_triggers_from_the_page(
    dashboard: Dashboard, server: Server, tokens: Tokens
) -> None:
    page = dashboard.page
    _sign_in(dashboard, "#/schedules/hourly_report", tokens.operator)
    expect(page.locator("#schedule-state")).to_have_text("active")
    _expect_fires(
        dashboard, _read(server, tokens.operator, "/schedules/hourly_report/next")["fires"]
    )
    expect(page.locator("#schedule-viewer-note")).to_be_hidden()

    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#schedule-state")).to_have_text("paused")
    expect(page.locator("#schedule-no-fires")).to_contain_text("Paused")
    expect(page.locator("#schedule-fire-times")).to_have_count(0)
    detail = _read(server, tokens.operator, "/schedules/hourly_report")
    assert detail["paused"] is True
    assert detail["next_fires"] == []
    assert _read(server, tokens.operator, "/schedules/hourly_report/next")["fires"] == []
    expect(page.get_by_role("button", name="Pause")).to_be_hidden()
    dashboard.screenshot("paused")

    page.get_by_role("link", name="← Schedules").click()
    row = page.locator('#schedules-table tr[data-schedule="hourly_report"]')
    expect(row.locator(".state")).to_have_text("paused")
    expect(row.locator(".next-fire")).to_contain_text("paused")
    row.locator(".name a").click()

    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#schedule-state")).to_have_text("active")
    expect(page.locator("#schedule-fire-times tbody tr")).to_have_count(5)
    assert _read(server, tokens.operator, "/schedules/hourly_report")["paused"] is False
    fires = _read(server, tokens.operator, "/schedules/hourly_report/next")["fires"]
    assert len(fires) == 5
    _expect_fires(dashboard, fires)

    # Trigger: a worker serving the task starts a run, keyed as made by hand.
    page.get_by_role("button", name="Trigger").click()
    expect(page.locator("#schedule-action-done")).to_contain_text("A run was asked for")

    def triggered() -> list[dict[str, Any]]:
        runs = _read(server, tokens.operator, "/schedules/hourly_report")["runs"]
        return [r for r in runs if "@manual:" in (r["idempotency_key"] or "")]

    (run,) = wait_until(triggered, what="the triggered run")
    shown = page.locator(f'#schedule-runs tr[data-run="{run["id"]}"]')
    expect(shown.locator(".made-for")).to_contain_text("by hand")
    expect(shown.locator(".status")).to_have_text("completed")
    dashboard.screenshot("triggered")

    shown.get_by_role("link").click()
    expect(page.locator("#run-status .status")).to_have_text("completed")
    expect(page.locator("#run-origin")).to_have_text(
        "triggered by hand from schedule hourly_report"
    )
    page.locator("#run-origin").get_by_role("link", name="hourly_report").click()
    expect(page.locator("#schedule-state")).to_have_text("active")


def test_a_run_of_a_tick_says_which_schedule_started_it(
    dashboard: Dashboard, server: Server, tokens: Tokens
) -> None:
    every_second = {"name": "every-second", "task": "hourly_report", "interval": 1}
    added = _call(server, tokens.operator, "POST", "/schedules", json=every_second)
    assert added.status_code == 201, added.text

    def ticked() -> list[dict[str, Any]]:
        detail = _read(server, tokens.operator, "/schedules/every-second")
        runs: list[dict[str, Any]] = detail["runs"]
        return runs

    try:
        run = wait_until(ticked, what="a run of the one-second schedule")[-1]
    finally:
        paused = _call(server, tokens.operator, "POST", "/schedules/every-second/pause")
        assert paused.status_code == 200, paused.text
    assert not run["idempotency_key"].startswith("schedule:every-second@manual:")
    page = dashboard.page
    _sign_in(dashboard, f"#/runs/{run['id']}", tokens.viewer)
    expect(page.locator("#run-origin")).to_have_text("started by schedule every-second")
    page.locator("#run-origin").get_by_role("link").click()
    expect(page.locator("#schedule-state")).to_have_text("paused")
    expect(page.locator(f'#schedule-runs tr[data-run="{run["id"]}"] .made-for')).to_contain_text(
        "tick"
    )


def test_a_run_started_by_a_webhook_says_so(
    dashboard: Dashboard, server: Server, tokens: Tokens
) -> None:
    body = json.dumps({"region": "us"}).encode()
    called = httpx.post(
        f"{server.url}/api/hooks/ship",
        content=body,
        headers={
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(tokens.hook_secret, body),
        },
        timeout=10,
    )
    assert called.status_code == 201, called.text
    page = dashboard.page
    _sign_in(dashboard, f"#/runs/{called.json()['id']}", tokens.viewer)
    expect(page.locator("#run-origin")).to_have_text("started by webhook ship")


def test_a_viewer_cannot_pause(dashboard: Dashboard, server: Server, tokens: Tokens) -> None:
    page = dashboard.page
    _sign_in(dashboard, "#/schedules/hourly_report", tokens.viewer)
    expect(page.locator("#schedule-fire-times tbody tr")).to_have_count(5)
    expect(page.locator("#schedule-viewer-note")).to_contain_text("operator")
    expect(page.locator("#schedule-controls")).to_be_hidden()
    for name in ("Pause", "Resume", "Trigger"):
        expect(page.get_by_role("button", name=name)).to_have_count(0)  # none is offered

    refused = _call(server, tokens.viewer, "POST", "/schedules/hourly_report/pause")
    assert refused.status_code == 403
    assert "operator" in refused.text
    assert _read(server, tokens.viewer, "/schedules/hourly_report")["paused"] is False
    expect(page.locator("#schedule-state")).to_have_text("active")
