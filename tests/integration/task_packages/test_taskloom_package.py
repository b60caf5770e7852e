"""A taskloom package built as a wheel, installed in its own venv, its tasks run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import build_wheel, cli_env, taskloom_cli, write_taskloom_package

from taskloom import Engine, RunStatus
from taskloom.packages import CommandTask, PackageCollector
from taskloom.store import Store


def test_a_wheel_installs_in_its_own_venv_and_its_tasks_run_from_the_cli(
    tmp_path: Path, database: str, pip_args: list[str]
) -> None:
    wheel = build_wheel(write_taskloom_package(tmp_path), tmp_path / "dist")
    env = cli_env(database, tmp_path)
    added = taskloom_cli("package", "add", str(wheel), *(f"--pip-arg={a}" for a in pip_args),
                         env=env, cwd=tmp_path)  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "tasks: mypkg/explode, mypkg/threshold" in added.stderr

    listed = taskloom_cli("packages", "--json", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    (package,) = json.loads(listed.stdout)
    assert package["name"] == "mypkg"
    assert package["version"] == "1.0"
    assert package["state"] == "ready"
    assert package["manifest"] == "taskloom"
    assert package["tasks"] == ["mypkg/explode", "mypkg/threshold"]
    assert any(line.startswith("mypkg @ file://") for line in package["frozen"])
    assert any(line.startswith("taskloom") for line in package["frozen"])
    venv = Path(package["venv"])
    assert venv.parent == tmp_path / "venvs"

    ran = taskloom_cli("run", "mypkg/threshold", "zarr_url=/data/x.zarr", "level=0.7",
                       "--json", env=env, cwd=tmp_path)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    run = json.loads(ran.stdout)
    assert run["status"] == "completed"
    assert run["task"] == "mypkg/threshold"
    assert run["result"]["zarr_url"] == "/data/x.zarr"
    assert run["result"]["level"] == 0.7
    # It ran in the package's interpreter, not in this one.
    assert Path(run["result"]["python"]).parent == venv / "bin"
    assert Path(run["result"]["python"]) != Path(sys.executable)

    shown = taskloom_cli("show", run["id"], "--json", env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    messages = [line["message"] for line in json.loads(shown.stdout)["logs"]]
    assert any("thresholding /data/x.zarr at 0.7" in m for m in messages)
    assert "stdout says /data/x.zarr" in messages

    failed = taskloom_cli("run", "mypkg/explode", 'zarr_urls=["a", "b"]', "zarr_dir=/d",
                          env=env, cwd=tmp_path)  # fmt: skip
    assert failed.returncode == 1
    assert "ValueError: no good images among 2" in failed.stderr

    invalid = taskloom_cli("run", "mypkg/threshold", "level=0.7", env=env, cwd=tmp_path)
    assert invalid.returncode == 2
    assert "task 'mypkg/threshold': input 'zarr_url'" in invalid.stderr


async def test_the_engine_runs_package_tasks_with_logs_and_results(
    tmp_path: Path, store: Store, collector: PackageCollector, pip_args: list[str]
) -> None:
    wheel = build_wheel(write_taskloom_package(tmp_path), tmp_path / "dist")
    record = collector.add(str(wheel), pip_args=pip_args)
    assert record.state == "ready"
    async with Engine(store=store) as engine:
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


def test_remove_and_reinstall(
    tmp_path: Path, collector: PackageCollector, store: Store, pip_args: list[str]
) -> None:
    wheel = build_wheel(write_taskloom_package(tmp_path), tmp_path / "dist")
    first = collector.add(str(wheel), pip_args=pip_args)
    assert first.venv is not None
    again = collector.reinstall("mypkg")
    assert again.state == "ready"
    assert again.frozen == first.frozen
    assert Path(again.venv or "").is_dir()
    removed = collector.remove("mypkg")
    assert not Path(removed.venv or "").exists()
    assert store.get_package("mypkg") is None
    with pytest.raises(Exception, match="no package named 'mypkg'"):
        collector.remove("mypkg")
