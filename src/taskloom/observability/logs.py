"""How `taskloom serve` and `taskloom worker` log on stderr: plain lines for people, or
one JSON object per line for a log shipper (`--log-format json`, `TASKLOOM_LOG_FORMAT`).

A JSON line holds `time` (ISO 8601, UTC), `level`, `logger` and `message`; `exc_info`
(the traceback's text) when the record has one; `run_id`, `task` and `attempt` when it
was logged while an attempt executes (the run's context, a context variable that asyncio
tasks and the engine's threads carry) or by the engine about a run (which it passes
in `extra`);
`trace_id` and `span_id` when a span is current (with OpenTelemetry's SDK); and any
other field a caller passed in `extra`. uvicorn's error and access lines go through the
same handler, and so do Python's warnings.

The JSON is written by python-json-logger rather than by a formatter of our own: it
already does what a small one would get wrong over time, such as turning any `extra`
value (a datetime, a path, an exception) into JSON rather than failing the line, the
renaming of the record's fields, and ISO timestamps; what is taskloom's own here is only
which fields a line carries.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Literal, TextIO, get_args

from pythonjsonlogger.json import JsonFormatter

from ..context import current_context
from . import tracing

__all__ = [
    "DEFAULT_LOG_FORMAT",
    "LOG_FORMATS",
    "LOG_FORMAT_ENV",
    "JsonLineFormatter",
    "LogFormat",
    "announce",
    "json_logging",
    "logging_to_stderr",
    "uvicorn_to_root",
]

LogFormat = Literal["plain", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = get_args(LogFormat)
DEFAULT_LOG_FORMAT: LogFormat = "plain"
LOG_FORMAT_ENV = "TASKLOOM_LOG_FORMAT"

PLAIN_FORMAT = "%(levelname)s %(name)s: %(message)s"

#: Record attributes that are not fields of a line: the standard ones python-json-logger
#: leaves out, `taskName` (Python 3.12), and uvicorn's copy of a message with colours.
_NOT_FIELDS = (
    "args",
    "asctime",
    "created",
    "exc_info",
    "exc_text",
    "filename",
    "funcName",
    "levelname",
    "levelno",
    "lineno",
    "module",
    "msecs",
    "message",
    "msg",
    "name",
    "pathname",
    "process",
    "processName",
    "relativeCreated",
    "stack_info",
    "thread",
    "threadName",
    "taskName",
    "color_message",
)

_json_handler: logging.Handler | None = None
_cli_logger = logging.getLogger("taskloom.cli")


def uvicorn_to_root() -> dict[str, Any]:
    """uvicorn's logging config while JSON lines are logged: its loggers lose the handlers
    its default config gives them and hand their records on to the root logger's."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "loggers": {
            name: {"handlers": [], "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }


class JsonLineFormatter(JsonFormatter):
    """One JSON object per record: the fields above."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            reserved_attrs=_NOT_FIELDS,
            json_ensure_ascii=False,
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        # First, so a person reading the raw line sees it first.
        moment = datetime.fromtimestamp(record.created, UTC)
        log_data["time"] = moment.isoformat().replace("+00:00", "Z")
        super().add_fields(log_data, record, message_dict)
        context = current_context()
        if context is not None and "run_id" not in log_data:
            log_data["run_id"] = context.run_id
            log_data["task"] = context.task
            log_data["attempt"] = context.attempt
        ids = tracing.current_ids()
        if ids is not None:
            log_data.setdefault("trace_id", ids[0])
            log_data.setdefault("span_id", ids[1])


def announce(message: str) -> None:
    """A line about the process itself (ready, stopping) on stderr: its text, or a JSON
    line (INFO, logger `taskloom.cli`) while JSON lines are logged."""
    if _json_handler is not None:
        _cli_logger.info(message)
    else:
        print(message, file=sys.stderr, flush=True)


def json_logging() -> bool:
    """Whether this process logs JSON lines now (inside `logging_to_stderr("json")`)."""
    return _json_handler is not None


@contextlib.contextmanager
def logging_to_stderr(
    log_format: str = DEFAULT_LOG_FORMAT, *, verbose: bool = False, stream: TextIO | None = None
) -> Iterator[None]:
    """Log on stderr (or `stream`) for the time of the block.

    `plain`: taskloom's own warnings and errors (`--verbose`: its info lines too, among
    them the services' log lines), as `LEVEL logger: message`. `json`: every record of
    level INFO and above that reaches the root logger (taskloom's, the tasks', uvicorn's,
    Python's warnings), one JSON object per line.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format {log_format!r} is not one of {', '.join(LOG_FORMATS)}")
    global _json_handler
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    own = logging.getLogger("taskloom")
    level = own.level
    if log_format == "plain":
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
        handler.setLevel(logging.INFO if verbose else logging.WARNING)
        attached_to = own
        if verbose:
            own.setLevel(logging.INFO)
    else:
        handler.setFormatter(JsonLineFormatter())
        handler.setLevel(logging.INFO)
        attached_to = logging.getLogger()
        if own.getEffectiveLevel() > logging.INFO:
            own.setLevel(logging.INFO)
        logging.captureWarnings(True)
        _json_handler = handler
    attached_to.addHandler(handler)
    try:
        yield
    finally:
        attached_to.removeHandler(handler)
        own.setLevel(level)
        if _json_handler is handler:
            _json_handler = None
            logging.captureWarnings(False)
