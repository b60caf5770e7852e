"""Workflow and package pages in headless Chromium against a real `taskloom serve examples/`:
a workflow's DAG filling in live, a failed step with its dependents skipped, the example
workflow launched from its file, a failed package install with its log."""

from __future__ import annotations

import re
from typing import Any

import pytest
from browser_harness import EXAMPLES, Dashboard, wait_until
from playwright.sync_api import expect

pytestmark = pytest.mark.timeout(120)

#: Chromium logs each 4xx answer to a fetch as a console error; this is a refused workflow.
REFUSED_WORKFLOW = r"status of 422 .*\(http://[^)]*/api/workflows\)"

CHAIN = {
    "name": "chain",
    "steps": {
        # 2 s of counting: long enough to see the graph before it is done.
        "count": {"task": "slow_count", "inputs": {"n": 20}},
        "total": {"task": "adder", "inputs": {"a": "${steps.count.result}", "b": 1}},
        "hello": {"task": "greet", "map": "name", "inputs": {"name": ["Ada", "Grace"]}},
    },
}

BROKEN = {
    "name": "broken",
    "steps": {
        "boom": {"task": "fail", "inputs": {"message": "it broke"}},
        "after_boom": {"task": "adder", "inputs": {"a": 1, "b": 2}, "after": ["boom"]},
        "last": {"task": "greet", "inputs": {"name": "x"}, "after": ["after_boom"]},
        "alone": {"task": "adder", "inputs": {"a": 3, "b": 4}},
    },
}


def _step(page: Any, name: str) -> Any:
    return page.locator(f"#workflow-graph g.step[data-step={name}]")


def test_a_workflow_dag_fills_in_live(dashboard: Dashboard) -> None:
    page = dashboard.page
    run = dashboard.server.api("POST", "/workflows", json={"workflow": CHAIN})
    dashboard.open(f"#/workflows/{run['id']}")
    expect(page.locator("#live")).to_have_attribute("data-state", "open")
    # Three boxes, an edge from `count` to `total`, laid out by depth.
    expect(page.locator("#workflow-graph g.step")).to_have_count(3)
    expect(page.locator("#workflow-graph path.edge[data-from=count][data-to=total]")).to_have_count(
        1
    )
    # Both boxes read in one go on the page: the graph is drawn again as events arrive,
    # and an element read between two drawings may already be gone.
    count_x, total_x = page.wait_for_function(
        """() => {
            const x = (name) => document
                .querySelector(`#workflow-graph g.step[data-step=${name}]`)
                ?.getBoundingClientRect().x;
            const both = [x("count"), x("total")];
            return both.every((value) => value !== undefined) ? both : null;
        }"""
    ).json_value()
    assert total_x > count_x, "a step is drawn right of what it depends on"
    expect(_step(page, "hello")).to_contain_text("[map]")
    dashboard.screenshot("running")
    page.evaluate("window.stillTheSamePage = true")

    # The page follows the run's events: every step reaches completed without a reload.
    for name in ("count", "total", "hello"):
        expect(_step(page, name)).to_have_attribute("data-status", "completed")
    expect(_step(page, "hello")).to_contain_text("2 completed")
    expect(page.locator("#workflow-status .status")).to_have_text("completed")
    expect(page.locator("#workflow-result")).to_contain_text('"total": 21')
    expect(page.locator("#cancel-workflow")).to_be_hidden()
    assert page.evaluate("window.stillTheSamePage") is True, "the page was reloaded"
    dashboard.screenshot("completed")

    # A step's box leads to its run.
    _step(page, "total").click()
    expect(page).to_have_url(re.compile(r"#/runs/[0-9a-f-]{36}$"))
    expect(page.locator("#run-result")).to_have_text("21")
    step_run = dashboard.server.api("GET", f"/runs/{page.url.rsplit('/', 1)[1]}")
    assert step_run["parent_id"] == run["id"]
    assert step_run["task"] == "adder"

    # The map step leads to the runs table, kept to this workflow's runs of that task.
    dashboard.open(f"#/workflows/{run['id']}")
    _step(page, "hello").click()
    expect(page).to_have_url(re.compile(r"#/runs\?parent_id="))
    expect(page.locator("#parent-filter")).to_contain_text(run["id"])
    expect(page.locator("#runs-table tbody tr[data-run]")).to_have_count(2)
    dashboard.screenshot("step-runs")
    page.locator("#clear-parent").click()
    expect(page.locator("#parent-filter")).to_be_hidden()
    expect(page).not_to_have_url(re.compile("parent_id"))

    # Rerun: a new workflow run, whose completed steps are reused.
    dashboard.open(f"#/workflows/{run['id']}")
    page.get_by_role("button", name="Rerun").click()
    expect(page).not_to_have_url(re.compile(re.escape(run["id"])))
    expect(page.locator("#workflow-status .status")).to_have_text("completed")
    rerun_id = page.url.rsplit("/", 1)[1]
    rerun = dashboard.server.api("GET", f"/workflows/{rerun_id}")
    assert rerun["run"]["result"]["reused"] == 4


