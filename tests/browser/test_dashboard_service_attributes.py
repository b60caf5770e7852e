"""The live attributes of a service class on its loop's page, in a real Chromium against a
real `taskloom serve`: a form made from their schema, values set there change the running
loop's pace within one period (measured from the times of the lines it logs), an invalid
value is refused next to its field, and a change made elsewhere shows without a reload."""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest
from browser_harness import Dashboard, Server, served_folder, serving, wait_until

from support import load_helper

pytestmark = pytest.mark.timeout(90)

guide = load_helper("pydase_guide")

LOOP = "SensorService.read_sensor_data"
#: How late past the old period the loop may read the new value on a busy machine.
SLACK = 0.25


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`taskloom serve examples/ form_tasks.py paced.py`: the dashboard's usual files and
    pydase's `SensorService`, paced by its frequency and logging each reading."""
    folder = tmp_path_factory.mktemp("serve")
    served_folder(folder)
    guide.write(folder, "paced", guide.PACED_SENSOR_SERVICE)
    with serving(folder, "paced.py") as running:
        yield running


def readings(server: Server, hz: float, since: float) -> list[float]:
    """When the loop logged a reading at `hz` from `since` on, oldest first."""
    times: list[float] = []
    after = 0
    while True:
        page: dict[str, Any] = server.api("GET", f"/services/{LOOP}/logs?after_id={after}")
        for line in page["lines"]:
            if line["created_at"] >= since and line["message"].endswith(f"at {hz} Hz"):
                times.append(line["created_at"])
        if len(page["lines"]) < 1000:
            return times
        after = page["next_after_id"]


def set_here(server: Server, hz: float) -> float:
    """Wait until the server holds `hz` (set from the page); return when it was seen."""
    wait_until(
        lambda: (
            server.api("GET", "/services/SensorService/attributes")["values"]["readout_frequency"]
            == hz
        ),
        what=f"readout_frequency {hz}",
    )
    return time.time()


def assert_paced(server: Server, hz: float, *, since: float, done: float, old: float) -> None:
    def six() -> list[float]:
        found = readings(server, hz, since)
        return found[:6] if len(found) >= 6 else []

    times = wait_until(six, 20, what=f"six readings at {hz} Hz")
    assert times[0] - done <= old + SLACK, f"read {times[0] - done:.3f} s after the change"
    intervals = [b - a for a, b in itertools.pairwise(times)]
    assert min(intervals) >= 0.9 / hz, intervals
    assert statistics.median(intervals) <= 1 / hz + 0.1, intervals


def test_the_attributes_form_sets_the_frequency_of_the_running_loop(
    dashboard: Dashboard,
) -> None:
    server, page = dashboard.server, dashboard.page
    from playwright.sync_api import expect

    dashboard.open(f"#/services?service={LOOP}")
    form = page.locator("#service-attributes-form")
    frequency = form.locator("#attribute-readout_frequency")
    expect(frequency).to_have_value("5")
    expect(page.locator("#service-attributes h3")).to_have_text("Attributes of SensorService")
    expect(page.locator("#service-config")).to_have_text("none")
    expect(page.locator("#service-state .status")).to_have_text("running")
    starts = server.api("GET", f"/services/{LOOP}")["starts"]

    since = time.time()
    frequency.fill("20")
    form.get_by_role("button", name="Set").click()
    done = set_here(server, 20.0)
    assert_paced(server, 20.0, since=since, done=done, old=0.2)
    expect(page.locator("#service-attributes-updated")).to_contain_text(
        "readout_frequency set by http"
    )
    dashboard.screenshot("attributes")

    # An invalid value is refused next to its field, and nothing is set.
    dashboard.console.allow(r"422")
    frequency.fill("fast")
    form.get_by_role("button", name="Set").click()
    message = form.locator("#attribute-readout_frequency-message")
    expect(message).to_have_text("expected a number, got 'fast'")
    values = server.api("GET", "/services/SensorService/attributes")["values"]
    assert values["readout_frequency"] == 20.0
    dashboard.screenshot("attributes-invalid")

    # Set elsewhere (the API here), the new value shows without a reload.
    page.reload()  # a fresh form: no field edited, each follows the live value
    expect(frequency).to_have_value("20")
    since = time.time()
    server.api("PATCH", "/services/SensorService/attributes", json={"readout_frequency": 8.0})
    expect(frequency).to_have_value("8")
    assert_paced(server, 8.0, since=since, done=time.time(), old=0.05)
    # The loop's own counter shows live too.
    readings_field = form.locator("#attribute-readings")
    first = int(readings_field.input_value())
    expect(readings_field).not_to_have_value(str(first))
    assert server.api("GET", f"/services/{LOOP}")["starts"] == starts  # never restarted


def test_the_page_of_a_service_shows_its_running_config(dashboard: Dashboard) -> None:
    server, page = dashboard.server, dashboard.page
    from playwright.sync_api import expect

    server.api("POST", "/services/read_sensor/restart", json={"config": {"period": 0.5}})
    dashboard.open("#/services?service=read_sensor")
    expect(page.locator("#service-config")).to_have_text('{"period":0.5,"channel":"a"}')
    assert page.locator("#service-attributes").count() == 0
