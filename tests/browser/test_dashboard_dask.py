"""`taskloom serve --dask ADDRESS` in headless Chromium: a run whose call is made on a
real Dask cluster (a `dask scheduler` and a `dask worker` process) shows its log lines and
progress on its page while it runs, and its attempt names the executor that made the call,
linking the Dask dashboard when one is known."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_harness import Dashboard, Server, served_folder, serving
from playwright.sync_api import expect

from dask_support import DaskCluster, running_cluster
from support import HELPERS
from taskloom.runs import Attempt, Run, RunStatus, new_run_id
from taskloom.store import WriteBatch, open_store

pytestmark = pytest.mark.timeout(180)

#: The first call of a fresh Dask worker imports the tasks' module there.
FIRST_CALL = 60_000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    """A scheduler and one worker, which import the tasks from `tests/helpers`."""
    with running_cluster(tmp_path_factory.mktemp("dask"), workers=1, threads=2) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, cluster: DaskCluster
) -> Iterator[tuple[Server, Path, str]]:
    """`taskloom serve ... dask_tasks.py --dask ADDRESS`, its folder and its database."""
    folder = tmp_path_factory.mktemp("serve-dask")
    database_url = served_folder(folder)
    shutil.copy(HELPERS / "dask_tasks.py", folder / "dask_tasks.py")
    with serving(folder, "dask_tasks.py", "--dask", cluster.address) as running:
        yield running, folder, database_url


@pytest.fixture(scope="module")
def server(served: tuple[Server, Path, str]) -> Server:
    return served[0]


def test_a_dask_run_shows_its_lines_and_progress_while_it_runs(
    dashboard: Dashboard, served: tuple[Server, Path, str], cluster: DaskCluster
) -> None:
    server, folder, _ = served
    page = dashboard.page
    release = folder / "release"
    run = server.api("POST", "/runs", json={"task": "chatty", "inputs": {"release": str(release)}})
    dashboard.open(f"#/runs/{run['id']}")
    status = page.locator("#run-status .status")
    logs = page.locator("#run-logs")
    try:
        (dask_worker,) = cluster.workers
        expect(logs).to_contain_text(f"started on process {dask_worker.pid}", timeout=FIRST_CALL)
        expect(logs).to_contain_text("a line through the logging module")
        expect(page.locator("#run-progress")).to_contain_text("50% · half way")
        # The call is still waiting for its release: all of this came while it runs.
        expect(status).to_have_text("running")
        assert server.api("GET", f"/runs/{run['id']}")["status"] == "running"
        (recorded,) = server.api("GET", f"/runs/{run['id']}/attempts")
        assert recorded["executor"] == f"dask {cluster.address}"
        attempt = page.locator("#run-attempts li")
        expect(attempt).to_have_count(1)
        expect(attempt.locator(".attempt-executor")).to_contain_text(
            f"executor dask {cluster.address}"
        )
        # The link is the address Dask gave the engine, if it gave one (a scheduler
        # without bokeh reports its HTTP server's); the next test links one for sure.
        link = attempt.get_by_role("link", name="Dask dashboard")
        expect(link).to_have_count(1 if recorded["dashboard"] else 0)
        if recorded["dashboard"]:
            expect(link).to_have_attribute("href", recorded["dashboard"])
        dashboard.screenshot("running-on-dask")
    finally:
        release.touch()
    expect(status).to_have_text("completed")
    expect(page.locator("#run-result")).to_have_text(json.dumps("released"))
    expect(page.locator("#run-attempts .attempt-executor")).to_contain_text(
        f"executor dask {cluster.address}"
    )
    dashboard.screenshot("completed-on-dask")


def test_an_attempt_links_the_dask_dashboard_when_it_is_known(
    dashboard: Dashboard, served: tuple[Server, Path, str], cluster: DaskCluster
) -> None:
    # An attempt as an engine on a scheduler that serves a dashboard records it.
    _, _, database_url = served
    board = "http://127.0.0.1:8787/status"
    now = time.time()
    run = Run(
        id=new_run_id(),
        task="chatty",
        inputs={"release": "released-already"},
        status=RunStatus.COMPLETED,
        result="released",
        attempts=1,
        created_at=now,
        started_at=now,
        finished_at=now + 0.5,
    )
    executor = f"dask {cluster.address}"
    attempt = Attempt(run.id, 1, now, now + 0.5, "completed", executor=executor, dashboard=board)
    store = open_store(database_url)
    try:
        store.write(WriteBatch(new_runs=[run], new_attempts=[attempt]))
    finally:
        store.close()
    page = dashboard.page
    dashboard.open(f"#/runs/{run.id}")
    expect(page.locator("#run-status .status")).to_have_text("completed")
    shown = page.locator("#run-attempts .attempt-executor")
    expect(shown).to_have_text(f"executor {executor} · Dask dashboard")
    link = shown.get_by_role("link", name="Dask dashboard")
    expect(link).to_have_attribute("href", board)
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", "noopener")
    dashboard.screenshot("dask-dashboard-link")