def test_a_failed_step_shows_its_dependents_skipped(dashboard: Dashboard) -> None:
    page = dashboard.page
    run = dashboard.server.api("POST", "/workflows", json={"workflow": BROKEN})
    dashboard.open(f"#/workflows/{run['id']}")
    expect(_step(page, "boom")).to_have_attribute("data-status", "failed")
    expect(_step(page, "after_boom")).to_have_attribute("data-status", "skipped")
    expect(_step(page, "last")).to_have_attribute("data-status", "skipped")
    expect(_step(page, "alone")).to_have_attribute("data-status", "completed")
    expect(page.locator("#workflow-status .status")).to_have_text("failed")
    expect(page.locator("#steps-table tr[data-step=boom]")).to_contain_text("failed")
    dashboard.screenshot("failed")
    stored = dashboard.server.api("GET", f"/workflows/{run['id']}")
    assert {s["name"]: s["status"] for s in stored["steps"]} == {
        "boom": "failed",
        "after_boom": "skipped",
        "last": "skipped",
        "alone": "completed",
    }


def test_cancel_a_running_workflow(dashboard: Dashboard) -> None:
    page = dashboard.page
    slow = {"name": "slow", "steps": {"count": {"task": "slow_count", "inputs": {"n": 600}}}}
    run = dashboard.server.api("POST", "/workflows", json={"workflow": slow})
    dashboard.open(f"#/workflows/{run['id']}")
    expect(_step(page, "count")).to_have_attribute("data-status", "running")
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#workflow-status .status")).to_have_text("cancelled")
    expect(_step(page, "count")).to_have_attribute("data-status", "cancelled")
    assert dashboard.server.api("GET", f"/runs/{run['id']}")["status"] == "cancelled"


def test_the_example_workflow_launches_from_its_file(dashboard: Dashboard) -> None:
    dashboard.console.allow(REFUSED_WORKFLOW)
    page = dashboard.page
    dashboard.open("#/workflows")
    page.locator("#launch-workflow summary").click()

    # A step naming a task the server does not serve: the 422's message, and no run.
    page.fill("#workflow-text", "name: lost\nsteps:\n  gone:\n    task: no_such_task\n")
    before = dashboard.server.api("GET", "/runs", params={"task": "workflow:lost"})["runs"]
    page.get_by_role("button", name="Launch workflow").click()
    expect(page.locator("#workflow-errors")).to_contain_text("steps.gone")
    assert dashboard.server.api("GET", "/runs", params={"task": "workflow:lost"})["runs"] == before

    page.set_input_files("#workflow-file", str(EXAMPLES / "workflow.yaml"))
    expect(page.locator("#workflow-text")).to_have_value(re.compile(r"^# A workflow"))
    page.fill("#workflow-inputs", '{"n": 3}')
    page.get_by_role("button", name="Launch workflow").click()
    expect(page).to_have_url(re.compile(r"#/workflows/[0-9a-f-]{36}$"))
    expect(page.locator("#workflow-graph g.step")).to_have_count(4)
    expect(page.locator("#workflow-status .status")).to_have_text("completed")
    expect(page.locator("#workflow-result")).to_contain_text('"total": 103')
    dashboard.screenshot("example")

    # The list shows it, linked to its page.
    run_id = page.url.rsplit("/", 1)[1]
    dashboard.open("#/workflows")
    expect(page.locator(f"#workflows-table tr[data-run='{run_id}']")).to_contain_text("greetings")
    dashboard.screenshot("list")


def test_the_packages_page_lists_a_failed_install_with_its_log(dashboard: Dashboard) -> None:
    page = dashboard.page
    # A requirement pip cannot find, without an index: the install fails at once, offline.
    body = {"source": "no-such-dash-package==1.0", "pip_args": ["--no-index"]}
    added = dashboard.server.api("POST", "/packages", json=body)
    assert added["state"] in ("pending", "installing")
    dashboard.open("#/packages")
    row = page.locator("#packages-table tr[data-package=no-such-dash-package]")
    # The page polls while the install runs, until the package settles.
    expect(row.locator(".status")).to_have_text("failed")
    expect(page.locator("#add-package")).to_be_visible()  # no token needed: admin controls
    row.get_by_role("link", name="no-such-dash-package").click()
    expect(page).to_have_url(re.compile(r"#/packages\?package=no-such-dash-package$"))
    expect(page.locator("#package-log")).to_contain_text("no-such-dash-package==1.0")
    expect(page.locator("#package-failure")).to_contain_text("exited with 1")
    dashboard.screenshot("failed-package")

    # Reinstall runs the install again (and fails again); Remove forgets the package.
    first = dashboard.server.api("GET", "/packages/no-such-dash-package")["updated_at"]
    page.get_by_role("button", name="Reinstall").click()
    wait_until(
        lambda: dashboard.server.api("GET", "/packages/no-such-dash-package")["updated_at"] > first,
        what="the package installed again",
    )
    expect(page.locator("#package-state .status")).to_have_text("failed")
    page.get_by_role("button", name="Remove").click()
    expect(row).to_have_count(0)
    wait_until(
        lambda: dashboard.server.api("GET", "/packages") == [],
        what="the package removed from the server",
    )
