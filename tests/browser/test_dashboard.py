"""The dashboard in headless Chromium against a real `taskloom serve`: launching runs from the
form, inline validation messages, live status, the runs table, cancel, services."""

from __future__ import annotations

import re

import pytest
from browser_harness import Dashboard, wait_until
from playwright.sync_api import expect

pytestmark = pytest.mark.timeout(120)

#: Chromium logs each 4xx answer to a fetch as a console error; this is the 422 of an invalid form.
REFUSED_SUBMIT = r"status of 422 .*\(http://[^)]*/api/runs\)"


def _runs_of(dashboard: Dashboard, task: str) -> list[dict[str, object]]:
    body = dashboard.server.api("GET", "/runs", params={"task": task})
    runs: list[dict[str, object]] = body["runs"]
    return runs


def test_a_run_launched_from_the_form_completes_live(dashboard: Dashboard) -> None:
    page = dashboard.page
    dashboard.open("#/tasks")
    expect(page.locator("#live")).to_have_attribute("data-state", "open")
    page.get_by_label("Search tasks").fill("slow")
    expect(page.locator(".task-list a[data-task]")).to_have_count(1)
    page.locator(".task-list a[data-task=slow_count]").click()
    expect(page.locator("#launch-form")).to_be_visible()
    page.fill("#input-n", "30")  # 3 s: long enough to be seen running
    dashboard.screenshot("catalog")
    page.evaluate("window.stillTheSamePage = true")
    page.get_by_role("button", name="Launch run").click()

    expect(page).to_have_url(re.compile(r"#/runs/[0-9a-f-]{36}$"))
    run_id = page.url.rsplit("/", 1)[1]
    # The page follows the run as it happens: running with progress, then completed.
    expect(page.locator("#run-status .status")).to_have_text("running")
    expect(page.locator("#run-progress [role=progressbar]")).to_be_visible()
    expect(page.locator("#run-status .status")).to_have_text("completed")
    expect(page.locator("#run-result")).to_have_text("30")
    expect(page.locator("#run-logs")).to_contain_text("counted 30 of 30")
    # Each line once, whether it came as an event, from the API, or both.
    expect(page.locator("#run-logs .line")).to_have_count(30)
    expect(page.locator("#run-attempts li")).to_have_count(1)
    expect(page.locator("#run-attempts")).to_contain_text("completed")
    expect(page.locator("#run-progress [role=progressbar]")).to_have_attribute(
        "aria-valuenow", "100"
    )
    expect(page.locator("#cancel-run")).to_be_hidden()
    assert page.evaluate("window.stillTheSamePage") is True, "the page was reloaded"
    dashboard.screenshot("run")

    run = dashboard.server.api("GET", f"/runs/{run_id}")
    assert run["status"] == "completed"
    assert run["inputs"] == {"n": 30}
    assert run["result"] == 30


def test_an_invalid_field_shows_its_message_and_creates_no_run(dashboard: Dashboard) -> None:
    dashboard.console.allow(REFUSED_SUBMIT)
    page = dashboard.page
    before = len(_runs_of(dashboard, "adder"))
    dashboard.open("#/tasks/adder")
    page.fill("#input-a", "x")
    page.get_by_role("button", name="Launch run").click()

    expect(page.locator("#input-a-message")).to_have_text(re.compile("expected an integer.*'x'"))
    expect(page.locator("#input-b-message")).to_have_text(re.compile("required"))
    expect(page.locator("#input-a")).to_have_attribute("aria-invalid", "true")
    expect(page).to_have_url(re.compile(r"#/tasks/adder$"))
    dashboard.screenshot("invalid")
    assert len(_runs_of(dashboard, "adder")) == before

    # Typing into a field clears its message; valid inputs then launch a run.
    page.fill("#input-a", "2")
    expect(page.locator("#input-a-message")).to_have_text("")
    page.fill("#input-b", "40")
    page.get_by_role("button", name="Launch run").click()
    expect(page.locator("#run-result")).to_have_text("42")
    assert len(_runs_of(dashboard, "adder")) == before + 1


