"""Fixtures for task packages: packages written by the tests, built as real wheels, and
installed with pip into real virtual environments.

One wheelhouse per session holds taskloom (built from this source), fractal-task-tools,
hatchling and their dependencies, so each install is offline (`--no-index`) and fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskloom.packages import PackageCollector
from taskloom.store import Store, open_store

REPO = Path(__file__).resolve().parents[3]
PYTHON = sys.executable


def pip(*args: str, cwd: Path | None = None) -> None:
    subprocess.run(
        [PYTHON, "-m", "pip", "--disable-pip-version-check", "-q", *args],
        check=True,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheelhouse")
    pip("wheel", "-w", str(folder), str(REPO), "fractal-task-tools==0.5.1", "hatchling")
    return folder


@pytest.fixture
def pip_args(wheelhouse: Path) -> list[str]:
    return ["--no-index", "--find-links", str(wheelhouse)]


def write_files(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return root


def pyproject(name: str, version: str, dependencies: list[str]) -> str:
    deps = ", ".join(f'"{d}"' for d in dependencies)
    return f"""
        [build-system]
        requires = ["hatchling"]
        build-backend = "hatchling.build"

        [project]
        name = "{name}"
        version = "{version}"
        authors = [{{name = "Ada Lovelace"}}, {{name = "Grace Hopper"}}]
        dependencies = [{deps}]

        [tool.hatch.build.targets.wheel]
        packages = ["src/{name.replace("-", "_")}"]
        artifacts = ["*.json"]
    """


THRESHOLD = '''
    import logging
    import sys

    import taskloom

    logger = logging.getLogger(__name__)


    @taskloom.task(label="Threshold", meta={"cpus_per_task": 2, "mem": 4000}, tags=["segmentation"])
    def threshold(zarr_url: str, level: float = 0.5) -> dict:
        """Threshold an image.

        Pixels above the level become foreground.

        Args:
            zarr_url: Path of the image.
            level: The threshold, between 0 and 1.
        """
        logger.info("thresholding %s at %s", zarr_url, level)
        print(f"stdout says {zarr_url}", flush=True)
        return {"zarr_url": zarr_url, "level": level, "python": sys.executable}


    if __name__ == "__main__":
        taskloom.run_cli(threshold)
'''

EXPLODE = '''
    import taskloom


    @taskloom.task
    def explode(zarr_urls: list[str], zarr_dir: str) -> None:
        """Always fails."""
        raise ValueError(f"no good images among {len(zarr_urls)}")


    if __name__ == "__main__":
        taskloom.run_cli(explode)
'''


def write_taskloom_package(root: Path, version: str = "1.0") -> Path:
    """A package `mypkg` whose tasks are taskloom tasks with `run_cli` entry points."""
    return write_files(
        root / f"mypkg-{version}",
        {
            "pyproject.toml": pyproject("mypkg", version, ["taskloom"]),
            "src/mypkg/__init__.py": '"""Tasks for tests."""\n',
            "src/mypkg/tasks/__init__.py": "",
            "src/mypkg/tasks/threshold.py": THRESHOLD,
            "src/mypkg/tasks/explode.py": EXPLODE,
        },
    )


def build_wheel(folder: Path, out: Path) -> Path:
    """`pip wheel` the package folder (no build isolation needed: hatchling is at hand)."""
    out.mkdir(parents=True, exist_ok=True)
    pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(folder))
    (wheel,) = out.glob("*.whl")
    return wheel


@pytest.fixture
def database(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'taskloom.db'}"


@pytest.fixture
def store(database: str) -> Iterator[Store]:
    opened = open_store(database)
    yield opened
    opened.close()


@pytest.fixture
def collector(store: Store, tmp_path: Path) -> PackageCollector:
    return PackageCollector(store, venvs_dir=tmp_path / "venvs")


def cli_env(database: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")}
    env["TASKLOOM_DATABASE_URL"] = database
    env["TASKLOOM_VENVS_DIR"] = str(tmp_path / "venvs")
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "200"
    return env


def taskloom_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "taskloom", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


FRACTAL_TASKS = {
    "create_zarr.py": '''
        """A non-parallel task."""

        import logging


        def create_zarr(*, zarr_urls: list[str], zarr_dir: str, count: int = 2) -> dict:
            """Make new images.

            Args:
                zarr_urls: Images so far.
                zarr_dir: Where new images go.
                count: How many to make.
            """
            logging.getLogger("create_zarr").info("making %d images", count)
            images = [{"zarr_url": f"{zarr_dir}/img{i}"} for i in range(count)]
            return {"image_list_updates": images}


        if __name__ == "__main__":
            from fractal_task_tools.task_wrapper import run_fractal_task

            run_fractal_task(task_function=create_zarr)
    ''',
    "measure.py": '''
        """A parallel task."""

        import logging
        import os


        def measure(*, zarr_url: str, scale: float = 1.0) -> dict:
            """Measure one image.

            Args:
                zarr_url: The image.
                scale: A factor.
            """
            logging.getLogger("measure").info("measuring %s", zarr_url)
            if zarr_url.endswith("broken"):
                raise RuntimeError(f"cannot read {zarr_url}")
            size = len(zarr_url) * scale
            attributes = {"size": size, "pid": os.getpid(), "ppid": os.getppid()}
            return {"image_list_updates": [{"zarr_url": zarr_url, "attributes": attributes}]}


        if __name__ == "__main__":
            from fractal_task_tools.task_wrapper import run_fractal_task

            run_fractal_task(task_function=measure)
    ''',
    "init_grid.py": '''
        """The init part of a compound task."""


        def init_grid(*, zarr_urls: list[str], zarr_dir: str, tiles: int = 2) -> dict:
            """Split each image into tiles.

            Args:
                zarr_urls: The images.
                zarr_dir: Unused.
                tiles: Tiles per image.
            """
            return {
                "parallelization_list": [
                    {"zarr_url": url, "init_args": {"tile": tile}}
                    for url in zarr_urls
                    for tile in range(tiles)
                ]
            }


        if __name__ == "__main__":
            from fractal_task_tools.task_wrapper import run_fractal_task

            run_fractal_task(task_function=init_grid)
    ''',
    "compute_grid.py": '''
        """The compute part of a compound task."""


        def compute_grid(*, zarr_url: str, init_args: dict, factor: int = 10) -> dict:
            """Compute one tile.

            Args:
                zarr_url: The image.
                init_args: From the init task.
                factor: A factor.
            """
            value = init_args["tile"] * factor
            return {"image_list_updates": [{"zarr_url": zarr_url, "attributes": {"v": value}}]}


        if __name__ == "__main__":
            from fractal_task_tools.task_wrapper import run_fractal_task

            run_fractal_task(task_function=compute_grid)
    ''',
}

FRACTAL_TASK_LIST = """
    from fractal_task_tools.task_models import CompoundTask, NonParallelTask, ParallelTask

    TASK_LIST = [
        NonParallelTask(name="Create Zarr", executable="create_zarr.py", meta={"cpus_per_task": 1}),
        ParallelTask(
            name="Measure", executable="measure.py", meta={"mem": 1000}, category="Measurement",
            tags=["demo"],
        ),
        CompoundTask(name="Grid", executable_init="init_grid.py", executable="compute_grid.py"),
    ]
