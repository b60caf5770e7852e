"""`taskloom workflow run|show|rerun` as real subprocesses against a SQLite file."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from taskloom.store import open_store

if TYPE_CHECKING:
    from conftest import Cli

pytestmark = pytest.mark.timeout(90)

TASKS = """
from pathlib import Path

import taskloom


def _called(name: str) -> None:
    with open("calls.log", "a", encoding="utf-8") as log:
        log.write(name + "\\n")


@taskloom.task
def numbers(n: int) -> list[int]:
    _called("numbers")
    return list(range(1, n + 1))


@taskloom.task
def square(x: int) -> int:
    _called("square")
    return x * x


@taskloom.task
def total(values: list[int]) -> int:
    _called("total")
    if Path("broken").exists():
        raise RuntimeError("the total is broken today")
    return sum(values)


@taskloom.task
def announce(value: int) -> str:
    _called("announce")
    return f"total {value}"
"""

FLOW = """
name: squares
inputs:
  n: {type: integer}
steps:
  listing:
    task: flow_tasks.py:numbers
    inputs: {n: "${inputs.n}"}
  squares:
    task: flow_tasks.py:square
    map: x
    inputs: {x: "${steps.listing.result}"}
  total:
    task: flow_tasks.py:total
    inputs: {values: "${steps.squares.result}"}
  announce:
    task: flow_tasks.py:announce
    inputs: {value: "${steps.total.result}"}
outputs:
  message: "${steps.announce.result}"
  total: "${steps.total.result}"
"""


@pytest.fixture
def flow(cli: Cli) -> Path:
    (cli.cwd / "flow_tasks.py").write_text(TASKS, encoding="utf-8")
    path = cli.cwd / "flow.yaml"
    path.write_text(FLOW, encoding="utf-8")
    return path


def calls(cli: Cli) -> list[str]:
    log = cli.cwd / "calls.log"
    return log.read_text(encoding="utf-8").split() if log.exists() else []


def run_count(cli: Cli) -> int:
    if not (cli.cwd / "taskloom.db").exists():
        return 0
    store = open_store(cli.database_url)
    try:
        return len(store.list_runs(limit=1000))
    finally:
        store.close()


def test_workflow_run_prints_the_outputs(cli: Cli, flow: Path) -> None:
    result = cli("workflow", "run", "flow.yaml", "n=3")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"message": "total 14", "total": 14}
    assert sorted(calls(cli)) == ["announce", "numbers", "square", "square", "square", "total"]


def test_invalid_inputs_and_workflows_exit_2_and_record_nothing(cli: Cli, flow: Path) -> None:
    result = cli("workflow", "run", "flow.yaml", "n=many")
    assert result.returncode == 2
    assert "'n'" in result.stderr
    assert "integer" in result.stderr

    (cli.cwd / "loop.yaml").write_text(
        FLOW.replace('"${inputs.n}"', '"${steps.total.result}"'), encoding="utf-8"
    )
    result = cli("workflow", "run", "loop.yaml", "n=3")
    assert result.returncode == 2
    assert "cycle" in result.stderr
    assert "step 'listing'" in result.stderr or "step 'total'" in result.stderr

    (cli.cwd / "unknown.yaml").write_text(
        FLOW.replace("flow_tasks.py:announce", "flow_tasks.py:vanished"), encoding="utf-8"
    )
    result = cli("workflow", "run", "unknown.yaml", "n=3")
    assert result.returncode == 2
    assert "step 'announce': unknown task" in result.stderr
    assert run_count(cli) == 0
    assert calls(cli) == []


def test_a_failed_workflow_is_shown_and_rerun_from_its_failure(cli: Cli, flow: Path) -> None:
    (cli.cwd / "broken").touch()
    failed = cli("workflow", "run", "flow.yaml", "n=2")
    assert failed.returncode == 1
    assert "step 'total' failed: RuntimeError: the total is broken today" in failed.stderr
    match = re.search(r"workflow run (\S+) \('workflow:squares'\) failed", failed.stderr)
    assert match is not None, failed.stderr
    run_id = match.group(1)

    shown = cli("workflow", "show", run_id)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert any("workflow squares" in line and "failed" in line for line in lines)
    assert any("listing" in line and "completed" in line for line in lines)
    assert any("squares" in line and "map of 2: 2 completed" in line for line in lines)
    assert any("total" in line and "failed" in line for line in lines)
    assert any("announce" in line and "skipped" in line for line in lines)

    (cli.cwd / "broken").unlink()
    (cli.cwd / "calls.log").unlink()
    again = cli("workflow", "rerun", run_id)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"message": "total 5", "total": 5}
    assert sorted(calls(cli)) == ["announce", "total"]  # listing and squares were reused

    document = json.loads(cli("workflow", "show", run_id, "--json").stdout)
    assert document["run"]["status"] == "failed"
    assert set(document["steps"]) == {"listing", "squares", "total", "announce"}


def test_show_refuses_a_run_that_is_not_a_workflow(cli: Cli, flow: Path) -> None:
    record = cli.json("run", "flow_tasks.py:square", "x=3", "--json")
    result = cli("workflow", "show", record["id"])
    assert result.returncode == 2
    assert "is not a workflow run" in result.stderr