def test_a_form_follows_the_schema_types_defaults_and_enums(dashboard: Dashboard) -> None:
    page = dashboard.page
    dashboard.open("#/tasks/greet")
    # `punctuation: Literal["!", "."] = "!"` is a choice with its default chosen.
    choice = page.locator("select#input-punctuation")
    expect(choice).to_be_visible()
    expect(choice.locator("option:checked")).to_have_text("!")
    expect(page.locator("label[for=input-name] .required")).to_have_count(1)
    expect(page.locator("label[for=input-punctuation] .required")).to_have_count(0)
    expect(page.locator("#input-name-hint")).to_have_text("who to greet")
    page.fill("#input-name", "Ada")
    choice.select_option(label=".")
    page.get_by_role("button", name="Launch run").click()
    expect(page.locator("#run-result")).to_have_text('"Hello, Ada."')


def test_nested_objects_lists_and_optional_fields(dashboard: Dashboard) -> None:
    dashboard.console.allow(REFUSED_SUBMIT)
    page = dashboard.page
    dashboard.open("#/tasks/draw")
    point = page.locator("fieldset[data-field=point]")
    expect(point.locator("legend")).to_contain_text("point")
    expect(point.locator("#input-point_x-hint")).to_have_text("across, in pixels")
    expect(page.locator("#input-scale")).to_have_value("1")
    expect(page.locator("#input-filled")).not_to_be_checked()

    # A list that is not JSON is caught before anything is sent.
    page.fill("#input-point_x", "a")
    page.fill("#input-tags", '["red"')
    page.get_by_role("button", name="Launch run").click()
    expect(page.locator("#input-tags-message")).to_contain_text("not valid JSON")

    # The server's message for a nested field lands next to that field.
    page.fill("#input-tags", '["red", "big"]')
    page.get_by_role("button", name="Launch run").click()
    expect(page.locator("#input-point_x-message")).to_have_text(re.compile("expected an integer"))
    expect(page.locator("#input-tags-message")).to_have_text("")
    assert _runs_of(dashboard, "draw") == []

    page.fill("#input-point_x", "3")
    page.locator("#input-shape").select_option(label="square")
    page.check("#input-filled")
    page.fill("#input-note", "hi")
    page.get_by_role("button", name="Launch run").click()
    expect(page.locator("#run-status .status")).to_have_text("completed")
    run_id = page.url.rsplit("/", 1)[1]
    run = dashboard.server.api("GET", f"/runs/{run_id}")
    expected = {
        "point": {"x": 3, "y": 0},
        "tags": ["red", "big"],
        "shape": "square",
        "scale": 1.0,
        "filled": True,
        "note": "hi",
    }
    assert run["result"] == expected


def test_a_failed_run_shows_its_error_and_traceback(dashboard: Dashboard) -> None:
    run = dashboard.server.api(
        "POST", "/runs", json={"task": "fail", "inputs": {"message": "it broke"}}
    )
    wait_until(
        lambda: dashboard.server.api("GET", f"/runs/{run['id']}")["status"] == "failed",
        what="the run failing",
    )
    page = dashboard.page
    dashboard.open(f"#/runs/{run['id']}")
    expect(page.locator("#run-status .status")).to_have_text("failed")
    expect(page.locator("#run-error")).to_have_text("RuntimeError: it broke")
    expect(page.locator("#run-outcome pre.traceback")).to_contain_text(
        "raise RuntimeError(message)"
    )
    dashboard.screenshot("failed")


def test_cancel_stops_a_running_run(dashboard: Dashboard) -> None:
    run = dashboard.server.api("POST", "/runs", json={"task": "slow_count", "inputs": {"n": 600}})
    page = dashboard.page
    dashboard.open(f"#/runs/{run['id']}")
    expect(page.locator("#run-status .status")).to_have_text("running")
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#run-status .status")).to_have_text("cancelled")
    expect(page.locator("#cancel-run")).to_be_hidden()
    assert dashboard.server.api("GET", f"/runs/{run['id']}")["status"] == "cancelled"


