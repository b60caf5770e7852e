"""A Fractal package (fractal-task-tools executables and manifest) collected and run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import build_wheel, cli_env, taskloom_cli, write_fractal_package

from dask_support import running_cluster
from taskloom import Engine, InputValidationError, RunStatus
from taskloom.packages import FractalOperation, PackageCollector
from taskloom.store import PackageRecord, open_store

pytestmark = pytest.mark.timeout(300)


@dataclass(frozen=True)
class Collected:
    folder: Path
    database: str
    record: PackageRecord


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Collected:
    folder = tmp_path_factory.mktemp("fractal-package")
    wheel = build_wheel(write_fractal_package(folder), folder / "dist")
    database = f"sqlite:///{folder / 'taskloom.db'}"
    store = open_store(database)
    try:
        collector = PackageCollector(store, venvs_dir=folder / "venvs")
        record = collector.add(
            str(wheel), pip_args=["--no-index", f"--find-links={wheelhouse}", "--no-compile"]
        )
    finally:
        store.close()
    return Collected(folder, database, record)


def test_the_fractal_manifest_is_read_and_its_tasks_registered(collected: Collected) -> None:
    record = collected.record
    assert record.state == "ready"
    assert record.name == "fractal-demo-tasks"
    assert record.version == "0.3.0"
    assert record.manifest_kind == "fractal"
    assert record.manifest["manifest_version"] == "2"
    assert any(
        line.startswith("fractal-task-tools==0.5.1") for line in (record.frozen or "").splitlines()
    )


async def test_non_parallel_parallel_and_compound_tasks_run(collected: Collected) -> None:
    async with Engine(collected.database) as engine:
        registered = {t.name: t for t in await engine.register_packages()}
        assert sorted(registered) == [
            "fractal-demo-tasks/create_zarr",
            "fractal-demo-tasks/grid",
            "fractal-demo-tasks/grid.compute",
            "fractal-demo-tasks/grid.init",
            "fractal-demo-tasks/measure",
            "fractal-demo-tasks/measure.parallel",
        ]
        assert isinstance(registered["fractal-demo-tasks/measure"], FractalOperation)

        created = await engine.run(
            "fractal-demo-tasks/create_zarr", {"zarr_urls": [], "zarr_dir": "/plate", "count": 3}
        )
        assert created.status == RunStatus.COMPLETED, created.error
        urls = [u["zarr_url"] for u in created.result["image_list_updates"]]
        assert urls == ["/plate/img0", "/plate/img1", "/plate/img2"]
        logs = await engine.get_logs(created.id)
        assert any("making 3 images" in line.message for line in logs)

        measured = await engine.run(
            "fractal-demo-tasks/measure", {"zarr_urls": urls, "args_parallel": {"scale": 2}}
        )
        assert measured.status == RunStatus.COMPLETED, measured.error
        updates = measured.result["image_list_updates"]
        assert [u["zarr_url"] for u in updates] == urls
        assert [u["attributes"]["size"] for u in updates] == [len(u) * 2.0 for u in urls]
        children = await engine.list_runs(parent_id=measured.id)
        assert len(children) == 3
        assert {c.task for c in children} == {"fractal-demo-tasks/measure.parallel"}
        assert all(c.status == RunStatus.COMPLETED for c in children)
        # Once per image, in parallel: separate processes, all started before any ended.
        assert len({u["attributes"]["pid"] for u in updates}) == 3
        assert max(c.started_at or 0 for c in children) < min(c.finished_at or 0 for c in children)

        grid = await engine.run(
            "fractal-demo-tasks/grid",
            {
                "zarr_urls": urls[:2],
                "zarr_dir": "/plate",
                "args_non_parallel": {"tiles": 2},
                "args_parallel": {"factor": 5},
            },
        )
        assert grid.status == RunStatus.COMPLETED, grid.error
        assert grid.result["parallelization_list"] == [
            {"zarr_url": url, "init_args": {"tile": tile}} for url in urls[:2] for tile in (0, 1)
        ]
        values = [u["attributes"]["v"] for u in grid.result["image_list_updates"]]
        assert values == [0, 5, 0, 5]
        grid_children = await engine.list_runs(parent_id=grid.id)
        assert sorted(c.task for c in grid_children) == [
            *["fractal-demo-tasks/grid.compute"] * 4,
            "fractal-demo-tasks/grid.init",
        ]


async def test_a_parallel_task_runs_its_images_on_dask(
    collected: Collected, tmp_path: Path
) -> None:
    with running_cluster(tmp_path) as cluster:
        async with Engine(collected.database, dask=cluster.address) as engine:
            await engine.register_packages()
            urls = [f"/plate/img{i}" for i in range(8)]
            measured = await engine.run(
                "fractal-demo-tasks/measure", {"zarr_urls": urls, "args_parallel": {"scale": 2}}
            )
            assert measured.status == RunStatus.COMPLETED, measured.error
            children = await engine.list_runs(parent_id=measured.id)
            logs = await engine.get_logs(children[0].id)
    updates = measured.result["image_list_updates"]
    assert [u["zarr_url"] for u in updates] == urls
    assert [u["attributes"]["size"] for u in updates] == [len(u) * 2.0 for u in urls]
    # Each image's command was started by a Dask worker process, on both of them.
    workers = {w.pid for w in cluster.workers}
    assert {u["attributes"]["ppid"] for u in updates} == workers
    assert len(children) == 8
    assert all(c.status == RunStatus.COMPLETED for c in children)
    # The command's lines reached the image's run from the worker.
    assert any("measuring /plate/img" in line.message for line in logs), logs


async def test_a_failing_item_fails_the_parallel_task_naming_it(collected: Collected) -> None:
    async with Engine(collected.database) as engine:
        await engine.register_packages()
        run = await engine.run(
            "fractal-demo-tasks/measure", {"zarr_urls": ["/plate/a", "/plate/broken"]}
        )
        assert run.status == RunStatus.FAILED
        assert run.error is not None
        assert "1 of 2 runs of 'fractal-demo-tasks/measure.parallel'" in run.error.message
        assert "RuntimeError: cannot read /plate/broken" in run.error.message
        with pytest.raises(InputValidationError, match=r"args_parallel\.scale"):
            await engine.submit(
                "fractal-demo-tasks/measure",
                {"zarr_urls": ["/a"], "args_parallel": {"scale": "big"}},
            )


def test_a_compound_task_runs_from_the_cli(collected: Collected) -> None:
    env = cli_env(collected.database, collected.folder)
    ran = taskloom_cli(
        "run",
        "fractal-demo-tasks/grid",
        'zarr_urls=["/p/a"]',
        "zarr_dir=/p",
        'args_parallel={"factor": 3}',
        env=env,
        cwd=collected.folder,
    )
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert [u["attributes"]["v"] for u in result["image_list_updates"]] == [0, 3]