"""


def fractal_manifest_tool(folder: Path, package: str) -> dict[str, Any]:
    """Run fractal-task-tools' own generator (`fractal-manifest create`) on a package folder."""
    env = {**os.environ, "PYTHONPATH": str(folder / "src")}
    done = subprocess.run(
        [str(Path(PYTHON).parent / "fractal-manifest"), "create", "--package", package],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    manifest = folder / "src" / package / "__FRACTAL_MANIFEST__.json"
    loaded: dict[str, Any] = json.loads(manifest.read_text(encoding="utf-8"))
    return loaded


def write_fractal_package(root: Path) -> Path:
    """A Fractal package, `fractal-demo-tasks`, whose manifest fractal-task-tools makes."""
    files = {f"src/fractal_demo_tasks/{name}": text for name, text in FRACTAL_TASKS.items()}
    files["src/fractal_demo_tasks/__init__.py"] = ""
    files["src/fractal_demo_tasks/dev/__init__.py"] = ""
    files["src/fractal_demo_tasks/dev/task_list.py"] = FRACTAL_TASK_LIST
    files["pyproject.toml"] = pyproject(
        "fractal-demo-tasks", "0.3.0", ["fractal-task-tools==0.5.1"]
    )
    folder = write_files(root / "fractal-demo-tasks", files)
    fractal_manifest_tool(folder, "fractal_demo_tasks")
    return folder
