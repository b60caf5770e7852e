"""The dashboard's workflow page drawing a large workflow's graph, in headless Chromium.

    python benchmarks/bench_dashboard_workflow.py [--steps 500] [--samples 30]

A workflow of N no-op steps in layers of 10 (each step takes the result of one step of the
layer before, so the graph is N / 10 columns deep) runs to its end on a real `taskloom
serve`. In Debian's Chromium (`/usr/bin/chromium`), the page is switched between the
workflows list and that workflow run, timed from the address change until the graph shows
its N boxes. The baseline is the same API call (`GET /api/workflows/{id}`) made with
`fetch` from the same page, so the ratio is what drawing the graph adds to reading it.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

import httpx
from _common import machine, report, start_serve
from bench_api_workflows import SERVED
from bench_dashboard import ARGS, CHROMIUM, summary

WIDTH = 10

# Runs in the page: move to the workflow's address and stop the clock at the first change
# of the page after which the graph holds every step. Milliseconds.
OPEN = """([id, steps]) => new Promise((resolve) => {
  const start = performance.now();
  const drawn = () => document.querySelectorAll("#workflow-graph g.step").length === steps;
  const observer = new MutationObserver(() => {
    if (drawn()) {
      observer.disconnect();
      resolve(performance.now() - start);
    }
  });
  observer.observe(document.getElementById("page"), { childList: true, subtree: true });
  window.location.hash = `#/workflows/${id}`;
})"""

FETCH = """async (id) => {
  const start = performance.now();
  const response = await fetch(`/api/workflows/${id}`);
  const body = await response.json();
  if (!body.steps.length) throw new Error("no steps");
  return performance.now() - start;
}"""


def layered(n: int) -> dict[str, Any]:
    steps: dict[str, Any] = {}
    for index in range(n):
        if index < WIDTH:
            steps[f"s{index}"] = {"task": "step", "inputs": {"x": index}}
        else:
            source = f"s{index - WIDTH}"
            steps[f"s{index}"] = {"task": "step", "inputs": {"x": f"${{steps.{source}.result}}"}}
    return {"name": "layers", "steps": steps}


def main(n: int, samples: int) -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="taskloom-bench-") as name:
        folder = Path(name)
        (folder / "served.py").write_text(SERVED, encoding="utf-8")
        process, url = start_serve(folder, folder / "api.db")
        profile = tempfile.mkdtemp(prefix="taskloom-chromium-")
        try:
            api = f"{url.rstrip('/')}/api"
            run = httpx.post(f"{api}/workflows", json={"workflow": layered(n)}, timeout=60)
            run.raise_for_status()
            run_id = run.json()["id"]
            while True:  # a wait lasts at most 60 s: ask again until the run has ended
                ended = httpx.get(f"{api}/runs/{run_id}/wait", params={"timeout": 60}, timeout=70)
                if ended.status_code != 408:
                    break
            assert ended.json()["status"] == "completed", ended.text
            with sync_playwright() as playwright:
                context = playwright.chromium.launch_persistent_context(
                    profile, executable_path=CHROMIUM, args=ARGS, headless=True
                )
                page = context.new_page()
                page.goto(f"{url.rstrip('/')}/#/workflows")
                page.wait_for_selector("#workflows-table tbody tr[data-run]")

                opens = []
                for i in range(samples + 5):
                    page.evaluate("() => { window.location.hash = '#/workflows'; }")
                    page.wait_for_selector("#workflows-table tbody tr[data-run]")
                    took = page.evaluate(OPEN, [run_id, n])
                    if i >= 5:  # the first ones warm up
                        opens.append(took)
                fetches = [page.evaluate(FETCH, run_id) for _ in range(samples)]
                context.close()
        finally:
            shutil.rmtree(profile, ignore_errors=True)
            process.terminate()
            process.wait(timeout=30)

    ratio = statistics.median(opens) / statistics.median(fetches)
    report(
        f"the dashboard's workflow page, a {n}-step graph",
        {
            "machine": machine(),
            "workflow": f"{n} steps in layers of {WIDTH} ({n // WIDTH} columns)",
            "API call from the page (baseline)": summary(fetches),
            "address change to graph drawn": summary(opens),
            "dashboard / API call (p50)": f"{ratio:.2f}x",
        },
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()
    main(args.steps, args.samples)
