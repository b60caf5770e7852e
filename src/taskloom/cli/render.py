"""Rich rendering of tasks, runs, attempts and log lines for the terminal."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..runs import Attempt, ErrorInfo, LogLine, Run, RunStatus
from ..tasks.definition import TaskDefinition

__all__ = [
    "STATUS_STYLES",
    "format_duration",
    "format_time",
    "log_line_text",
    "make_console",
    "run_details",
    "runs_table",
    "task_description",
]

STATUS_STYLES: dict[str, str] = {
    RunStatus.PENDING: "yellow",
    RunStatus.RUNNING: "cyan",
    RunStatus.COMPLETED: "green",
    RunStatus.FAILED: "red",
    RunStatus.CANCELLED: "magenta",
    RunStatus.SKIPPED: "dim",
}

LEVEL_STYLES: dict[str, str] = {
    "DEBUG": "dim",
    "INFO": "blue",
    "WARNING": "yellow",
    "ERROR": "red",
    "CRITICAL": "bold red",
}

#: Width of output that goes to a file or a pipe: Rich would use 80 columns there, which
#: cuts run ids and log lines that `grep` and `less` handle well at full length.
PIPE_WIDTH = 200
COMPACT_JSON_WIDTH = 72


def make_console(*, stderr: bool = False) -> Console:
    """A console for stdout (or stderr); wide when it is not a terminal."""
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPE_WIDTH
    return console


# values ---------------------------------------------------------------------------------
def format_time(timestamp: float | None, *, with_date: bool = True) -> str:
    """Seconds since the epoch as local time; `-` for none."""
    if timestamp is None:
        return "-"
    moment = datetime.fromtimestamp(timestamp)
    if with_date:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _status_text(status: str) -> Text:
    return Text(str(status), style=STATUS_STYLES.get(status, ""))


def _json_text(value: Any) -> Text:
    """JSON on one line when it is short, indented otherwise."""
    compact = json.dumps(value, ensure_ascii=False)
    if len(compact) <= COMPACT_JSON_WIDTH:
        return Text(compact)
    return Text(json.dumps(value, ensure_ascii=False, indent=2))


def _run_duration(run: Run) -> Text:
    if run.duration is not None:
        return Text(format_duration(run.duration))
    if run.started_at is not None and not run.is_finished:
        return Text(f"{format_duration(time.time() - run.started_at)} so far", style="dim")
    return Text("-")


def _error_line(error: ErrorInfo | None) -> str:
    if error is None:
        return ""
    return f"{error.type}: {error.message}" if error.message else error.type


# runs -----------------------------------------------------------------------------------
def runs_table(runs: Sequence[Run]) -> Table:
    """One row per run: id, task, status, attempts, created, duration."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("id", no_wrap=True)
    table.add_column("task", overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("attempts", justify="right")
    table.add_column("created", no_wrap=True)
    table.add_column("duration", justify="right", no_wrap=True)
    for run in runs:
        table.add_row(
            run.id,
            run.task,
            _status_text(run.status),
            f"{run.attempts}/{run.max_attempts}",
            format_time(run.created_at),
            _run_duration(run),
        )
    return table


def log_line_text(line: LogLine, *, with_time: bool = True) -> Text:
    """`12:00:01.123 INFO message`, the level coloured."""
    text = Text()
    if with_time:
        text.append(format_time(line.created_at, with_date=False) + " ", style="dim")
    text.append(f"{line.level:<7} ", style=LEVEL_STYLES.get(line.level, ""))
    text.append(line.message)
    return text


def _attempts_table(attempts: Sequence[Attempt]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("started", no_wrap=True)
    table.add_column("finished", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("error", overflow="fold")
    for attempt in attempts:
        table.add_row(
            str(attempt.number),
            format_time(attempt.started_at),
            format_time(attempt.finished_at),
            _status_text(attempt.status),
            _error_line(attempt.error),
        )
    return table


def _section(title: str) -> Text:
    return Text(f"\n{title}", style="bold underline")


def _executor_text(attempts: Sequence[Attempt]) -> str | None:
    """What made the attempts' calls (`serial`, `dask tcp://...` and its dashboard): once
    when all of them say the same, else each attempt's; None when none says (an older
    taskloom recorded them)."""
    known = [a for a in attempts if a.executor]
    if not known:
        return None

    def text(attempt: Attempt) -> str:
        board = f"  dashboard {attempt.dashboard}" if attempt.dashboard else ""
        return f"{attempt.executor}{board}"

    if len({(a.executor, a.dashboard) for a in known}) == 1:
        return text(known[0])
    return "\n".join(f"#{a.number} {text(a)}" for a in known)


def run_details(run: Run, attempts: Sequence[Attempt], logs: Sequence[LogLine]) -> Group:
    """Everything about one run: its fields, attempts, result or error, and log lines."""
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold", no_wrap=True)
    fields.add_column(overflow="fold")
    fields.add_row("run", run.id)
    fields.add_row("task", run.task)
    fields.add_row("status", _status_text(run.status))
    if run.cancel_requested and not run.is_finished:
        fields.add_row("", Text("cancellation requested", style="magenta"))
    fields.add_row("inputs", _json_text(run.inputs))
    fields.add_row("config", _json_text(run.config) if run.config is not None else "-")
    fields.add_row("priority", str(run.priority))
    fields.add_row("parent", run.parent_id or "-")
    if run.idempotency_key is not None:
        fields.add_row("idempotency key", run.idempotency_key)
    fields.add_row("attempts", f"{run.attempts} of at most {run.max_attempts}")
    fields.add_row("worker", run.worker_id or "-")
    executor = _executor_text(attempts)
    if executor is not None:
        fields.add_row("executor", executor)
    fields.add_row("created", format_time(run.created_at))
    if run.scheduled_at is not None and not run.is_finished:
        fields.add_row("next attempt", format_time(run.scheduled_at))
    fields.add_row("started", format_time(run.started_at))
    fields.add_row("finished", format_time(run.finished_at))
    fields.add_row("duration", _run_duration(run))
    if run.progress is not None:
        progress = f"{run.progress:.0%}"
        if run.progress_message:
            progress += f"  {run.progress_message}"
        fields.add_row("progress", progress)

    parts: list[RenderableType] = [fields]
    if attempts:
        parts += [_section("Attempts"), _attempts_table(attempts)]
    if run.status == RunStatus.COMPLETED:
        parts += [_section("Result"), _json_text(run.result)]
    elif run.error is not None:
        title = "Error" if run.is_finished else "Last error"
        parts += [_section(title), Text(_error_line(run.error), style="red")]
        if run.error.traceback:
            parts.append(Text(run.error.traceback.rstrip(), style="dim"))
    parts.append(_section(f"Logs ({len(logs)} lines)"))
    parts += [log_line_text(line) for line in logs] or [Text("no log lines", style="dim")]
    return Group(*parts)


# tasks ----------------------------------------------------------------------------------
def _schema_type(schema: Mapping[str, Any]) -> str:
    """A short, readable type of a JSON Schema: `integer`, `"!" | "."`, `list[string]`."""
    if "enum" in schema:
        return " | ".join(json.dumps(value, ensure_ascii=False) for value in schema["enum"])
    if "const" in schema:
        return json.dumps(schema["const"], ensure_ascii=False)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " | ".join(_schema_type(option) for option in schema[key])
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    kind = schema.get("type")
    if kind == "array":
        items = schema.get("items")
        return f"list[{_schema_type(items)}]" if isinstance(items, Mapping) else "list"
    if isinstance(kind, list):
        return " | ".join(str(k) for k in kind)
    return str(kind) if kind else "any"


def _input_lines(schema: Mapping[str, Any]) -> Iterable[Text]:
    properties: Mapping[str, Any] = schema.get("properties") or {}
    required = set(schema.get("required") or ())
    for name, prop in properties.items():
        line = Text("  ")
        line.append(name, style="bold")
        line.append(f": {_schema_type(prop)}")
        if name in required:
            line.append(", required", style="yellow")
        elif "default" in prop:
            line.append(f", default {json.dumps(prop['default'], ensure_ascii=False)}", style="dim")
        else:
            line.append(", optional", style="dim")
        if prop.get("description"):
            line.append(f"  {prop['description']}", style="italic")
        yield line


def task_description(definition: TaskDefinition) -> Group:
    """A task's name, label, description and inputs."""
    title = Text(definition.name, style="bold cyan")
    if definition.label and definition.label != definition.name:
        title.append(f"  ({definition.label})")
    parts: list[RenderableType] = [title]
    if definition.description:
        parts.append(Text(f"  {definition.description}"))
    inputs = list(_input_lines(definition.input_schema))
    parts += inputs or [Text("  no inputs", style="dim")]
    return Group(*parts)
