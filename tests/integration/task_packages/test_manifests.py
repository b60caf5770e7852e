"""Manifests from code: taskloom's, and the Fractal export checked against the manifest
fractal-task-tools' own generator (`fractal-manifest create`) makes for the same tasks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import fractal_manifest_tool, pyproject, write_files

pytestmark = pytest.mark.timeout(120)

SEGMENT = '''
    from typing import Literal, Optional

    from pydantic import BaseModel

    import taskloom


    class Channel(BaseModel):
        """A channel of the image.

        Attributes:
            label: Its label.
            wavelength: In nanometres.
        """

        label: str
        wavelength: Optional[int] = None


    @taskloom.task(
        label="Segment Nuclei",
        meta={"cpus_per_task": 4, "mem": 16000, "category": "Segmentation", "modality": "HCS",
              "input_types": {"is_3D": False}, "output_types": {"segmented": True}},
        tags=["nuclei", "2D"],
    )
    def segment(
        *,
        zarr_urls: list[str],
        zarr_dir: str,
        channel: Channel,
        method: Literal["otsu", "watershed"] = "otsu",
        diameters: Optional[list[float]] = None,
        overwrite: bool = False,
    ) -> dict:
        """Segment the nuclei of every image.

        Uses a classical method; no model
        is downloaded.

        Args:
            zarr_urls: The images to segment.
            zarr_dir: Where the plate is.
            channel: Which channel holds the
                nuclei stain.
            method: How to threshold.
            overwrite: Replace an earlier segmentation.
        """
        return {}


    if __name__ == "__main__":
        taskloom.run_cli(segment)
'''

THRESHOLD = '''
    import taskloom


    @taskloom.task(label="Threshold", meta={"mem": 2000})
    def threshold(*, zarr_url: str, level: float = 0.5, invert: bool = False) -> None:
        """Threshold one image.

        Args:
            zarr_url: The image.
            level: Between 0 and 1.
            invert: Swap foreground and background.
        """


    if __name__ == "__main__":
        taskloom.run_cli(threshold)
'''

INIT_GRID = '''
    import taskloom


    @taskloom.task(meta={"cpus_per_task": 1})
    def init_grid(*, zarr_urls: list[str], zarr_dir: str, tiles: int = 2) -> dict:
        """Split each image into tiles.

        Args:
            zarr_urls: The images.
            zarr_dir: The plate.
            tiles: Tiles per image.
        """
        return {"parallelization_list": []}


    if __name__ == "__main__":
        taskloom.run_cli(init_grid)
'''

COMPUTE_GRID = '''
    import taskloom


    @taskloom.task(label="Grid", meta={"init": "init_grid", "mem": 500})
    def compute_grid(*, zarr_url: str, init_args: dict, factor: int = 10) -> dict:
        """Compute one tile.

        Args:
            zarr_url: The image.
            init_args: From the init task.
            factor: A factor.
        """
        return {}


    if __name__ == "__main__":
        taskloom.run_cli(compute_grid)
'''

HELPER = '''
    import taskloom


    @taskloom.task
    def not_an_executable(x: int) -> int:
        """No run_cli here: not in a Fractal manifest."""
        return x
'''

TASK_LIST = """
    from fractal_task_tools.task_models import CompoundTask, NonParallelTask, ParallelTask

    TASK_LIST = [
        NonParallelTask(
            name="Segment Nuclei",
            executable="tasks/segment.py",
            meta={"cpus_per_task": 4, "mem": 16000},
            category="Segmentation",
            modality="HCS",
            input_types={"is_3D": False},
            output_types={"segmented": True},
            tags=["nuclei", "2D"],
        ),
        ParallelTask(name="Threshold", executable="tasks/threshold.py", meta={"mem": 2000}),
        CompoundTask(
            name="Grid",
            executable_init="tasks/init_grid.py",
            executable="tasks/compute_grid.py",
            meta_init={"cpus_per_task": 1},
            meta={"mem": 500},
        ),
    ]
