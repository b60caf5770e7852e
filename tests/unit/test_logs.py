"""The log lines of `taskloom serve` and `taskloom worker` (`observability/logs.py`): JSON
lines with the run's ids inside a run, in any thread; the plain lines as before."""

from __future__ import annotations

import io
import json
import logging
import threading
import warnings
from datetime import UTC, datetime
from typing import Any

import pytest

from taskloom import context as context_module
from taskloom.context import Context
from taskloom.observability.logs import announce, json_logging, logging_to_stderr


class _Sink:
    def report_progress(self, fraction: float, message: str | None) -> None:
        pass

    def report_log(self, level: str, message: str) -> None:
        pass


def _context(run_id: str = "run-1") -> Context:
    return Context(run_id=run_id, task="adder", attempt=2, timestamp=0, sink=_Sink())


def _records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_json_line_outside_a_run_has_time_level_logger_and_message() -> None:
    stream = io.StringIO()
    with logging_to_stderr("json", stream=stream):
        logging.getLogger("taskloom.engine").info("started %d", 3)
        logging.getLogger("elsewhere").debug("below INFO: not written")
    (record,) = _records(stream)
    assert list(record) == ["time", "level", "logger", "message"]
    assert record["level"] == "INFO"
    assert record["logger"] == "taskloom.engine"
    assert record["message"] == "started 3"
    assert record["time"].endswith("Z")
    written = datetime.fromisoformat(record["time"])
    assert written.utcoffset() == UTC.utcoffset(None)
    assert abs((datetime.now(UTC) - written).total_seconds()) < 60


def test_lines_logged_inside_a_run_carry_its_ids_in_its_thread_only() -> None:
    stream = io.StringIO()
    inside = threading.Event()

    def task_thread() -> None:
        token = context_module.set_current(_context())
        try:
            logging.getLogger("taskloom.tasks.adder").info("adding")
            logging.getLogger("some.library").warning("a library's line")
            inside.set()
        finally:
            context_module.reset_current(token)

    with logging_to_stderr("json", stream=stream):
        thread = threading.Thread(target=task_thread)
        thread.start()
        thread.join(timeout=10)
        assert inside.is_set()
        logging.getLogger("taskloom.engine").warning("not in a run")
    adding, library, outside = _records(stream)
    for record in (adding, library):
        assert (record["run_id"], record["task"], record["attempt"]) == ("run-1", "adder", 2)
    assert library["logger"] == "some.library"
    assert "run_id" not in outside


def test_fields_given_in_extra_are_kept_and_win_over_the_current_run() -> None:
    stream = io.StringIO()
    token = context_module.set_current(_context("current"))
    try:
        with logging_to_stderr("json", stream=stream):
            about = {"run_id": "other", "task": "t", "attempt": 1, "when": datetime(2030, 1, 2)}
            logging.getLogger("taskloom.engine").warning("about another run", extra=about)
    finally:
        context_module.reset_current(token)
    (record,) = _records(stream)
    assert (record["run_id"], record["task"], record["attempt"]) == ("other", "t", 1)
    assert record["when"] == "2030-01-02T00:00:00"


def test_an_exception_is_written_as_its_traceback_text() -> None:
    stream = io.StringIO()
    with logging_to_stderr("json", stream=stream):
        try:
            raise ValueError("no such thing")
        except ValueError:
            logging.getLogger("taskloom.engine").exception("it failed")
    (record,) = _records(stream)
    assert record["level"] == "ERROR"
    assert record["exc_info"].startswith("Traceback (most recent call last):")
    assert record["exc_info"].endswith("ValueError: no such thing")


def test_warnings_and_announcements_are_json_lines_too_and_the_handler_leaves() -> None:
    stream = io.StringIO()
    root_handlers = list(logging.getLogger().handlers)
    with logging_to_stderr("json", stream=stream):
        assert json_logging()
        # What `warnings.warn` calls once a warning is to be shown.
        warnings.showwarning(UserWarning("careful"), UserWarning, "tasks.py", 7)
        announce("worker w ready")
    assert not json_logging()
    assert logging.getLogger().handlers == root_handlers
    warned, announced = _records(stream)
    assert warned["logger"] == "py.warnings"
    assert warned["message"].startswith("tasks.py:7: UserWarning: careful")
    assert (announced["logger"], announced["message"]) == ("taskloom.cli", "worker w ready")


def test_plain_lines_are_taskloom_s_own_warnings_and_with_verbose_its_info() -> None:
    quiet, verbose = io.StringIO(), io.StringIO()
    with logging_to_stderr("plain", stream=quiet):
        logging.getLogger("taskloom.engine").info("hidden")
        logging.getLogger("taskloom.engine").warning("shown")
        logging.getLogger("other").warning("not taskloom's")
    with logging_to_stderr("plain", verbose=True, stream=verbose):
        logging.getLogger("taskloom.engine").info("shown now")
    assert quiet.getvalue() == "WARNING taskloom.engine: shown\n"
    assert verbose.getvalue() == "INFO taskloom.engine: shown now\n"
    assert logging.getLogger("taskloom").level == logging.NOTSET


def test_an_unknown_format_is_refused_naming_the_accepted_ones() -> None:
    with (
        pytest.raises(ValueError, match="'xml' is not one of plain, json"),
        logging_to_stderr("xml"),
    ):
        pass
