"""A failing install is reported with its log and registers nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import build_wheel, cli_env, pyproject, taskloom_cli, write_files

from taskloom.packages import PackageCollector, PackageInstallError, ready_package_tasks
from taskloom.store import Store

pytestmark = pytest.mark.timeout(180)

BROKEN_MANIFEST = {
    "manifest_version": "2",
    "task_list": [
        {"name": "Works", "type": "non_parallel", "executable_non_parallel": "works.py"},
        {"name": "Lost", "type": "parallel", "executable_parallel": "lost.py"},
    ],
    "has_args_schemas": False,
}


def write_plain_package(root: Path, name: str, files: dict[str, str]) -> Path:
    module = name.replace("-", "_")
    return write_files(
        root / name,
        {
            "pyproject.toml": pyproject(name, "0.1", []),
            f"src/{module}/__init__.py": "",
            **{f"src/{module}/{k}": v for k, v in files.items()},
        },
    )


def test_a_requirement_pip_cannot_find_fails_with_its_log(
    tmp_path: Path, database: str, pip_args: list[str]
) -> None:
    env = cli_env(database, tmp_path)
    added = taskloom_cli(
        "package",
        "add",
        "no-such-task-package==9.9",
        *(f"--pip-arg={a}" for a in pip_args),
        env=env,
        cwd=tmp_path,
    )
    assert added.returncode == 1
    assert "No matching distribution found for no-such-task-package==9.9" in added.stderr
    assert added.stderr.splitlines()[-1].startswith(
        "error: package 'no-such-task-package' failed to install:"
    )
    listed = taskloom_cli("packages", "--json", env=env, cwd=tmp_path)
    (record,) = json.loads(listed.stdout)
    assert record["state"] == "failed"
    assert record["tasks"] == []
    assert "exited with 1" in record["error"]
    shown = taskloom_cli("package", "show", "no-such-task-package", env=env, cwd=tmp_path)
    assert "No matching distribution" in json.loads(shown.stdout)["log"]
    assert not any((tmp_path / "venvs").glob("no-such-task-package*"))


def test_a_missing_executable_fails_and_registers_nothing(
    tmp_path: Path, store: Store, collector: PackageCollector, pip_args: list[str]
) -> None:
    folder = write_plain_package(
        tmp_path,
        "half-done",
        {"works.py": "print('hi')\n", "__FRACTAL_MANIFEST__.json": json.dumps(BROKEN_MANIFEST)},
    )
    wheel = build_wheel(folder, tmp_path / "dist")
    with pytest.raises(PackageInstallError) as raised:
        collector.add(str(wheel), pip_args=[*pip_args, "--no-compile"])
    message = str(raised.value)
    assert "task 'Lost': its executable 'lost.py' is not in the package" in message
    record = raised.value.record
    assert record.state == "failed"
    assert "Successfully installed half-done-0.1" in record.log
    assert "__FRACTAL_MANIFEST__.json" in record.log
    stored = store.get_package("half-done")
    assert stored is not None
    assert stored.state == "failed"
    assert stored.manifest is None
    assert stored.log == record.log
    assert ready_package_tasks(store) == []
    assert not Path(record.venv or "").exists()

    # Fixed, the same package installs over its failed record.
    (folder / "src" / "half_done" / "lost.py").write_text("print('found')\n")
    fixed = build_wheel(folder, tmp_path / "dist-fixed")
    ready = collector.add(str(fixed), pip_args=[*pip_args, "--no-compile"])
    assert ready.state == "ready"
    names = sorted(t.name for t in ready_package_tasks(store))
    assert names == ["half-done/lost", "half-done/lost.parallel", "half-done/works"]


def test_a_package_without_a_manifest_fails(
    tmp_path: Path, store: Store, collector: PackageCollector, pip_args: list[str]
) -> None:
    folder = write_plain_package(tmp_path, "no-manifest", {"tool.py": "print('hi')\n"})
    with pytest.raises(PackageInstallError, match="package 'no-manifest' has no manifest"):
        collector.add(str(folder), pip_args=[*pip_args, "--no-compile"])
    record = store.get_package("no-manifest")
    assert record is not None
    assert record.state == "failed"
    assert ready_package_tasks(store) == []


def test_sources_are_checked_before_anything_is_installed(collector: PackageCollector) -> None:
    with pytest.raises(Exception, match="no such wheel file"):
        collector.add("./missing-1.0-py3-none-any.whl")
    with pytest.raises(Exception, match="expected NAME"):
        collector.add("./not/a/folder")
    assert collector.packages() == []
