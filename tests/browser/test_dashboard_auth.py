"""The dashboard on a server that requires tokens: it asks for one, sends it with every call
and with the live events, and shows what a role may not do."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from browser_harness import Dashboard, Server, create_token, served_folder, serving
from playwright.sync_api import expect

from taskloom.store import open_store

pytestmark = pytest.mark.timeout(120)

#: Chromium logs each 401 and 403 answer as a console error: here they are the point.
REFUSED = r"status of 40[13] "


@dataclass
class Tokens:
    viewer: str
    operator: str
    admin: str


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Tokens]]:
    folder = tmp_path_factory.mktemp("serve-auth")
    database_url = served_folder(folder)
    open_store(database_url).close()  # the database exists before the tokens are made
    # A token in the store makes the server require one, even on loopback.
    made = Tokens(
        viewer=create_token(folder, database_url, "viewer"),
        operator=create_token(folder, database_url, "operator"),
        admin=create_token(folder, database_url, "admin"),
    )
    with serving(folder) as running:
        yield running, made


@pytest.fixture(scope="module")
def server(tokens: tuple[Server, Tokens]) -> Server:
    """This module's server is the one that requires tokens."""
    return tokens[0]


def _sign_in(dashboard: Dashboard, token: str) -> None:
    page = dashboard.page
    expect(page.locator("#sign-in-form")).to_be_visible()
    page.fill("#token", token)
    page.get_by_role("button", name="Sign in").click()


def test_the_dashboard_asks_for_a_token_and_refuses_a_wrong_one(
    dashboard: Dashboard, tokens: tuple[Server, Tokens]
) -> None:
    dashboard.console.allow(REFUSED)
    page = dashboard.page
    dashboard.open("#/tasks")
    expect(page.locator("#sign-in-form")).to_be_visible()
    expect(page.locator("#live")).to_have_text("not signed in")
    dashboard.screenshot("sign-in")
    _sign_in(dashboard, "not-a-token")
    expect(page.locator("#token-error")).to_contain_text("unknown or revoked")
    expect(page.locator("#sign-in-form")).to_be_visible()


def test_a_viewer_reads_and_may_not_launch(
    dashboard: Dashboard, tokens: tuple[Server, Tokens]
) -> None:
    dashboard.console.allow(REFUSED)
    server, made = tokens
    page = dashboard.page
    dashboard.open("#/tasks/adder")
    _sign_in(dashboard, made.viewer)
    expect(page.locator("#launch-form")).to_be_visible()
    expect(page.locator("#live")).to_have_attribute("data-state", "open")  # events with the token
    page.fill("#input-a", "1")
    page.fill("#input-b", "2")
    page.get_by_role("button", name="Launch run").click()
    expect(page.locator("#launch-error")).to_contain_text("operator")
    server.token = made.viewer
    assert server.api("GET", "/runs", params={"task": "adder"})["runs"] == []

    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#sign-in-form")).to_be_visible()


def test_an_operator_launches_a_run_and_sees_it_complete(
    dashboard: Dashboard, tokens: tuple[Server, Tokens]
) -> None:
    dashboard.console.allow(REFUSED)
    _server, made = tokens
    page = dashboard.page
    dashboard.open("#/tasks/adder")
    _sign_in(dashboard, made.operator)
    page.fill("#input-a", "20")
    page.fill("#input-b", "22")
    page.get_by_role("button", name="Launch run").click()
    expect(page.locator("#run-status .status")).to_have_text("completed")
    expect(page.locator("#run-result")).to_have_text("42")
    # The token is kept for the tab: another page needs no new sign-in.
    page.get_by_role("link", name="Services").click()
    expect(page.locator("#services-table tr[data-service=read_sensor]")).to_be_visible()


def test_package_controls_are_shown_to_admins_only(
    dashboard: Dashboard, tokens: tuple[Server, Tokens]
) -> None:
    dashboard.console.allow(REFUSED)
    server, made = tokens
    # A requirement pip cannot find, without an index: a real install that fails at once.
    server.token = made.admin
    body = {"source": "no-such-auth-package==1.0", "pip_args": ["--no-index"]}
    server.api("POST", "/packages", json=body)
    page = dashboard.page

    dashboard.open("#/packages?package=no-such-auth-package")
    _sign_in(dashboard, made.operator)
    expect(page.locator("#package-state .status")).to_have_text("failed")
    expect(page.locator("#package-log")).to_contain_text("no-such-auth-package==1.0")
    expect(page.locator("#add-package")).to_be_hidden()
    expect(page.get_by_role("button", name="Remove")).to_have_count(0)
    expect(page.get_by_role("button", name="Reinstall")).to_have_count(0)
    dashboard.screenshot("operator")

    page.get_by_role("button", name="Sign out").click()
    _sign_in(dashboard, made.admin)
    expect(page.locator("#add-package")).to_be_visible()
    page.get_by_role("button", name="Remove").click()
    expect(page.locator("#packages-table tr[data-package=no-such-auth-package]")).to_have_count(0)
    assert server.api("GET", "/packages") == []


def test_live_events_carry_the_token_in_a_header_and_end_when_it_is_revoked(
    dashboard: Dashboard, tokens: tuple[Server, Tokens]
) -> None:
    dashboard.console.allow(REFUSED)
    server, made = tokens
    server.token = made.admin
    doomed = server.api("POST", "/tokens", json={"role": "viewer", "name": "revoked-in-test"})
    page = dashboard.page
    streams: list[tuple[str, str | None]] = []
    page.on(
        "request",
        lambda r: (
            streams.append((r.url, r.headers.get("authorization")))
            if "/api/events" in r.url
            else None
        ),
    )
    dashboard.open("#/runs")
    _sign_in(dashboard, doomed["token"])
    expect(page.locator("#live")).to_have_attribute("data-state", "open")
    assert streams, "the page opened no event stream"
    for url, _authorization in streams:
        assert "token" not in url
    assert streams[-1][1] == f"Bearer {doomed['token']}"

    httpx.delete(
        f"{server.url}/api/tokens/{doomed['id']}",
        headers={"Authorization": f"Bearer {made.admin}"},
        timeout=10,
    ).raise_for_status()
    # The server ends the stream; the page then asks for another token.
    expect(page.locator("#live")).not_to_have_attribute("data-state", "open", timeout=5000)
    expect(page.locator("#sign-in-form")).to_be_visible()
    expect(page.locator("#token-error")).to_contain_text("unknown or revoked")
