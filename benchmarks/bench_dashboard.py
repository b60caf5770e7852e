"""The dashboard's runs page with 1,000,000 runs in the store, in headless Chromium.

    python benchmarks/bench_dashboard.py [--runs 1000000] [--samples 100]

The store is filled as in `bench_api.py` (10 tasks, 5% failed) and served by a real
`taskloom serve`. In Debian's Chromium (`/usr/bin/chromium`), the runs page of one task
switches its status filter between `completed` and `failed`, timed from the choice until
the table shows the new page; the baseline is the same API call
made with `fetch` from the same page, so the ratio is what the dashboard adds to the API.
A full load of the page (HTML, modules, first page of runs) is timed too.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from _common import machine, report, start_serve
from bench_api import SERVED, fill

from taskloom.store import open_store

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADDRESS = "#/runs?task=task_3&status=failed"
STATUSES = ("completed", "failed")

# Runs in the page: choose a status in the filter, as a person does, and stop the clock at
# the first change of the page after which the table's first row has that status. Milliseconds.
SWITCH = """(status) => new Promise((resolve) => {
  const select = document.querySelector("select[name=status]");
  const start = performance.now();
  const drawn = () => {
    const badge = document.querySelector("#runs-table tbody tr[data-run] .status");
    return badge !== null && badge.textContent === status;
  };
  const observer = new MutationObserver(() => {
    if (drawn()) {
      observer.disconnect();
      resolve(performance.now() - start);
    }
  });
  observer.observe(document.getElementById("page"), { childList: true, subtree: true });
  select.value = status;
  select.dispatchEvent(new Event("change"));
})"""

FETCH = """async (query) => {
  const start = performance.now();
  const response = await fetch(`/api/runs?${query}`);
  const body = await response.json();
  if (!body.runs.length) throw new Error("no runs");
  return performance.now() - start;
}"""


def summary(samples_ms: list[float]) -> str:
    ordered = sorted(samples_ms)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"p50 {statistics.median(ordered):6.2f} ms, p95 {p95:6.2f} ms"


def main(n: int, samples: int) -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="taskloom-bench-") as name:
        folder = Path(name)
        database = folder / "dashboard.db"
        open_store(f"sqlite:///{database}").close()  # creates and migrates the file
        fill_seconds = fill(database, n)
        (folder / "served.py").write_text(SERVED, encoding="utf-8")
        process, url = start_serve(folder, database)
        profile = tempfile.mkdtemp(prefix="taskloom-chromium-")
        try:
            with sync_playwright() as playwright:
                context = playwright.chromium.launch_persistent_context(
                    profile, executable_path=CHROMIUM, args=ARGS, headless=True
                )
                page = context.new_page()
                page.goto(f"{url}/{ADDRESS}")
                page.wait_for_selector("#runs-table tbody tr[data-run]")

                for i in range(10):  # warm up
                    page.evaluate(SWITCH, STATUSES[i % 2])
                switches = [page.evaluate(SWITCH, STATUSES[i % 2]) for i in range(samples)]
                fetches = [
                    page.evaluate(FETCH, f"task=task_3&status={STATUSES[i % 2]}&limit=25")
                    for i in range(samples)
                ]

                loads = []
                first_row = "#runs-table tbody tr[data-run] td:nth-child(2):text-is('task_3')"
                for _ in range(max(5, samples // 10)):
                    page.goto("about:blank")
                    start = time.perf_counter()
                    page.goto(f"{url}/{ADDRESS}")
                    page.wait_for_selector(first_row)
                    loads.append((time.perf_counter() - start) * 1e3)
                context.close()
        finally:
            shutil.rmtree(profile, ignore_errors=True)
            process.terminate()
            process.wait(timeout=30)

    ratio = statistics.median(switches) / statistics.median(fetches)
    report(
        "the dashboard's runs page, a filtered page of 25 runs",
        {
            "machine": machine(),
            "runs in the store": f"{n:,} (bulk insert {fill_seconds:.1f} s)",
            "API call from the page (baseline)": summary(fetches),
            "filter change to table drawn": summary(switches),
            "dashboard / API call (p50)": f"{ratio:.2f}x",
            "full page load to first rows": summary(loads),
        },
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=100)
    args = parser.parse_args()
    main(args.runs, args.samples)
