"""Package sources, names and the tasks a manifest registers (no installs here)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from taskloom import InputValidationError
from taskloom.packages import CommandTask, FractalOperation, ManifestError, PackageError
from taskloom.packages.collection import read_source
from taskloom.packages.definitions import normalize_name, package_tasks, slug
from taskloom.store import PackageRecord

ARGS = {
    "type": "object",
    "properties": {"zarr_url": {"type": "string"}, "scale": {"type": "number", "default": 1}},
    "required": ["zarr_url"],
    "additionalProperties": False,
}


def record(manifest: Mapping[str, object], kind: str = "fractal") -> PackageRecord:
    return PackageRecord(
        name="demo",
        state="ready",
        source="demo",
        python="/venvs/demo-1/bin/python",
        root="/venvs/demo-1/lib/demo",
        manifest_kind=kind,
        manifest=manifest,
    )


@pytest.mark.parametrize(
    ("source", "name", "version", "requirement"),
    [
        ("mypkg", "mypkg", None, "mypkg"),
        ("My_Pkg==1.2.3", "my-pkg", "1.2.3", "My_Pkg==1.2.3"),
        (
            "some.fractal-tasks[gpu]==0.3",
            "some-fractal-tasks",
            "0.3",
            "some.fractal-tasks[gpu]==0.3",
        ),
        ("tasks>=2,<3", "tasks", None, "tasks>=2,<3"),
    ],
)
def test_requirements_are_read_before_installing(
    source: str, name: str, version: str | None, requirement: str
) -> None:
    parsed = read_source(source)
    assert (parsed.name, parsed.version, parsed.requirement) == (name, version, requirement)


def test_wheels_and_folders_are_read_from_their_files(tmp_path: Path) -> None:
    wheel = tmp_path / "my_pkg-1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    assert read_source(str(wheel)).name == "my-pkg"
    assert read_source(str(wheel)).version == "1.0"
    folder = tmp_path / "src-folder"
    folder.mkdir()
    with pytest.raises(PackageError, match=r"needs a pyproject\.toml"):
        read_source(str(folder))
    (folder / "pyproject.toml").write_text('[project]\nname = "Folder.Pkg"\nversion = "3"\n')
    parsed = read_source(str(folder))
    assert (parsed.name, parsed.version) == ("folder-pkg", "3")


def test_names() -> None:
    assert normalize_name("Fractal_Tasks.Core") == "fractal-tasks-core"
    assert slug("Create OME-Zarr (HCS)") == "create_ome_zarr_hcs"


def test_a_fractal_manifest_registers_commands_and_operations() -> None:
    manifest = {
        "manifest_version": "2",
        "task_list": [
            {
                "name": "Make",
                "type": "non_parallel",
                "executable_non_parallel": "make.py",
                "args_schema_non_parallel": {"type": "object"},
                "meta_non_parallel": {"mem": 1},
            },
            {
                "name": "Measure It",
                "type": "parallel",
                "executable_parallel": "measure.py",
                "args_schema_parallel": ARGS,
            },
            {
                "name": "Grid",
                "type": "compound",
                "executable_non_parallel": "init.py",
                "executable_parallel": "compute.py",
            },
        ],
    }
    tasks = {t.name: t for t in package_tasks(record(manifest))}
    assert sorted(tasks) == [
        "demo/grid",
        "demo/grid.compute",
        "demo/grid.init",
        "demo/make",
        "demo/measure_it",
        "demo/measure_it.parallel",
    ]
    make = tasks["demo/make"]
    assert isinstance(make, CommandTask)
    assert make.command == ("/venvs/demo-1/bin/python", "/venvs/demo-1/lib/demo/make.py")
    assert make.options.meta == {"mem": 1}
    measure = tasks["demo/measure_it"]
    assert isinstance(measure, FractalOperation)
    assert measure.input_schema["properties"]["args_parallel"]["properties"] == {
        "scale": {"type": "number", "default": 1}
    }
    values, _ = measure.validate_inputs({"zarr_urls": ["/a"]})
    assert values == {"zarr_urls": ["/a"], "args_parallel": {}}
    with pytest.raises(InputValidationError, match=r"'args_parallel\.zarr_url'"):
        measure.validate_inputs({"zarr_urls": ["/a"], "args_parallel": {"zarr_url": "/b"}})
    with pytest.raises(InputValidationError, match="'zarr_urls'"):
        measure.validate_inputs({})


def test_an_unknown_task_type_is_refused() -> None:
    manifest = {"task_list": [{"name": "X", "type": "converter_compound"}]}
    with pytest.raises(ManifestError, match="unknown Fractal task type 'converter_compound'"):
        package_tasks(record(manifest))


def test_taskloom_tasks_without_an_executable_are_not_registered() -> None:
    manifest = {
        "manifest_version": "taskloom/1",
        "tasks": [
            {
                "name": "run_me",
                "executable": "tasks/run_me.py",
                "input_schema": ARGS,
                "tags": ["a"],
                "meta": {"mem": 2},
                "timeout": 30,
            },
            {"name": "library_only", "executable": None},
        ],
    }
    (task,) = package_tasks(record(manifest, kind="taskloom"))
    assert task.name == "demo/run_me"
    assert task.options.timeout == 30
    assert task.options.tags == ("a",)
