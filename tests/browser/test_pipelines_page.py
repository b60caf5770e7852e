"""The Pipelines page in headless Chromium against `taskloom serve examples/`: deploy a
served pipeline, watch its counts and rates move, publish (a refused value shows its
message), stop."""

from __future__ import annotations

import pytest
from browser_harness import Dashboard, wait_until

pytestmark = pytest.mark.timeout(90)


def _count(dashboard: Dashboard, stage: str, which: str) -> int:
    cell = dashboard.page.locator(f"#pipeline-stages tr[data-stage={stage}] td[data-count={which}]")
    return int(cell.inner_text())


def test_deploy_watch_the_counts_move_publish_and_stop(dashboard: Dashboard) -> None:
    from playwright.sync_api import expect

    page = dashboard.page
    # The refused publish below: the browser logs its 422.
    dashboard.console.allow(r"status of 422 .*/api/pipelines/ticking/topics/ticks")
    dashboard.open("#/pipelines")
    expect(page.locator("#nav a[aria-current=page]")).to_have_text("Pipelines")
    page.locator("#pipeline-choice").select_option("ticking")
    page.locator("#pipeline-deploy-button").click()
    row = page.locator("#pipelines-table tr[data-deployment=ticking]")
    expect(row.locator(".status")).to_have_text("running")
    stage = page.locator("#pipeline-stages tr[data-stage=running_total]")
    expect(stage).to_be_visible()
    # The server's process is the one part running it, with both stages.
    part = page.locator("#pipeline-parts tbody tr")
    expect(part).to_have_count(1)
    expect(part.locator("td").nth(3)).to_have_text("ticks, running_total")
    expect(part.locator(".status")).to_have_text("running")

    first = wait_until(lambda: _count(dashboard, "running_total", "in"), what="a first message")
    wait_until(lambda: _count(dashboard, "running_total", "in") > first, what="the count to move")
    # A rate once two snapshots are apart: ticks come every 0.2 s, so about 5/s.
    wait_until(
        lambda: stage.locator("td[data-rate=in]").inner_text() not in ("—", "0.0"),
        what="a message rate",
    )
    dashboard.screenshot("pipeline")

    # Follow the totals live: lines come as the stage publishes.
    page.locator("#tail-topic").select_option("totals")
    page.locator("#tail-follow").click()
    expect(page.locator("#tail-lines .line").nth(1)).to_be_visible()
    dashboard.screenshot("follow")

    page.locator("#publish-topic").select_option("ticks")
    page.locator("#publish-value").fill('"many"')
    page.locator("#publish-form").get_by_role("button", name="Publish").click()
    expect(page.locator("#publish-error")).to_contain_text("input 'value'")
    page.locator("#publish-value").fill("1000")
    page.locator("#publish-form").get_by_role("button", name="Publish").click()
    expect(page.locator("#publish-sent")).to_have_text("published to ticks")
    dashboard.screenshot("publish")

    row.get_by_role("button", name="Stop").click()
    expect(row.locator(".status")).to_have_text("stopped")
    assert dashboard.server.api("GET", "/pipelines/ticking")["state"] == "stopped"