def test_the_runs_table_filters_pages_and_updates_live(dashboard: Dashboard) -> None:
    server = dashboard.server
    runs = [
        server.api("POST", "/runs", json={"task": "adder", "inputs": {"a": i, "b": 1}})
        for i in range(30)
    ]
    wait_until(
        lambda: all(
            server.api("GET", f"/runs/{r['id']}")["status"] == "completed" for r in runs[-3:]
        ),
        what="the runs completing",
    )
    adder_runs = len(_runs_of(dashboard, "adder"))
    page = dashboard.page
    dashboard.open("#/runs?task=adder")
    rows = page.locator("#runs-table tbody tr[data-run]")
    expect(rows).to_have_count(25)
    expect(rows.first).to_have_attribute("data-run", runs[-1]["id"])  # newest first
    expect(page.get_by_role("button", name="Previous")).to_be_disabled()
    dashboard.screenshot("runs")
    page.get_by_role("button", name="Next").click()
    expect(rows).to_have_count(min(25, adder_runs - 25))
    expect(page.get_by_role("button", name="Previous")).to_be_enabled()
    page.get_by_role("button", name="Previous").click()
    expect(rows).to_have_count(25)

    page.get_by_label("Status").select_option("failed")
    expect(page).to_have_url(re.compile(r"status=failed"))
    expect(page.locator("#runs-table tbody")).to_contain_text("No runs match these filters.")

    # A run submitted elsewhere appears without a reload.
    page.get_by_label("Status").select_option("")
    expect(rows.first).to_have_attribute("data-run", runs[-1]["id"])
    fresh = server.api("POST", "/runs", json={"task": "adder", "inputs": {"a": 100, "b": 1}})
    expect(rows.first).to_have_attribute("data-run", fresh["id"])
    expect(rows.first.locator(".status")).to_have_text("completed")


def test_a_service_stops_and_starts_from_its_page(dashboard: Dashboard) -> None:
    server = dashboard.server
    page = dashboard.page
    dashboard.open("#/services")
    row = page.locator("tr[data-service=read_sensor]")
    # read_sensor starts with the server (autostart).
    expect(row.locator(".status")).to_have_text("running")
    starts = server.api("GET", "/services/read_sensor")["starts"]
    row.get_by_role("button", name="Stop").click()
    expect(row.locator(".status")).to_have_text("stopped")
    assert server.api("GET", "/services/read_sensor")["state"] == "stopped"

    row.get_by_role("button", name="Start…").click()
    form = page.locator("#service-start-form")
    expect(form.locator("#config-period")).to_have_value("1")  # the config model's default
    form.locator("#config-period").fill("0.2")
    form.locator("#config-channel").fill("b")
    dashboard.screenshot("service-config")
    form.get_by_role("button", name="Start read_sensor").click()
    expect(row.locator(".status")).to_have_text("running")
    expect(row.locator("td").nth(3)).to_have_text(str(starts + 1))
    status = server.api("GET", "/services/read_sensor")
    assert status["state"] == "running"
    assert status["starts"] == starts + 1
    dashboard.screenshot("services")

    row.get_by_role("button", name="Restart").click()
    expect(row.locator("td").nth(3)).to_have_text(str(starts + 2))
    expect(row.locator(".status")).to_have_text("running")

    # Its recent starts and its log lines (a restart keeps the config it had: channel b).
    row.locator("a[data-show=read_sensor]").click()
    expect(page).to_have_url(re.compile(r"#/services\?service=read_sensor$"))
    latest = page.locator("#service-starts tbody tr").first
    expect(latest.locator("td").first).to_have_text(str(starts + 2))
    expect(latest).to_contain_text("running")
    expect(page.locator("#service-starts tbody")).to_contain_text("stopped")
    expect(page.locator("#service-logs")).to_contain_text("channel b:")
    dashboard.screenshot("service-detail")
    row.get_by_role("button", name="Stop").click()
    expect(page.locator("#service-state .status")).to_have_text("stopped")


@pytest.mark.parametrize(
    ("scheme", "background"),
    [("light", "rgb(247, 247, 245)"), ("dark", "rgb(22, 24, 27)")],
    ids=["light", "dark"],
)
def test_every_page_in_light_and_dark(dashboard: Dashboard, scheme: str, background: str) -> None:
    page = dashboard.page
    page.emulate_media(color_scheme=scheme)
    run = dashboard.server.api("POST", "/runs", json={"task": "slow_count", "inputs": {"n": 3}})
    workflow = {"name": "pair", "steps": {"one": {"task": "adder", "inputs": {"a": 1, "b": 2}}}}
    workflow_run = dashboard.server.api("POST", "/workflows", json={"workflow": workflow})
    addresses = {
        "tasks": ("#/tasks/slow_count", "#launch-form"),
        "runs": ("#/runs", "#runs-table tbody tr[data-run]"),
        "run": (f"#/runs/{run['id']}", "#run-status .status[data-status=completed]"),
        "services": ("#/services", "#services-table tbody tr[data-service]"),
        "workflows": ("#/workflows", "#workflows-table tbody tr[data-run]"),
        "workflow": (
            f"#/workflows/{workflow_run['id']}",
            "#workflow-graph g.step[data-status=completed]",
        ),
        "packages": ("#/packages", "#packages-table"),
    }
    for label, (address, ready) in addresses.items():
        dashboard.open(address)
        expect(page.locator(ready).first).to_be_visible()
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == background
        expect(page.locator("#nav a[aria-current=page]")).to_have_count(1)
        dashboard.screenshot(label)


