"""The `taskloom` command, run as a real subprocess against a SQLite file."""

from __future__ import annotations

import json
import signal
import subprocess
from typing import TYPE_CHECKING

import pytest

from taskloom.store.migrate import HEAD_REVISION

if TYPE_CHECKING:  # the fixture's class; conftest modules are not imported by name
    from conftest import Cli

pytestmark = pytest.mark.timeout(60)

ADDER = "examples/basics.py:adder"


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def finish(process: subprocess.Popen[str], timeout: float = 20) -> tuple[str, str]:
    return process.communicate(timeout=timeout)


# run ------------------------------------------------------------------------------------
def test_run_prints_the_result_as_json(cli: Cli) -> None:
    result = cli("run", ADDER, "a=1", "b=2")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "3\n"


def test_run_json_prints_the_run_record(cli: Cli) -> None:
    record = cli.json("run", ADDER, "a=1", "b=2", "--json")
    assert record["task"] == "adder"
    assert record["status"] == "completed"
    assert record["result"] == 3
    assert record["inputs"] == {"a": 1, "b": 2}
    assert record["attempts"] == 1
    assert record["error"] is None


def test_inputs_file_is_read_and_pairs_override_it(cli: Cli) -> None:
    (cli.cwd / "inputs.json").write_text('{"a": 5, "b": 1}', encoding="utf-8")
    result = cli("run", ADDER, "--inputs", "inputs.json", "b=10")
    assert (result.returncode, result.stdout) == (0, "15\n"), result.stderr

    missing = cli("run", ADDER, "--inputs", "missing.json")
    assert missing.returncode == 2
    assert error_lines(missing.stderr) == [
        "error: cannot read the inputs file 'missing.json': No such file or directory"
    ]


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        pytest.param(
            ["a=one", "b=2"],
            ["error: task 'adder': input 'a': expected an integer, got 'one'"],
            id="wrong-type",
        ),
        pytest.param(
            ["a=1"], ["error: task 'adder': input 'b': missing required input"], id="missing"
        ),
        pytest.param(
            ["a=one"],
            [
                "error: task 'adder': input 'a': expected an integer, got 'one'",
                "error: task 'adder': input 'b': missing required input",
            ],
            id="one-line-per-field",
        ),
        pytest.param(
            ["a=1", "b=2", "c=3"],
            ["error: task 'adder': input 'c': unknown input; expected one of: a, b"],
            id="unknown-key",
        ),
        pytest.param(
            ["a=1", "b"],
            ["error: task 'adder': expected an input as KEY=VALUE, got 'b'"],
            id="not-a-pair",
        ),
    ],
)
def test_invalid_inputs_exit_2_and_record_nothing(
    cli: Cli, pairs: list[str], expected: list[str]
) -> None:
    result = cli("run", ADDER, *pairs)
    assert result.returncode == 2
    assert error_lines(result.stderr) == expected
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert cli.json("runs", "--json") == []


@pytest.mark.parametrize(
    "target",
    [
        "no_such_task",
        "examples/basics.py:no_such_attr",
        "no_such_file.py:adder",
        "no_such_module:adder",
        "examples/basics.py",  # several tasks: which one?
    ],
)
def test_unknown_task_or_bad_target_exits_2(cli: Cli, target: str) -> None:
    result = cli("run", target, "a=1")
    assert result.returncode == 2
    assert len(error_lines(result.stderr)) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_failing_task_exits_1_and_show_displays_the_error(cli: Cli) -> None:
    result = cli("run", "examples/basics.py:fail", "message=it broke", "--json")
    assert result.returncode == 1
    run = json.loads(result.stdout)  # --json prints the record whatever the outcome
    assert run["status"] == "failed"
    assert error_lines(result.stderr) == [
        f"error: task 'fail' failed (run {run['id']}): RuntimeError: it broke"
    ]
    assert "Traceback" not in result.stderr

    verbose = cli("run", "examples/basics.py:fail", "message=again", "--verbose")
    assert verbose.returncode == 1
    assert verbose.stdout == ""
    assert "Traceback (most recent call last)" in verbose.stderr

    shown = cli("show", run["id"])
    assert shown.returncode == 0, shown.stderr
    assert "failed" in shown.stdout
    assert "RuntimeError: it broke" in shown.stdout
    assert "Traceback (most recent call last)" in shown.stdout
    assert "raise RuntimeError(message)" in shown.stdout


