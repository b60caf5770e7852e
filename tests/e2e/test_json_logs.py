"""`--log-format json` (and `TASKLOOM_LOG_FORMAT`): every stderr line of a real `taskloom
worker` and `taskloom serve` is a JSON object; lines logged inside a run, in a thread or
a coroutine, and the engine's lines about a run carry its id; uvicorn's access lines go
through the same handler; a bad value is a usage error naming the option."""

from __future__ import annotations

import json
import signal
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from test_server import Served
from test_worker_cli import wait_for_line

if TYPE_CHECKING:
    from conftest import Cli

pytestmark = pytest.mark.timeout(90)

LOGGED_TASKS = """
import logging

import taskloom


@taskloom.task
def in_thread(n: int, context: taskloom.Context) -> int:
    context.logger.info("in a thread %d", n)
    logging.getLogger("some.library").warning("a library's warning")
    return n


@taskloom.task(on_success="no_such_task")
async def in_coroutine(n: int, context: taskloom.Context) -> int:
    context.logger.info("in a coroutine %d", n)
    return n
"""


def _parsed(text: str) -> list[dict[str, Any]]:
    lines = text.splitlines()
    assert lines, "nothing was logged"
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line!r}\n{text}")
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record), record
    return records


def test_every_line_of_a_worker_is_json_and_lines_in_a_run_carry_its_id(cli: Cli) -> None:
    (cli.cwd / "logged_tasks.py").write_text(LOGGED_TASKS, encoding="utf-8")
    worker = cli.start("worker", "logged_tasks.py", "--log-format", "json")
    ready = json.loads(wait_for_line(worker, " ready: "))
    assert (ready["level"], ready["logger"]) == ("INFO", "taskloom.cli")
    threaded = cli("run", "logged_tasks.py:in_thread", "n=1", "--no-wait").stdout.strip()
    awaited = cli("run", "logged_tasks.py:in_coroutine", "n=2", "--no-wait").stdout.strip()
    cli.wait_for_run("in_thread", "completed")
    cli.wait_for_run("in_coroutine", "completed")
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    records = _parsed(err)

    def said(message: str) -> dict[str, Any]:
        (found,) = [r for r in records if r["message"] == message]
        return found

    for message, run_id, task in (
        ("in a thread 1", threaded, "in_thread"),
        ("a library's warning", threaded, "in_thread"),
        ("in a coroutine 2", awaited, "in_coroutine"),
    ):
        record = said(message)
        assert (record["run_id"], record["task"], record["attempt"]) == (run_id, task, 1)
    # The engine's own line about a run, logged outside it: its follow-up cannot start.
    (follow_up,) = [r for r in records if "no_such_task" in r["message"]]
    assert (follow_up["logger"], follow_up["level"]) == ("taskloom.engine", "WARNING")
    assert (follow_up["run_id"], follow_up["task"]) == (awaited, "in_coroutine")
    assert records[-1]["message"].endswith("were refused by their fence")
    assert "run_id" not in records[-1]


def test_a_served_process_logs_json_access_lines_from_the_environment(cli: Cli) -> None:
    cli.env["TASKLOOM_LOG_FORMAT"] = "json"
    served = Served(cli.start("serve", "examples/basics.py", "--access-log"))
    with httpx.Client(base_url=served.url, timeout=10) as http:
        assert http.get("/api/health").status_code == 200
        assert http.get("/api/runs", params={"token": "s3cret"}).status_code == 200
    code, err = served.stop()
    assert code == 0, err
    records = _parsed(err)
    access = [r for r in records if r["logger"] == "uvicorn.access"]
    assert [r["message"].split('"')[1] for r in access] == [
        "GET /api/health HTTP/1.1",
        "GET /api/runs?token=[redacted] HTTP/1.1",
    ]
    assert "s3cret" not in err
    assert records[-1]["message"] == "stopped"
    # What a person reads on stdout stays as it was.
    assert served.url.startswith("http://127.0.0.1:")


@pytest.mark.parametrize("where", ["option", "environment"])
def test_an_unknown_log_format_is_a_usage_error_naming_the_option(cli: Cli, where: str) -> None:
    if where == "option":
        result = cli("worker", "long_tasks.py", "--log-format", "xml")
    else:
        cli.env["TASKLOOM_LOG_FORMAT"] = "xml"
        result = cli("serve", "long_tasks.py")
    assert result.returncode == 2
    text = " ".join(result.stderr.replace("│", " ").split())
    assert "Invalid value for '--log-format'" in text
    assert "'xml' is not one of 'plain', 'json'" in text
