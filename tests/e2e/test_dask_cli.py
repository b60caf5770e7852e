"""`taskloom worker --dask ADDRESS` as a real process, on a Dask cluster of real processes
(a `dask scheduler` and a `dask worker`): `taskloom show` prints what a Dask-executed run
logged and reported while it is still running, and the executor of its attempt; a
scheduler nobody listens for stops the worker with one line naming its address."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from test_worker_cli import wait_for_line

from dask_support import DaskCluster, running_cluster
from support import HELPERS, wait_until
from taskloom.runs import Run
from taskloom.store import open_store

if TYPE_CHECKING:
    from conftest import Cli

pytestmark = pytest.mark.timeout(180)

#: The first call of a fresh Dask worker imports the tasks' module there.
FIRST_CALL = 60.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[DaskCluster]:
    """A scheduler and one worker, which import the tasks from `tests/helpers`."""
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    with running_cluster(logs, workers=1, threads=2) as cluster:
        yield cluster


@pytest.fixture
def dask_tasks(cli: Cli) -> str:
    """`dask_tasks.py` in the CLI's folder, as a user's tasks file is."""
    shutil.copy(HELPERS / "dask_tasks.py", cli.cwd / "dask_tasks.py")
    return "dask_tasks.py"


def test_show_prints_the_lines_and_progress_of_a_dask_run_while_it_runs(
    cli: Cli, cluster: DaskCluster, dask_tasks: str
) -> None:
    worker = cli.start("worker", dask_tasks, "--db", cli.database_url, "--dask", cluster.address)
    announced = wait_for_line(worker, "calls of dask tasks go to", timeout=60)
    assert cluster.address in announced
    release = cli.cwd / "release"
    submitted = cli("run", f"{dask_tasks}:chatty", f"release={release}", "--no-wait")
    assert submitted.returncode == 0, submitted.stderr
    run_id = submitted.stdout.strip()

    store = open_store(cli.database_url)
    try:

        def reported() -> Run | None:
            run = store.get_run(run_id)
            lines = store.get_logs(run_id)
            return run if run is not None and run.progress == 0.5 and len(lines) >= 2 else None

        during = wait_until(reported, FIRST_CALL, what="the run's lines and progress")
        assert during.status == "running"  # the call waits for its release file
        shown = cli("show", run_id)
        assert shown.returncode == 0, shown.stderr
        text = shown.stdout
        (dask_worker,) = cluster.workers
        assert f"started on process {dask_worker.pid}" in text
        assert "a line through the logging module" in text
        assert "50%  half way" in text
        assert any(line.split() == ["status", "running"] for line in text.splitlines()), text
        assert f"executor  dask {cluster.address}" in text

        release.touch()
        wait_until(
            lambda: (run := store.get_run(run_id)) is not None and run.is_finished,
            FIRST_CALL,
            what="the run's end",
        )
    finally:
        store.close()
    ended = cli.json("show", run_id, "--json")
    assert (ended["run"]["status"], ended["run"]["result"]) == ("completed", "released")
    (attempt,) = ended["attempts"]
    assert attempt["executor"] == f"dask {cluster.address}"
    assert {line["message"] for line in ended["logs"]} >= {
        f"started on process {dask_worker.pid}",
        "a line through the logging module",
    }


def test_a_scheduler_nobody_listens_for_exits_2_in_one_line_naming_it(
    cli: Cli, dask_tasks: str, tmp_path: Path
) -> None:
    nobody = DaskCluster(tmp_path)  # a free port, and no scheduler on it
    # The worker waits for the scheduler for 10 s (`CONNECT_TIMEOUT`) before it gives up.
    result = cli("worker", dask_tasks, "--dask", nobody.address, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: cannot reach the Dask scheduler at {nobody.address}")
    assert not (cli.cwd / "taskloom.db").exists()  # stopped before anything was made
    assert result.stdout == ""