# runs, show -----------------------------------------------------------------------------
def test_runs_in_another_process_lists_the_run(cli: Cli) -> None:
    first = cli.json("run", ADDER, "a=1", "b=2", "--json")
    listed = cli("runs")
    assert listed.returncode == 0, listed.stderr
    [row] = [line for line in listed.stdout.splitlines() if first["id"] in line]
    assert "adder" in row
    assert "completed" in row

    filtered = cli.json("runs", "--json", "--task", "adder", "--status", "completed")
    assert [run["id"] for run in filtered] == [first["id"]]


def test_show_displays_inputs_attempts_and_log_lines(cli: Cli) -> None:
    result = cli("run", "examples/basics.py:slow_count", "n=3", "--json")
    assert result.returncode == 0, result.stderr
    # Log lines go to stderr as they arrive; stdout carries only the record.
    assert "counted 1 of 3" in result.stderr
    run_id = json.loads(result.stdout)["id"]

    shown = cli("show", run_id)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert run_id in text
    assert '{"n": 3}' in text
    assert "Attempts" in text
    assert "completed" in text
    for i in (1, 2, 3):
        assert f"counted {i} of 3" in text
    assert "100%" in text

    document = cli.json("show", run_id, "--json")
    assert document["run"]["inputs"] == {"n": 3}
    assert [a["status"] for a in document["attempts"]] == ["completed"]
    assert [line["message"] for line in document["logs"]] == [
        "counted 1 of 3",
        "counted 2 of 3",
        "counted 3 of 3",
    ]


def test_show_and_cancel_of_an_unknown_run_exit_2(cli: Cli) -> None:
    for command in ("show", "cancel"):
        result = cli(command, "no-such-run")
        assert result.returncode == 2
        assert error_lines(result.stderr) == ["error: no run with id 'no-such-run'"]


# stopping runs --------------------------------------------------------------------------
def test_ctrl_c_cancels_the_run_and_exits_130(cli: Cli) -> None:
    process = cli.start("run", "long_tasks.py:nap", "seconds=60")
    run = cli.wait_for_run("nap", "running")
    process.send_signal(signal.SIGINT)
    out, err = finish(process)
    assert process.returncode == 130, err
    assert out == ""
    assert "interrupted" in err
    assert "Traceback" not in err
    assert cli.json("show", run["id"], "--json")["run"]["status"] == "cancelled"


def test_cancel_from_another_process_stops_the_run(cli: Cli) -> None:
    process = cli.start("run", "long_tasks.py:block", "seconds=60")
    run = cli.wait_for_run("block", "running")
    cancelled = cli("cancel", run["id"])
    assert cancelled.returncode == 0, cancelled.stderr
    # The request is recorded; the process running it stops it. Said as a request while
    # that process still runs, or as done when it has already stopped the run and exited
    # by the time this command looks (it hears the request within milliseconds).
    name = f"run {run['id']} of task 'block'"
    assert cancelled.stdout.startswith(
        (
            f"{name}: cancellation requested; it is running in another process",
            f"{name}: cancelled\n",
        )
    ), cancelled.stdout
    out, err = finish(process)
    assert process.returncode == 1, err
    assert out == ""
    assert error_lines(err) == [f"error: run {run['id']} of task 'block' was cancelled"]
    assert cli.json("show", run["id"], "--json")["run"]["status"] == "cancelled"


# db, help -------------------------------------------------------------------------------
def test_db_upgrade_creates_the_schema_and_current_prints_the_head(cli: Cli) -> None:
    fresh = f"sqlite:///{cli.cwd / 'fresh.db'}"
    before = cli("db", "current", "--db", fresh)
    assert (before.returncode, before.stdout) == (0, "none\n")
    assert not (cli.cwd / "fresh.db").exists()

    upgraded = cli("db", "upgrade", "--db", fresh)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"from revision none to {HEAD_REVISION}" in upgraded.stdout

    current = cli("db", "current", "--db", fresh)
    assert current.returncode == 0, current.stderr
    assert current.stdout.split()[0] == HEAD_REVISION


def test_tasks_lists_the_examples(cli: Cli) -> None:
    described = cli.json("tasks", "examples/basics.py", "--json")
    assert [task["name"] for task in described] == ["adder", "greet", "slow_count", "fail"]
    listed = cli("tasks", "examples/basics.py:adder")
    assert listed.returncode == 0, listed.stderr
    assert "Add two numbers." in listed.stdout
    assert "a: integer, required" in listed.stdout


def test_help_shows_examples(cli: Cli) -> None:
    result = cli("run", "--help")
    assert result.returncode == 0
    assert "taskloom run examples/basics.py:adder a=1 b=2" in result.stdout