def test_unknown_runs_tasks_and_addresses(dashboard: Dashboard) -> None:
    dashboard.console.allow(r"status of 404 .*/api/runs/")
    page = dashboard.page
    dashboard.open("#/runs/01234567-89ab-7def-8123-456789abcdef")
    expect(page.get_by_role("alert")).to_contain_text("no run with id")
    dashboard.open("#/tasks/no_such_task")
    expect(page.locator("#task-detail")).to_contain_text("No task is named no_such_task.")
    dashboard.open("#/nowhere")
    expect(page).to_have_url(re.compile(r"#/$"))
    expect(page.locator("#nav a[aria-current=page]")).to_have_text("Overview")


def test_run_options_priority_and_idempotency_key(dashboard: Dashboard) -> None:
    dashboard.console.allow(REFUSED_SUBMIT)
    page = dashboard.page
    dashboard.open("#/tasks/adder")
    page.fill("#input-a", "1")
    page.fill("#input-b", "2")
    page.locator("#run-options summary").click()
    page.fill("#option-priority", "high")
    page.get_by_role("button", name="Launch run").click()
    expect(page.locator("#option-priority-message")).to_contain_text("integer")
    expect(page).to_have_url(re.compile(r"#/tasks/adder$"))

    page.fill("#option-priority", "7")
    page.fill("#option-idempotency_key", "nightly-2026-11-23")
    page.get_by_role("button", name="Launch run").click()
    expect(page.locator("#run-result")).to_have_text("3")
    first = page.url.rsplit("/", 1)[1]
    run = dashboard.server.api("GET", f"/runs/{first}")
    assert run["priority"] == 7
    assert run["idempotency_key"] == "nightly-2026-11-23"

    # The same key again: the run recorded under it, not a new one.
    dashboard.open("#/tasks/adder")
    page.fill("#input-a", "1")
    page.fill("#input-b", "2")
    page.locator("#run-options summary").click()
    page.fill("#option-idempotency_key", "nightly-2026-11-23")
    page.get_by_role("button", name="Launch run").click()
    expect(page).to_have_url(re.compile(f"#/runs/{first}$"))


def test_the_attempts_timeline_shows_each_retry(dashboard: Dashboard) -> None:
    run = dashboard.server.api("POST", "/runs", json={"task": "flaky", "inputs": {"fail_times": 2}})
    page = dashboard.page
    dashboard.open(f"#/runs/{run['id']}")
    expect(page.locator("#run-status .status")).to_have_text("completed")
    expect(page.locator("#run-result")).to_have_text('"attempt 3 succeeded"')
    attempts = page.locator("#run-attempts li")
    expect(attempts).to_have_count(3)
    expect(attempts.nth(0)).to_contain_text("RuntimeError: attempt 1 fails on purpose")
    expect(attempts.nth(1).locator(".status")).to_have_text("failed")
    expect(attempts.nth(2).locator(".status")).to_have_text("completed")
    dashboard.screenshot("retries")


def test_a_service_without_a_config_type_starts_with_optional_json(dashboard: Dashboard) -> None:
    page = dashboard.page
    dashboard.open("#/services")
    row = page.locator("tr[data-service=heartbeat]")
    expect(row.locator(".status")).to_have_text("stopped")
    row.get_by_role("button", name="Start…").click()
    form = page.locator("#service-start-form")
    form.locator("#config-json").fill("{not json")
    form.get_by_role("button", name="Start heartbeat").click()
    expect(form.locator(".form-error")).to_contain_text("not valid JSON")
    expect(row.locator(".status")).to_have_text("stopped")
    form.locator("#config-json").fill("")
    form.get_by_role("button", name="Start heartbeat").click()
    expect(row.locator(".status")).to_have_text("running")
    assert dashboard.server.api("GET", "/services/heartbeat")["state"] == "running"
    row.get_by_role("button", name="Stop").click()
    expect(row.locator(".status")).to_have_text("stopped")
