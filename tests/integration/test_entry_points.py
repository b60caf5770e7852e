"""Tasks declared by an installed package's entry points (group `taskloom.tasks`)."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import taskloom
from taskloom.loading import resolve_task


@pytest.fixture
def installed_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A package installed the way pip leaves one: a module and its .dist-info folder."""
    (tmp_path / "lab_tasks.py").write_text(
        textwrap.dedent(
            '''
            import taskloom

            @taskloom.task
            def calibrate(offset: float = 0.0) -> float:
                """Calibrate the instrument."""
                return 1.5 + offset
            '''
        )
    )
    info = tmp_path / "lab_tasks-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lab-tasks\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[taskloom.tasks]\nlab = lab_tasks\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("lab_tasks", None)


@pytest.mark.usefixtures("installed_package")
async def test_an_engine_registers_the_tasks_of_installed_packages(tmp_path: Path) -> None:
    async with taskloom.Engine(str(tmp_path / "runs.db")) as engine:
        added = engine.register_entry_points()
        assert [task.name for task in added] == ["calibrate"]
        run = await engine.run("calibrate", {"offset": "0.5"})
        assert run.status == "completed"
        assert run.result == 2.0


@pytest.mark.usefixtures("installed_package")
def test_a_bare_name_resolves_through_the_entry_points() -> None:
    assert resolve_task("calibrate").name == "calibrate"
    with pytest.raises(taskloom.UnknownTaskError, match="'nothing_here'"):
        resolve_task("nothing_here")


def test_a_plain_function_named_by_file_and_name_is_a_task(tmp_path: Path) -> None:
    script = tmp_path / "plain_task.py"
    script.write_text(
        "def scale(*, zarr_url: str, factor: int = 2) -> dict:\n"
        '    """Scale an image."""\n'
        '    return {"zarr_url": zarr_url, "factor": factor}\n\n'
        "VALUE = 3\n",
        encoding="utf-8",
    )
    definition = resolve_task(f"{script}:scale")
    assert definition.name == "scale"
    assert definition.description == "Scale an image."
    assert definition.validate_inputs({"zarr_url": "/a", "factor": "4"})[1] == {
        "zarr_url": "/a",
        "factor": 4,
    }
    # Only a function named on its own: a file of plain functions defines no tasks, and a
    # value that is not a function is still refused.
    with pytest.raises(taskloom.TaskDefinitionError, match="defines no tasks"):
        resolve_task(str(script))
    with pytest.raises(taskloom.TaskDefinitionError, match="is not a task"):
        resolve_task(f"{script}:VALUE")
