"""Fixtures for task packages: packages written by the tests, built as real wheels, and
installed with pip into real virtual environments.

One wheelhouse per session holds taskloom (built from this source), fractal-task-tools,
hatchling and their dependencies, so each install is offline (`--no-index`) and fast.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

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