"""


@pytest.fixture(scope="module")
def package_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cmp") / "cmp-tasks"
    return write_files(
        folder,
        {
            "pyproject.toml": pyproject("cmp-tasks", "2.0", ["taskloom"]),
            "src/cmp_tasks/__init__.py": "",
            "src/cmp_tasks/tasks/__init__.py": "",
            "src/cmp_tasks/tasks/segment.py": SEGMENT,
            "src/cmp_tasks/tasks/threshold.py": THRESHOLD,
            "src/cmp_tasks/tasks/helper.py": HELPER,
            "src/cmp_tasks/tasks/init_grid.py": INIT_GRID,
            "src/cmp_tasks/tasks/compute_grid.py": COMPUTE_GRID,
            "src/cmp_tasks/dev/__init__.py": "",
            "src/cmp_tasks/dev/task_list.py": TASK_LIST,
        },
    )


def taskloom_manifest(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(folder / "src"), "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "taskloom", "manifest", "cmp_tasks", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_fractal_export_agrees_with_fractal_task_tools(package_folder: Path) -> None:
    theirs = fractal_manifest_tool(package_folder, "cmp_tasks")
    made = taskloom_manifest(package_folder, "--format", "fractal")
    assert made.returncode == 0, made.stderr
    ours = json.loads(made.stdout)
    assert set(ours) == set(theirs)
    for key in ("manifest_version", "has_args_schemas", "args_schema_version", "authors"):
        assert ours[key] == theirs[key], key
    assert ours["authors"] == "Ada Lovelace, Grace Hopper"
    # Fractal lists tasks in the order of TASK_LIST; taskloom in the order of the modules.
    mine_by_name = {t["name"]: t for t in ours["task_list"]}
    assert sorted(mine_by_name) == sorted(t["name"] for t in theirs["task_list"])
    assert sorted(mine_by_name) == ["Grid", "Segment Nuclei", "Threshold"]
    for reference in theirs["task_list"]:
        mine = mine_by_name[reference["name"]]
        assert set(mine) == set(reference), mine["name"]
        for field in reference:  # field by field, argument schemas included
            assert mine[field] == reference[field], (mine["name"], field)
    segment = mine_by_name["Segment Nuclei"]
    assert segment["type"] == "non_parallel"
    assert segment["args_schema_non_parallel"]["properties"]["channel"]["description"] == (
        "Which channel holds the nuclei stain."
    )
    assert mine_by_name["Threshold"]["type"] == "parallel"
    grid = mine_by_name["Grid"]
    assert grid["type"] == "compound"
    assert grid["executable_non_parallel"] == "tasks/init_grid.py"
    assert grid["executable_parallel"] == "tasks/compute_grid.py"
    assert grid["meta_non_parallel"] == {"cpus_per_task": 1}
    assert grid["meta_parallel"] == {"mem": 500}


def test_the_taskloom_manifest_describes_every_task(package_folder: Path) -> None:
    made = taskloom_manifest(package_folder)
    assert made.returncode == 0, made.stderr
    manifest = json.loads(made.stdout)
    assert manifest["manifest_version"] == "taskloom/1"
    tasks = {t["name"]: t for t in manifest["tasks"]}
    assert sorted(tasks) == [
        "compute_grid",
        "init_grid",
        "not_an_executable",
        "segment",
        "threshold",
    ]
    assert tasks["compute_grid"]["fractal_type"] == "compound"
    assert tasks["compute_grid"]["init"] == "init_grid"
    segment = tasks["segment"]
    assert segment["label"] == "Segment Nuclei"
    assert segment["description"] == "Segment the nuclei of every image."
    assert segment["executable"] == "tasks/segment.py"
    assert segment["kind"] == "function"
    assert segment["tags"] == ["nuclei", "2D"]
    assert segment["meta"]["cpus_per_task"] == 4
    assert segment["input_schema"]["required"] == ["zarr_urls", "zarr_dir", "channel"]
    assert segment["input_schema"]["properties"]["method"]["enum"] == ["otsu", "watershed"]
    assert tasks["threshold"]["fractal_type"] == "parallel"
    assert tasks["threshold"]["output_schema"] == {"type": "null"}
    assert tasks["not_an_executable"]["executable"] is None


def test_an_unknown_format_or_package_is_a_usage_error(package_folder: Path) -> None:
    wrong = taskloom_manifest(package_folder, "--format", "yaml")
    assert wrong.returncode == 2
    assert "--format: expected 'taskloom' or 'fractal', got 'yaml'" in wrong.stderr
    env = {**os.environ, "NO_COLOR": "1"}
    missing = subprocess.run(
        [sys.executable, "-m", "taskloom", "manifest", "no_such_package_here"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2
    assert "cannot import the package 'no_such_package_here'" in missing.stderr


V1_TASK = """
    from typing import Any, Dict, Sequence

    import taskloom


    @taskloom.task
    def prepare_metadata(
        *,
        input_paths: Sequence[str],
        output_path: str,
        metadata: Dict[str, Any],
        num_components: int = 10,
    ) -> Dict[str, Any]:
        \"\"\"Prepare metadata (Fractal's v1 contract).\"\"\"
        return {"component": [f"{i:04d}" for i in range(num_components)]}


    if __name__ == "__main__":
        taskloom.run_cli(prepare_metadata)
"""


def test_a_v1_task_is_left_out_of_the_fractal_export_with_a_warning(
    tmp_path: Path, package_folder: Path
) -> None:
    folder = write_files(
        tmp_path / "mixed-tasks",
        {
            "pyproject.toml": pyproject("mixed-tasks", "1.0", ["taskloom"]),
            "src/mixed_tasks/__init__.py": "",
            "src/mixed_tasks/v1.py": V1_TASK,
            "src/mixed_tasks/threshold.py": THRESHOLD,
        },
    )
    env = {**os.environ, "PYTHONPATH": str(folder / "src"), "NO_COLOR": "1"}
    made = subprocess.run(
        [sys.executable, "-m", "taskloom", "manifest", "mixed_tasks", "--format", "fractal"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    assert [t["name"] for t in json.loads(made.stdout)["task_list"]] == ["Threshold"]
    (warning,) = [line for line in made.stderr.splitlines() if line.startswith("warning:")]
    assert "task 'prepare_metadata' is left out of the Fractal manifest" in warning
    assert "it lacks zarr_dir, zarr_urls" in warning
    assert "input_paths, metadata, output_path are Fractal's v1 contract" in warning
    # fractal-task-tools refuses the same task for the same reason.
    from fractal_task_tools._task_arguments import (  # type: ignore[import-untyped]
        validate_arguments,
    )

    from taskloom.packages.manifest import fractal_args_schema

    namespace: dict[str, object] = {}
    exec(compile(textwrap.dedent(V1_TASK), "v1.py", "exec", dont_inherit=True), namespace)
    schema = fractal_args_schema(namespace["prepare_metadata"].fn)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="Required arguments"):
        validate_arguments(task_type="non_parallel", executable_kind="non_parallel", schema=schema)
    # The taskloom manifest keeps it: taskloom runs v1 tasks.
    kept = subprocess.run(
        [sys.executable, "-m", "taskloom", "manifest", "mixed_tasks"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert kept.returncode == 0, kept.stderr
    assert "prepare_metadata" in {t["name"] for t in json.loads(kept.stdout)["tasks"]}
