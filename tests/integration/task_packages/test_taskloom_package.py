"""A taskloom package built as a wheel, installed in its own venv, its tasks run.

The tests of this module share one installed package (installing is the slow part);
the last one reinstalls and removes it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import build_wheel, cli_env, taskloom_cli, write_taskloom_package

import taskloom
from taskloom import Engine, RunStatus
from taskloom.packages import CommandTask, PackageCollector
from taskloom.store import open_store

pytestmark = pytest.mark.timeout(300)


@dataclass(frozen=True)
class Installed:
    folder: Path
    database: str
    env: dict[str, str]
    added: subprocess.CompletedProcess[str]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return taskloom_cli(*args, env=self.env, cwd=self.folder)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Installed:
    folder = tmp_path_factory.mktemp("taskloom-package")
    wheel = build_wheel(write_taskloom_package(folder), folder / "dist")
    database = f"sqlite:///{folder / 'taskloom.db'}"
    env = cli_env(database, folder)
    pip_args = ["--no-index", f"--find-links={wheelhouse}", "--no-compile"]
    added = taskloom_cli(
        "package", "add", str(wheel), *(f"--pip-arg={a}" for a in pip_args), env=env, cwd=folder
    )
    return Installed(folder, database, env, added)


def test_package_add_installs_a_wheel_in_its_own_venv(installed: Installed) -> None:
    assert installed.added.returncode == 0, installed.added.stderr
    assert "tasks: mypkg/explode, mypkg/threshold" in installed.added.stderr
    listed = installed.cli("packages", "--json")
    assert listed.returncode == 0, listed.stderr
    (package,) = json.loads(listed.stdout)
    assert package["name"] == "mypkg"
    assert package["version"] == "1.0"
    assert package["state"] == "ready"
    assert package["manifest"] == "taskloom"
    assert package["tasks"] == ["mypkg/explode", "mypkg/threshold"]
    assert any(line.startswith("mypkg @ file://") for line in package["frozen"])
    assert any(line.startswith("taskloom") for line in package["frozen"])
    assert Path(package["venv"]).parent == installed.folder / "venvs"
    table = installed.cli("packages")
    assert table.returncode == 0, table.stderr
    (row,) = [line for line in table.stdout.splitlines() if line.startswith("mypkg")]
    assert "ready" in row
    # One row per package: the requirements are counted, not listed one line each.
    assert f"{len(package['frozen'])} frozen" in row
    assert not any("taskloom==" in line for line in table.stdout.splitlines())
    assert len(table.stdout.strip().splitlines()) <= 1 + len(package["tasks"])


def test_tasks_shows_one_task_of_a_collected_package(installed: Installed) -> None:
    shown = installed.cli("tasks", "mypkg/threshold", "--json")
    assert shown.returncode == 0, shown.stderr
    (task,) = [t for t in json.loads(shown.stdout) if t["name"].startswith("mypkg/")]
    assert task["name"] == "mypkg/threshold"
    assert "zarr_url" in task["input_schema"]["properties"]
    text = installed.cli("tasks", "mypkg/threshold")
    assert text.returncode == 0, text.stderr
    assert "mypkg/threshold" in text.stdout
    assert "mypkg/explode" not in text.stdout
    unknown = installed.cli("tasks", "mypkg/nope")
    assert unknown.returncode == 2
    assert "unknown task 'mypkg/nope': no ready package 'mypkg' has a task 'nope'" in (
        unknown.stderr
    )


def test_its_tasks_run_from_the_cli_in_the_package_interpreter(installed: Installed) -> None:
    ran = installed.cli("run", "mypkg/threshold", "zarr_url=/data/x.zarr", "level=0.7", "--json")
    assert ran.returncode == 0, ran.stderr
    run = json.loads(ran.stdout)
    assert run["status"] == "completed"
    assert run["task"] == "mypkg/threshold"
    assert run["result"]["zarr_url"] == "/data/x.zarr"
    assert run["result"]["level"] == 0.7
    python = Path(run["result"]["python"])
    assert python.parent.parent.parent == installed.folder / "venvs"
    assert python != Path(sys.executable)

    shown = installed.cli("show", run["id"], "--json")
    assert shown.returncode == 0, shown.stderr
    messages = [line["message"] for line in json.loads(shown.stdout)["logs"]]
    assert any("thresholding /data/x.zarr at 0.7" in m for m in messages)
    assert "stdout says /data/x.zarr" in messages

    failed = installed.cli("run", "mypkg/explode", 'zarr_urls=["a", "b"]', "zarr_dir=/d")
    assert failed.returncode == 1
    assert "ValueError: no good images among 2" in failed.stderr

    invalid = installed.cli("run", "mypkg/threshold", "level=0.7")
    assert invalid.returncode == 2
    assert "task 'mypkg/threshold': input 'zarr_url'" in invalid.stderr


async def test_the_engine_runs_package_tasks_with_logs_and_results(installed: Installed) -> None:
    async with Engine(installed.database) as engine:
        registered = await engine.register_packages()
        assert sorted(t.name for t in registered) == ["mypkg/explode", "mypkg/threshold"]
        assert all(isinstance(t, CommandTask) for t in registered)
        runs = [
            await engine.submit("mypkg/threshold", {"zarr_url": f"/data/{i}.zarr"})
            for i in range(3)
        ]
        finished = await engine.wait_many([r.id for r in runs])
        assert [r.status for r in finished] == [RunStatus.COMPLETED] * 3
        assert [r.result["zarr_url"] for r in finished] == [f"/data/{i}.zarr" for i in range(3)]
        assert all(r.result["level"] == 0.5 for r in finished)
        logs = await engine.get_logs(runs[1].id)
        assert any("thresholding /data/1.zarr at 0.5" in line.message for line in logs)

        failed = await engine.run("mypkg/explode", {"zarr_urls": ["a"], "zarr_dir": "/d"})
        assert failed.status == RunStatus.FAILED
        assert failed.error is not None
        assert failed.error.type == "CommandTaskError"
        assert "exited with code 1" in failed.error.message
        assert "ValueError: no good images among 1" in failed.error.message
        failed_logs = await engine.get_logs(failed.id)
        assert any("Traceback" in line.message for line in failed_logs)


def test_serve_with_no_targets_serves_the_collected_packages(installed: Installed) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "taskloom", "serve", "--port", "0"],
        cwd=installed.folder,
        env=installed.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("taskloom "), first + (
            process.stderr.read() if process.stderr else ""
        )
        url = first.split(" serving ", 1)[1].split()[0]
        assert "and 2 task(s) from 2 collected package task(s)" in process.stdout.readline()
        with taskloom.Client(url) as client:
            assert {"mypkg/explode", "mypkg/threshold"} <= {t["name"] for t in client.tasks()}
            run = client.run("mypkg/threshold", {"zarr_url": "/served.zarr"})
            assert run.status == RunStatus.COMPLETED
            assert run.result["zarr_url"] == "/served.zarr"
    finally:
        process.terminate()
        process.communicate(timeout=30)
    assert process.returncode == 0


def test_reinstall_from_frozen_requirements_then_remove(installed: Installed) -> None:
    store = open_store(installed.database)
    try:
        collector = PackageCollector(store, venvs_dir=installed.folder / "venvs")
        first = collector.get("mypkg")
        again = collector.reinstall("mypkg")
        assert again.state == "ready"
        assert again.frozen == first.frozen
        assert again.venv == first.venv
        assert Path(again.venv or "", "bin", "python").exists()
    finally:
        store.close()
    ran = installed.cli("run", "mypkg/threshold", "zarr_url=/again.zarr")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["zarr_url"] == "/again.zarr"

    removed = installed.cli("package", "remove", "mypkg")
    assert removed.returncode == 0, removed.stderr
    assert not Path(first.venv or "").exists()
    listed = installed.cli("packages", "--json")
    assert json.loads(listed.stdout) == []
    gone = installed.cli("run", "mypkg/threshold", "zarr_url=/x.zarr")
    assert gone.returncode == 2
    assert "unknown task 'mypkg/threshold': no ready package 'mypkg'" in gone.stderr
    again_removed = installed.cli("package", "remove", "mypkg")
    assert again_removed.returncode == 2
    assert "no package named 'mypkg'" in again_removed.stderr
