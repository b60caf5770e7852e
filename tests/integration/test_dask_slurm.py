"""`executor="dask"` on SLURM: a `dask_jobqueue.SLURMCluster` given to `Engine(dask=...)`.

A single-node Slurm of the test's own (munged, slurmctld and slurmd from Debian's
`slurm-wlm`) takes the cluster's `sbatch` jobs; each job runs a Dask worker that connects
back to the scheduler the cluster holds in this process. A map's calls are made in those
jobs and recorded by the engine, in item order. Skipped when Slurm is not installed,
except under `CI=true`, where that is a failure.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import dask
import pytest
from dask_jobqueue.slurm import SLURMCluster

from slurm_support import SingleNodeSlurm, missing_programs
from support import HELPERS, load_helper, until
from taskloom import Engine, Workflow

pytestmark = pytest.mark.timeout(180)

dask_tasks = load_helper("dask_tasks")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SingleNodeSlurm]:
    """A controller and one node of two CPUs, for the module's tests."""
    missing = missing_programs()
    if missing:
        reason = (
            f"Slurm is not installed (no {', '.join(missing)} on PATH); "
            "on Debian: apt-get install slurmctld slurmd slurm-client munge"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI needs it (.ci/run installs it)")
        pytest.skip(reason)
    cluster = SingleNodeSlurm(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def slurm_commands(slurm: SingleNodeSlurm, monkeypatch: pytest.MonkeyPatch) -> SingleNodeSlurm:
    """The Slurm of the tests, which `sbatch` and `scancel` of this process reach."""
    for name, value in slurm.environment.items():
        monkeypatch.setenv(name, value)
    return slurm


def slurm_cluster_options(tmp_path: Path) -> dict[str, Any]:
    """The settings of the how-to's recipe, sized for the node of the tests."""
    return {
        "cores": 1,  # threads of the Dask worker in each job
        "processes": 1,
        "memory": "512MiB",
        "walltime": "00:10:00",
        "python": sys.executable,  # the same environment as the engine's, taskloom in it
        # The workers import the tasks' module by name: put its folder on their path.
        "job_script_prologue": [f"export PYTHONPATH={HELPERS}${{PYTHONPATH:+:$PYTHONPATH}}"],
        "log_directory": str(tmp_path / "jobs"),
        "local_directory": str(tmp_path / "scratch"),
        # The jobs run on this machine; a free port for the dashboard (8787 may be taken).
        "scheduler_options": {"host": "127.0.0.1", "dashboard_address": ":0"},
    }


async def close(cluster: SLURMCluster) -> None:
    closing = cluster.close()  # an awaitable: the cluster is asynchronous
    assert closing is not None
    await closing


@pytest.fixture
async def slurm_dask(
    slurm_commands: SingleNodeSlurm, tmp_path: Path
) -> AsyncIterator[SLURMCluster]:
    """A SLURMCluster of two jobs, their workers connected; closing it cancels the jobs."""
    # The scheduler gives a call up when its worker dies: taskloom retries it, on record.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = await SLURMCluster(asynchronous=True, **slurm_cluster_options(tmp_path))
    try:
        cluster.scale(jobs=2)  # type: ignore[no-untyped-call]
        scheduler = cluster.scheduler
        assert scheduler is not None

        async def both_workers() -> bool:
            return len(scheduler.workers) == 2

        try:
            await until(both_workers, timeout=90, interval=0.1)
        except pytest.fail.Exception:
            jobs = sorted((tmp_path / "jobs").glob("*"))
            seen = "\n".join(f"--- {path.name}\n{path.read_text()[-2000:]}" for path in jobs)
            pytest.fail(
                f"the workers of two SLURM jobs did not connect:\n{seen}\n{slurm_commands.logs()}"
            )
        yield cluster
    finally:
        await close(cluster)


async def test_a_map_runs_its_calls_in_two_slurm_jobs_in_item_order(
    slurm_dask: SLURMCluster, slurm_commands: SingleNodeSlurm, tmp_path: Path
) -> None:
    cluster = slurm_dask
    assert cluster.scheduler is not None
    assert cluster.scheduler.allowed_failures == 0
    script = cluster.job_script()  # type: ignore[no-untyped-call]
    assert "#SBATCH --cpus-per-task=1" in script
    assert "#SBATCH --mem=512M" in script
    assert f"export PYTHONPATH={HELPERS}$" in script
    assert f"{sys.executable} -m distributed.cli.dask_worker tcp://127.0.0.1:" in script
    jobs = {job.job_id for job in cluster.workers.values()}
    assert len(jobs) == 2
    assert jobs == set(slurm_commands.jobs())

    async with Engine(
        f"sqlite:///{tmp_path / 'runs.db'}", tasks=[dask_tasks], dask=cluster
    ) as engine:
        wf = Workflow("squares-on-slurm")
        wf.map(dask_tasks.square_in_slurm_job, x=list(range(20)), name="items", concurrency=20)
        done = await engine.wait((await engine.submit(wf)).id, timeout=90)

    assert done.status == "completed", done.error
    items = done.result["outputs"]["items"]
    assert [item["square"] for item in items] == [x * x for x in range(20)]
    # Every call was made in a job of the cluster's, and both jobs made some.
    assert {item["job"] for item in items} == jobs
    assert os.getpid() not in {item["pid"] for item in items}

    await close(cluster)

    async def no_job_left() -> bool:
        return not slurm_commands.jobs()

    await until(no_job_left, timeout=60, interval=0.1)
