"""The Overview page in headless Chromium against a real `taskloom serve`: its chart's bars
count the runs that finished, in the buckets of their end; the totals, failure rate, tasks,
workers and services are right; runs that finish while it is open change it without a
reload, one read of `/api/stats` at a time however many events arrive; the window is kept
in the address; it reads again every 15 s and stops reading once it is left."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from typing import Any

import pytest
from browser_harness import Dashboard, Server
from playwright.sync_api import expect

pytestmark = pytest.mark.timeout(120)

#: Each bar of the chart as its data attributes say it.
BARS = """() => [...document.querySelectorAll("#overview-runs-chart g.bar")].map((bar) => ({
  start: Number(bar.dataset.start),
  completed: Number(bar.dataset.completed),
  failed: Number(bar.dataset.failed),
  cancelled: Number(bar.dataset.cancelled),
  total: Number(bar.dataset.total),
}))"""

#: When the page asked for `/api/stats` since a moment (of `performance.now()`), in ms, as
#: the page's resource timing says (Playwright's sync API reports requests only while it is
#: called, so times taken in the test would bunch up).
STATS_ASKED = """(since) => performance.getEntriesByType("resource")
  .filter((entry) => entry.name.includes("/api/stats") && entry.startTime >= since)
  .map((entry) => entry.startTime)"""

#: The page's throttle is 1.5 s; a timer never fires early, so this leaves a margin only for
#: the rounding of the two clocks.
SHORTEST_GAP_MS = 1400


def _finish(server: Server, task: str, inputs: dict[str, Any], count: int) -> list[dict[str, Any]]:
    """`count` runs of `task`, each waited for; returns them as they ended."""
    ended = []
    for _ in range(count):
        run = server.api("POST", "/runs", json={"task": task, "inputs": inputs})
        ended.append(server.api("GET", f"/runs/{run['id']}/wait", params={"timeout": 30}))
    return ended


def _bars(dashboard: Dashboard) -> list[dict[str, float]]:
    bars: list[dict[str, float]] = dashboard.page.evaluate(BARS)
    return bars


def _expect_bars_count(dashboard: Dashboard, runs: list[dict[str, Any]]) -> None:
    """Each run is counted in the bar whose bucket holds its `finished_at`, and nowhere else."""
    page = dashboard.page
    seconds = float(page.locator("#overview-runs-chart").get_attribute("data-bucket-seconds") or 0)
    assert seconds > 0
    bars = _bars(dashboard)
    starts = [bar["start"] for bar in bars]
    assert starts == sorted(starts)
    assert all(b - a == seconds for a, b in itertools.pairwise(starts))
    expected: Counter[tuple[float, str]] = Counter()
    for run in runs:
        (start,) = [s for s in starts if s <= run["finished_at"] < s + seconds]
        expected[start, run["status"]] += 1
    drawn = Counter(
        {
            (bar["start"], status): int(bar[status])
            for bar in bars
            for status in ("completed", "failed", "cancelled")
            if bar[status]
        }
    )
    assert drawn == expected
    assert all(bar["total"] == bar["completed"] + bar["failed"] + bar["cancelled"] for bar in bars)


def _total(dashboard: Dashboard, key: str) -> Any:
    return dashboard.page.locator(f'#overview-totals [data-total="{key}"] .tile-value')


def _expect_totals(dashboard: Dashboard, completed: int, failed: int) -> None:
    finished = completed + failed
    expect(_total(dashboard, "finished")).to_have_text(str(finished))
    expect(_total(dashboard, "completed")).to_have_text(str(completed))
    expect(_total(dashboard, "failed")).to_have_text(str(failed))
    expect(_total(dashboard, "cancelled")).to_have_text("0")
    expect(_total(dashboard, "failure-rate")).to_have_text(f"{failed / finished * 100:.1f} %")


def test_the_overview_counts_the_runs_and_follows_new_ones_live(dashboard: Dashboard) -> None:
    server = dashboard.server
    page = dashboard.page
    runs = _finish(server, "adder", {"a": 1, "b": 2}, 5) + _finish(
        server, "fail", {"message": "on purpose"}, 3
    )
    assert Counter(run["status"] for run in runs) == {"completed": 5, "failed": 3}

    dashboard.open("#/")
    expect(page.locator("#nav a").first).to_have_text("Overview")
    expect(page.locator("#nav a[aria-current=page]")).to_have_text("Overview")
    expect(page.locator(".segmented button[aria-pressed=true]")).to_have_text("1h")
    _expect_totals(dashboard, completed=5, failed=3)
    expect(page.locator('#overview-now [data-total="pending"] .tile-value')).to_have_text("0")
    expect(page.locator('#overview-now [data-total="running"] .tile-value')).to_have_text("0")
    chart = page.locator("#overview-runs-chart")
    expect(chart).to_have_attribute("data-bucket-seconds", "60")
    assert len(_bars(dashboard)) in (60, 61)  # [since, until) of an hour in minutes
    _expect_bars_count(dashboard, runs)

    # The chart says what it shows in words, and each bar its counts and time.
    expect(chart).to_have_attribute("role", "img")
    label_ids = (chart.get_attribute("aria-labelledby") or "").split()
    assert len(label_ids) == 2
    expect(page.locator(f"#{label_ids[0]}")).to_contain_text("in the last hour")
    expect(page.locator(f"#{label_ids[1]}")).to_contain_text(
        "8 runs finished: 5 completed, 3 failed, 0 cancelled"
    )
    busiest = chart.locator("g.bar:not([data-total='0'])").first
    span = r"\d\d:\d\d\u2013\d\d:\d\d"  # "14:03", an en dash, "14:04"
    expect(busiest.locator("title")).to_have_text(re.compile(span + r": \d+ completed"))
    expect(page.locator("#overview-buckets tbody tr").first).to_be_attached()

    # Per task: runs, failures and durations; the most failing task is `fail`.
    adder = page.locator('#overview-durations tr[data-task="adder"]')
    expect(adder.locator(".runs")).to_have_text("5")
    expect(adder.locator(".failed")).to_have_text("0")
    failing = page.locator('#overview-durations tr[data-task="fail"]')
    expect(failing.locator(".runs")).to_have_text("3")
    expect(failing.locator(".failed")).to_have_text("3")
    p50 = float(adder.get_attribute("data-p50") or "nan")
    p95 = float(adder.get_attribute("data-p95") or "nan")
    assert 0 < p50 <= p95
    expect(page.locator("#overview-failing li").first).to_have_attribute("data-task", "fail")
    expect(page.locator("#overview-failing li").first).to_contain_text("3 failed")
    expect(page.locator("#overview-slowest li[data-task]")).to_have_count(2)

    # Workers and services at a glance, leading to their pages.
    (worker,) = server.api("GET", "/workers")
    expect(page.locator('#overview-workers [data-count="alive"]')).to_have_text("1")
    expect(page.locator(f'#overview-workers li[data-worker="{worker["id"]}"] a')).to_have_attribute(
        "href", "#/workers"
    )
    services = {service["name"]: service["state"] for service in server.api("GET", "/services")}
    assert set(services) == {"read_sensor", "heartbeat"}
    for name, state in services.items():
        item = page.locator(f'#overview-services li[data-service="{name}"]')
        expect(item.locator("a")).to_have_attribute("href", f"#/services?service={name}")
        expect(item.locator(".status")).to_have_text(state)
    dashboard.screenshot("light")

    # More runs end while the page is open: it follows them without a reload, asking for
    # the stats again at most once every 1.5 s however many run events arrive.
    page.evaluate("window.stillTheSamePage = true")
    page.evaluate("performance.setResourceTimingBufferSize(10000)")
    since = page.evaluate("performance.now()")
    runs += _finish(server, "adder", {"a": 2, "b": 3}, 12)
    runs += _finish(server, "fail", {"message": "again"}, 4)
    _expect_totals(dashboard, completed=17, failed=7)
    page.wait_for_function(f"() => ({BARS})().reduce((sum, bar) => sum + bar.total, 0) === 24")
    _expect_bars_count(dashboard, runs)
    expect(page.locator('#overview-durations tr[data-task="adder"] .runs')).to_have_text("17")
    assert page.evaluate("window.stillTheSamePage") is True, "the page was reloaded"
    asked: list[float] = page.evaluate(STATS_ASKED, since)
    # Read again for those events (the totals above came from such reads): once, when
    # they all came within one throttle period, more often when they took longer.
    assert len(asked) >= 1, asked
    gaps = [later - earlier for earlier, later in itertools.pairwise(sorted(asked))]
    assert min(gaps, default=SHORTEST_GAP_MS) >= SHORTEST_GAP_MS, gaps


def test_the_window_is_chosen_on_the_page_and_kept_in_the_address(dashboard: Dashboard) -> None:
    page = dashboard.page
    finished = dashboard.server.api("GET", "/stats", params={"window": "1d"})["totals"]["finished"]
    assert finished > 0  # the runs of the test before
    dashboard.open("#/")
    expect(_total(dashboard, "finished")).to_have_text(str(finished))
    page.locator(".segmented button[data-window='1d']").click()
    expect(page).to_have_url(re.compile(r"#/\?window=1d$"))
    expect(page.locator(".segmented button[aria-pressed=true]")).to_have_text("1d")
    chart = page.locator("#overview-runs-chart")
    expect(chart).to_have_attribute("data-bucket-seconds", "900")
    expect(page.locator("#overview-runs h2")).to_have_text("Runs per 15 minutes by status")
    expect(_total(dashboard, "finished")).to_have_text(str(finished))
    assert sum(bar["total"] for bar in _bars(dashboard)) == finished

    # The address alone says the window: opened again, the page shows the same one.
    dashboard.open("#/?window=7d")
    expect(page.locator(".segmented button[aria-pressed=true]")).to_have_text("7d")
    expect(chart).to_have_attribute("data-bucket-seconds", "3600")
    page.emulate_media(color_scheme="dark")
    try:
        expect(page.locator("body")).to_have_css("background-color", "rgb(22, 24, 27)")
        dashboard.screenshot("dark-7d")
        dashboard.open("#/?window=6h")
        expect(chart).to_have_attribute("data-bucket-seconds", "300")
        dashboard.screenshot("dark")
    finally:
        page.emulate_media(color_scheme="light")

    # A window the API does not know is not asked for: the page shows its default.
    dashboard.open("#/?window=2h")
    expect(page.locator(".segmented button[aria-pressed=true]")).to_have_text("1h")
    expect(chart).to_have_attribute("data-bucket-seconds", "60")


def test_the_page_fits_a_narrow_screen(dashboard: Dashboard) -> None:
    page = dashboard.page
    page.set_viewport_size({"width": 400, "height": 800})
    dashboard.open("#/")
    chart = page.locator("#overview-runs-chart")
    expect(chart).to_be_visible()
    page.wait_for_function(
        "() => Number(document.querySelector('#overview-runs-chart').getAttribute('width')) <= 400"
    )
    # Nothing is wider than the screen: the page does not scroll sideways.
    assert page.evaluate("document.documentElement.scrollWidth") <= 400
    expect(_total(dashboard, "finished")).to_be_visible()
    dashboard.screenshot("narrow")


def test_the_old_landing_page_keeps_its_address(dashboard: Dashboard) -> None:
    page = dashboard.page
    dashboard.open("#/tasks")
    expect(page.locator(".task-list a[data-task=adder]")).to_be_visible()
    page.locator(".brand").click()
    expect(page).to_have_url(re.compile(r"#/$"))
    expect(page.locator("#overview-runs-chart")).to_be_visible()


# Last in the module: the fake clock stays installed in the browser context once it is.
def test_it_reads_again_every_15_seconds_and_stops_when_left(dashboard: Dashboard) -> None:
    page = dashboard.page
    page.clock.install()
    dashboard.open("#/")
    expect(page.locator("#overview-runs-chart")).to_be_visible()
    with page.expect_request(lambda request: "/api/workers" in request.url):
        page.clock.fast_forward(3_500)
    with page.expect_request(lambda request: "/api/stats" in request.url):
        page.clock.fast_forward(16_000)

    page.locator("#nav a", has_text="Runs").click()
    expect(page.locator("#runs-table")).to_be_visible()
    asked: list[str] = []
    page.on(
        "request",
        lambda request: (
            asked.append(request.url)
            if re.search(r"/api/(stats|workers|services)", request.url)
            else None
        ),
    )
    # A run event reaches the page (the runs table shows the run) and a minute passes:
    # the Overview's timers and its event handler are gone, so nothing is asked for.
    (run,) = _finish(dashboard.server, "adder", {"a": 3, "b": 4}, 1)
    expect(page.locator(f'#runs-table tr[data-run="{run["id"]}"]')).to_be_visible()
    page.clock.fast_forward(60_000)
    # Requests are reported in the order they are made: one made now comes after any a
    # timer that fired during the minute would have made.
    with page.expect_request(lambda request: "/api/health" in request.url):
        page.evaluate("fetch('/api/health')")
    assert asked == []
