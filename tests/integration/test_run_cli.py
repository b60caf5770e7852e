"""`taskloom.run_cli`: a task as an executable speaking Fractal's v2 and v1 contracts."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = '''
import logging
import sys
from pathlib import Path

import taskloom

logger = logging.getLogger("threshold")


@taskloom.task
def threshold(zarr_url: str, level: float = 0.5, marker: str | None = None) -> dict | None:
    """Threshold an image."""
    logger.info("thresholding %s", zarr_url)
    if marker:
        Path(marker).write_text("ran")
    if zarr_url == "none":
        return None
    if level > 1:
        raise ValueError(f"level {level} is above 1\\nsecond line")
    return {"zarr_url": zarr_url, "level": level}


if __name__ == "__main__":
    fmt = sys.argv.pop(1) if len(sys.argv) > 1 and sys.argv[1].startswith("fmt=") else None
    if fmt:
        taskloom.run_cli(threshold, log_format=fmt[4:])
    else:
        taskloom.run_cli(threshold)
'''


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "threshold.py"
    path.write_text(textwrap.dedent(SCRIPT), encoding="utf-8")
    return path


def call(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=60
    )


def write_args(tmp_path: Path, args: object) -> Path:
    path = tmp_path / "args.json"
    path.write_text(json.dumps(args), encoding="utf-8")
    return path


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_v2_reads_arguments_coerces_them_and_writes_the_result(
    script: Path, tmp_path: Path
) -> None:
    args = write_args(tmp_path, {"zarr_url": "/data/x.zarr", "level": "0.7"})
    out = tmp_path / "out.json"
    done = call(script, "--args-json", str(args), "--out-json", str(out))
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text()) == {"zarr_url": "/data/x.zarr", "level": 0.7}
    assert "; INFO; thresholding /data/x.zarr" in done.stderr  # Fractal's log format
    assert error_lines(done.stderr) == []


def test_v1_contract_and_none_written_as_null(script: Path, tmp_path: Path) -> None:
    args = write_args(tmp_path, {"zarr_url": "none"})
    out = tmp_path / "metadata.json"
    done = call(script, "-j", str(args), "--metadata-out", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_text() == "null"


def test_the_log_format_is_configurable(script: Path, tmp_path: Path) -> None:
    args = write_args(tmp_path, {"zarr_url": "/a"})
    out = tmp_path / "out.json"
    done = call(
        script, "fmt=<%(levelname)s> %(message)s", "--args-json", str(args), "--out-json", str(out)
    )
    assert done.returncode == 0, done.stderr
    assert "<INFO> thresholding /a" in done.stderr.splitlines()


def test_invalid_arguments_give_one_error_line_naming_task_and_field(
    script: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    args = write_args(tmp_path, {"level": "high", "marker": str(marker)})
    out = tmp_path / "out.json"
    done = call(script, "--args-json", str(args), "--out-json", str(out))
    assert done.returncode == 2
    (line,) = error_lines(done.stderr)
    assert done.stderr.splitlines()[-1] == line
    assert "task 'threshold'" in line
    assert "'zarr_url'" in line
    assert "'level'" in line
    assert "Traceback" not in done.stderr
    assert not out.exists()
    assert not marker.exists()


def test_a_task_exception_gives_one_error_line_and_the_traceback_in_the_log(
    script: Path, tmp_path: Path
) -> None:
    args = write_args(tmp_path, {"zarr_url": "/a", "level": 3})
    out = tmp_path / "out.json"
    done = call(script, "--args-json", str(args), "--out-json", str(out))
    assert done.returncode == 1
    (line,) = error_lines(done.stderr)
    assert line == "error: task 'threshold' failed: ValueError: level 3.0 is above 1 second line"
    assert done.stderr.splitlines()[-1] == line
    assert "Traceback (most recent call last)" in done.stderr
    assert not out.exists()


def test_an_existing_output_file_is_not_overwritten(script: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    args = write_args(tmp_path, {"zarr_url": "/a", "marker": str(marker)})
    out = tmp_path / "out.json"
    out.write_text("precious")
    done = call(script, "--args-json", str(args), "--out-json", str(out))
    assert done.returncode != 0
    (line,) = error_lines(done.stderr)
    assert "already exists" in line
    assert out.read_text() == "precious"
    assert not marker.exists()  # refused before the task ran


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ((), "expected --args-json FILE --out-json FILE"),
        (("--args-json", "a.json"), "expected --args-json FILE --out-json FILE"),
        (("-j", "a.json", "--out-json", "o.json"), "either --args-json/--out-json"),
        (("--frobnicate",), "unrecognized arguments"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    script: Path, argv: tuple[str, ...], expected: str
) -> None:
    done = call(script, *argv)
    assert done.returncode == 2
    (line,) = error_lines(done.stderr)
    assert expected in line


def test_unreadable_arguments_file(script: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    done = call(script, "--args-json", str(bad), "--out-json", str(tmp_path / "o.json"))
    assert done.returncode == 2
    (line,) = error_lines(done.stderr)
    assert "must hold an object of named arguments, got list" in line
    done = call(script, "--args-json", str(tmp_path / "nope.json"), "--out-json", "o.json")
    assert done.returncode == 2
    assert "cannot read the arguments file" in error_lines(done.stderr)[0]


# Fractal's guide's full example, with its imports made to work (`typing` has no `dict`)
# and `run_fractal_task(task_function=...)` taken from taskloom instead.
GUIDE_EXAMPLE = '''
import logging
from typing import Any, Dict, Sequence

logger = logging.getLogger(__name__)


def prepare_metadata(
    *,
    input_paths: Sequence[str],
    output_path: str,
    metadata: Dict[str, Any],
    # Task-specific arguments
    num_components: int = 10,
) -> Dict[str, Any]:
    """
    Prepare metadata

    :param num_components: Number of components
    """

    list_components = [f"{ind:04d}" for ind in range(num_components)]
    metadata_update = {"component": list_components}
    logger.info(f"This is a log from prepare_metadata, with {num_components=}")
    return metadata_update


if __name__ == "__main__":
    from taskloom import run_cli as run_fractal_task

    run_fractal_task(task_function=prepare_metadata)
'''


def test_the_fractal_guide_example_runs_with_task_function(tmp_path: Path) -> None:
    script = tmp_path / "prepare_metadata.py"
    script.write_text(textwrap.dedent(GUIDE_EXAMPLE), encoding="utf-8")
    args = write_args(
        tmp_path,
        {"input_paths": ["/in"], "output_path": "/out", "metadata": {}, "num_components": 3},
    )
    out = tmp_path / "metadata.json"
    done = call(script, "-j", str(args), "--metadata-out", str(out))
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text()) == {"component": ["0000", "0001", "0002"]}
    assert "with num_components=3" in done.stderr


def test_run_cli_takes_the_task_once() -> None:
    import taskloom

    def noop() -> None:
        return None

    with pytest.raises(TypeError, match="takes the task once"):
        taskloom.run_cli()
    with pytest.raises(TypeError, match="takes the task once"):
        taskloom.run_cli(noop, task_function=noop)
