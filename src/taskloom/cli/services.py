"""`taskloom services` and `taskloom service ...`: watch and control the services of a
`taskloom serve` process (`cli/serve.py`) from any other process, through the store."""

from __future__ import annotations

import dataclasses
import getpass
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from ..runs import LogLine
from ..store import (
    ServiceAttributeRecord,
    ServiceLogLine,
    ServiceRecord,
    ServiceStartRecord,
    ServiceStore,
    Store,
    open_store,
)
from ..store.connect import sqlite_file
from ..tasks.validation import config_from_arguments, split_arguments
from .errors import EXIT_FAILED, EXIT_USAGE, CliError, reporting_errors
from .options import (
    DbOption,
    JsonOption,
    VerboseOption,
    database_url,
    display_url,
    dump_json,
    examples,
)
from .render import format_time, log_line_text, make_console
from .runs import _opened_store

if TYPE_CHECKING:
    pass

__all__ = [
    "SERVICES_EPILOG",
    "service_app",
    "services_command",
]

SERVICES_EPILOG = examples(
    ("taskloom services", "name, state, since, starts, restarts and last error"),
    ("taskloom services --json", "the saved records as a JSON list"),
)
STATUS_EPILOG = examples(
    ("taskloom service status read_sensor", "state, counts, last error and the last starts"),
    ("taskloom service status read_sensor --json", '{"service": {...}, "starts": [...]}'),
)
START_EPILOG = examples(
    ("taskloom service start read_sensor", "start it with its saved (or default) config"),
    ("taskloom service start read_sensor --config period=0.5", "with a config field"),
    ("taskloom service start read_sensor --config '{\"period\": 0.5}'", "config as JSON"),
)
STOP_EPILOG = examples(
    ("taskloom service stop read_sensor", "stop it; prints its state"),
)
RESTART_EPILOG = examples(
    ("taskloom service restart read_sensor", "stop and start again, same config"),
    ("taskloom service restart read_sensor --config period=2", "with a new config"),
)
LOGS_EPILOG = examples(
    ("taskloom service logs read_sensor", "the lines it logged, oldest first"),
    ("taskloom service logs read_sensor --follow", "and new ones as they come; Ctrl-C ends"),
)
SET_EPILOG = examples(
    ("taskloom service set SensorService readout_frequency=2", "its loops see 2.0 next"),
    ("taskloom service set SensorService mode=fast gain=3", "several at once, all or none"),
    ("taskloom service set SensorService '{\"ports\": [1, 2]}'", "values as a JSON object"),
)
GET_EPILOG = examples(
    ("taskloom service get SensorService", "each attribute, its value, who set it and when"),
    ("taskloom service get SensorService --json", '{"service", "values", "updated"}'),
    ("taskloom service get SensorService --watch", "and each change as it is saved"),
)

#: Seconds between two looks at the store while waiting for a request or following logs.
POLL = 0.05
FOLLOW_POLL = 0.2
LOG_PAGE = 1000

service_app = typer.Typer(
    help="Start, stop, restart and watch one service of a `taskloom serve` process.",
    no_args_is_help=True,
    epilog=examples(
        ("taskloom service status read_sensor", "one service in full"),
        ("taskloom service stop read_sensor", "ask the serving process to stop it"),
        ("taskloom service logs read_sensor --follow", "its log lines, live"),
        ("taskloom service set SensorService readout_frequency=2", "a live attribute"),
    ),
)

NameArgument = Annotated[
    str, typer.Argument(metavar="NAME", help="The service's name.", show_default=False)
]
ConfigOption = Annotated[
    list[str] | None,
    typer.Option(
        "--config",
        metavar="JSON|KEY=VALUE",
        help=(
            "The service's config: a JSON object, or KEY=VALUE (repeatable; values are "
            "read as JSON unless they are text). Default: the config it had."
        ),
        show_default=False,
    ),
]
WaitOption = Annotated[
    float,
    typer.Option(
        "--wait-timeout",
        min=0.1,
        metavar="SECONDS",
        help="How long to wait for the serving process to act on the request.",
    ),
]


# services, status -------------------------------------------------------------------------
def _record_dict(record: ServiceRecord) -> dict[str, Any]:
    return dataclasses.asdict(record)


def _error_text(record: ServiceRecord) -> str:
    error = record.last_error
    if error is None:
        return ""
    return f"{error.type}: {error.message}" if error.message else error.type


def _state_text(state: str) -> Text:
    styles = {"running": "green", "failed": "red", "restarting": "yellow", "starting": "cyan"}
    return Text(state, style=styles.get(state, ""))


def services_command(
    json_output: JsonOption = False,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """List the services known to the database and their state."""
    with reporting_errors(verbose=verbose), _opened_store(db) as store:
        records = store.list_services()
        if json_output:
            typer.echo(dump_json([_record_dict(r) for r in records]))
            return
        if not records:
            typer.echo("no services found (`taskloom serve FILE` registers them)", err=True)
            return
        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in ("name", "state", "since"):
            table.add_column(column, overflow="fold")
        table.add_column("starts", justify="right")
        table.add_column("restarts", justify="right")
        table.add_column("last error", overflow="fold")
        for record in records:
            table.add_row(
                record.name,
                _state_text(record.state),
                format_time(record.since),
                str(record.starts),
                str(record.restarts),
                _error_text(record),
            )
        make_console().print(table)


def _known(store: ServiceStore, name: str) -> ServiceRecord:
    record = store.get_service(name)
    if record is None:
        if store.get_service_attributes(name):
            raise CliError(
                f"{name!r} is a service class; its loops are services of their own "
                f"({name}.<loop>), its attributes are read with `taskloom service get {name}`"
            )
        known = ", ".join(r.name for r in store.list_services())
        hint = f"; known services: {known}" if known else ""
        raise CliError(f"unknown service {name!r}{hint}")
    return record


def _start_row(start: ServiceStartRecord) -> list[str]:
    error = start.error
    return [
        str(start.number),
        "restart" if start.restart else "start",
        format_time(start.started_at),
        format_time(start.finished_at),
        start.exit_reason or "-",
        "" if error is None else f"{error.type}: {error.message}",
    ]


@service_app.command("status", epilog=STATUS_EPILOG)
def status_command(
    name: NameArgument,
    json_output: JsonOption = False,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Show one service: state, counts, config, last error and its last starts."""
    with reporting_errors(verbose=verbose), _opened_store(db) as store:
        record = _known(store, name)
        starts = store.get_service_starts(name, limit=10)
        if json_output:
            document = {
                "service": _record_dict(record),
                "starts": [dataclasses.asdict(s) for s in starts],
            }
            typer.echo(dump_json(document))
            return
        console = make_console()
        console.print(Text.assemble((record.name, "bold"), " ", _state_text(record.state)))
        console.print(f"since     {format_time(record.since)}")
        console.print(f"starts    {record.starts} ({record.restarts} restarts)")
        if record.config is not None:
            console.print(f"config    {json.dumps(record.config, ensure_ascii=False)}")
        if record.stop_timed_out:
            console.print("the last stop gave up waiting for it (stop_timeout)", style="yellow")
        if record.last_error is not None:
            console.print(f"last error {_error_text(record)}", style="red")
            if verbose and record.last_error.traceback:
                console.print(record.last_error.traceback.rstrip(), markup=False)
        if starts:
            table = Table(box=None, header_style="bold", pad_edge=False, title_justify="left")
            for column in ("#", "by", "started", "ended", "exit", "error"):
                table.add_column(column, overflow="fold")
            for start in starts:
                table.add_row(*_start_row(start))
            console.print(table)


# start, stop, restart -----------------------------------------------------------------------
def _parse_config(service: str, values: Sequence[str] | None) -> Any:
    if not values:
        return None
    try:
        return config_from_arguments(values)
    except ValueError as exc:
        raise CliError(f"service {service!r}: {exc}") from exc


def _split_values(
    service: str, values: Sequence[str], *, what: str
) -> tuple[list[Any], dict[str, str]]:
    """The JSON objects and the KEY=VALUE pairs (their values as typed) among `values`."""
    try:
        return split_arguments(values, what=what)
    except ValueError as exc:
        raise CliError(f"service {service!r}: {exc}") from exc


def _control_store(db: str | None) -> Store:
    url = database_url(db)
    path = sqlite_file(url)
    if path is not None and not path.exists():
        raise CliError(
            f"no serving process uses {display_url(url)}: the database does not exist "
            "(start one with `taskloom serve FILE`)",
            exit_code=EXIT_FAILED,
        )
    return open_store(url)


def _wait_handled(store: ServiceStore, request_id: int, timeout: float) -> dict[str, Any] | None:
    """The outcome of a request, or None when nobody handled it in time (it is withdrawn)."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            request = store.get_service_request(request_id)
            if request is not None and request.handled_at is not None:
                outcome: dict[str, Any] = request.outcome or {}
                return outcome
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL)
    except KeyboardInterrupt:
        store.cancel_service_request(request_id)
        raise
    if store.cancel_service_request(request_id):
        return None
    request = store.get_service_request(request_id)  # handled just now
    return None if request is None else (request.outcome or {})


def _who() -> str:
    """Who asks, as requests record it: `cli:<the OS user>`."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in this environment
        return "cli"


def _control(
    db: str | None, name: str, action: str, config: Any, wait_timeout: float
) -> dict[str, Any]:
    store = _control_store(db)
    try:
        request_id = store.add_service_request(name, action, config, requested_by=_who())
        outcome = _wait_handled(store, request_id, wait_timeout)
    finally:
        store.close()
    if outcome is None:
        raise CliError(
            f"no serving process handled the {action} of service {name!r} within "
            f"{wait_timeout:g} s; the request was withdrawn (is `taskloom serve` running "
            "on this database?)",
            exit_code=EXIT_FAILED,
        )
    if not outcome.get("ok"):
        error = outcome.get("error") or {}
        kind = error.get("type", "")
        fields = error.get("errors") or []
        if kind == "AttributeValidationError":
            # Its message names the service and each attribute at fault, one a line.
            raise CliError(error.get("message") or "invalid attributes", exit_code=EXIT_USAGE)
        if fields:
            lines = [
                f"service {name!r}: config {f.get('field')!r}: {f.get('message')}" for f in fields
            ]
            raise CliError("\n".join(lines), exit_code=EXIT_USAGE)
        message = error.get("message") or f"the {action} of service {name!r} failed"
        code = (
            EXIT_USAGE if kind in ("UnknownServiceError", "InputValidationError") else EXIT_FAILED
        )
        raise CliError(message, exit_code=code)
    return outcome


def _report_state(outcome: dict[str, Any]) -> None:
    status = outcome.get("status") or {}
    typer.echo(f"service {status.get('name')!r} is {status.get('state')}")
    if status.get("stop_timed_out"):
        typer.echo(
            "warning: it ignored the stop for longer than its stop_timeout; it was given up on",
            err=True,
        )


@service_app.command("start", epilog=START_EPILOG)
def start_command(
    name: NameArgument,
    config: ConfigOption = None,
    wait_timeout: WaitOption = 10.0,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Ask the serving process to start a service; prints its state.

    Exit status: 0 started, 1 no serving process answered (or it is already started),
    2 unknown service or invalid config (it is not started).
    """
    with reporting_errors(verbose=verbose):
        value = _parse_config(name, config)
        _report_state(_control(db, name, "start", value, wait_timeout))


@service_app.command("stop", epilog=STOP_EPILOG)
def stop_command(
    name: NameArgument,
    wait_timeout: WaitOption = 10.0,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Ask the serving process to stop a service; prints its state.

    Waits for the stop, bounded by the service's stop_timeout; raise --wait-timeout for a
    service whose stop_timeout is longer.
    """
    with reporting_errors(verbose=verbose):
        _report_state(_control(db, name, "stop", None, wait_timeout))


@service_app.command("restart", epilog=RESTART_EPILOG)
def restart_command(
    name: NameArgument,
    config: ConfigOption = None,
    wait_timeout: WaitOption = 10.0,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Ask the serving process to stop (if started) and start a service again."""
    with reporting_errors(verbose=verbose):
        value = _parse_config(name, config)
        _report_state(_control(db, name, "restart", value, wait_timeout))


# logs -----------------------------------------------------------------------------------------
def _print_lines(lines: Sequence[ServiceLogLine]) -> None:
    console = make_console()
    for line in lines:
        text = log_line_text(
            LogLine(line.service, line.start_number, line.created_at, line.level, line.message)
        )
        console.print(Text(f"#{line.start_number} ", style="dim") + text)


@service_app.command("logs", epilog=LOGS_EPILOG)
def logs_command(
    name: NameArgument,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines until Ctrl-C.")
    ] = False,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Print the lines a service logged, oldest first (#N is the start that logged it).

    With --follow, new lines are printed as they are saved; Ctrl-C ends it with exit 0.
    """
    with reporting_errors(verbose=verbose), _opened_store(db) as store:
        _known(store, name)
        after_id = 0
        try:
            while True:
                page = store.get_service_logs(name, after_id=after_id, limit=LOG_PAGE)
                _print_lines(page)
                if page:
                    after_id = page[-1].id or after_id
                if len(page) == LOG_PAGE:
                    continue
                if not follow:
                    return
                time.sleep(FOLLOW_POLL)
        except KeyboardInterrupt:
            return  # the end of following, not a failure


# attributes -----------------------------------------------------------------------------------
@service_app.command("set", epilog=SET_EPILOG)
def set_command(
    name: Annotated[
        str,
        typer.Argument(
            metavar="CLASS",
            help="The service class's name (say SensorService).",
            show_default=False,
        ),
    ],
    assignments: Annotated[
        list[str],
        typer.Argument(
            metavar="ATTRIBUTE=VALUE...",
            help=(
                "New values: ATTRIBUTE=VALUE (read as the attribute's type reads text: as "
                "typed for text, else as JSON), or a JSON object. All are set or none."
            ),
            show_default=False,
        ),
    ],
    wait_timeout: WaitOption = 10.0,
    json_output: JsonOption = False,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Ask the serving process to set attributes of a service class while its loops run.

    Each loop sees a new value at its next read of the attribute; the change is saved with
    who made it (cli:<user>) and kept across restarts. Exit status: 0 set, 1 no serving
    process answered, 2 unknown class or attribute, or an invalid value (nothing is set).
    """
    with reporting_errors(verbose=verbose):
        objects, pairs = _split_values(name, assignments, what="a value")
        values: dict[str, Any] = {}
        for parsed in objects:
            if not isinstance(parsed, dict):
                raise CliError(f"service {name!r}: expected a JSON object of attributes")
            values.update(parsed)
        request = {"values": values, "texts": pairs}
        outcome = _control(db, name, "set", request, wait_timeout)
        attributes = outcome.get("attributes") or {}
        if json_output:
            typer.echo(dump_json(attributes))
            return
        current = attributes.get("values") or {}
        changed = [*values, *pairs]
        for key in dict.fromkeys(changed):
            typer.echo(f"{name}.{key} = {json.dumps(current.get(key), ensure_ascii=False)}")


@service_app.command("get", epilog=GET_EPILOG)
def get_command(
    name: Annotated[
        str,
        typer.Argument(
            metavar="CLASS",
            help="The service class's name (say SensorService).",
            show_default=False,
        ),
    ],
    watch: Annotated[
        bool,
        typer.Option("--watch", "-w", help="Then print each change as it is saved, until Ctrl-C."),
    ] = False,
    json_output: JsonOption = False,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Show the attributes of a service class: values, who set them and when.

    Read from the database (nobody in `set by`: the attribute holds its default). The
    serving process saves every change, from outside or from the class's own code, so
    any process on the database reads them; unknown class: exit 2.
    """
    with reporting_errors(verbose=verbose), _opened_store(db) as store:
        records = store.get_service_attributes(name)
        if not records:
            classes = sorted(
                {r.name.rsplit(".", 1)[0] for r in store.list_services() if "." in r.name}
            )
            hint = f"; service classes on this database: {', '.join(classes)}" if classes else ""
            raise CliError(f"unknown service class {name!r}{hint}")
        if json_output:
            typer.echo(dump_json(_attributes_document(name, records)))
        else:
            _print_attributes(records)
        if not watch:
            return
        seen = {r.name: (r.value, r.updated_at) for r in records}
        try:
            while True:
                time.sleep(FOLLOW_POLL)
                for record in store.get_service_attributes(name):
                    if seen.get(record.name) == (record.value, record.updated_at):
                        continue
                    seen[record.name] = (record.value, record.updated_at)
                    if json_output:
                        typer.echo(dump_json(dataclasses.asdict(record)))
                    else:
                        by = record.updated_by or "default"
                        typer.echo(
                            f"{format_time(record.updated_at)}  {record.name} = "
                            f"{json.dumps(record.value, ensure_ascii=False)}  ({by})"
                        )
        except KeyboardInterrupt:
            return  # the end of watching, not a failure


def _attributes_document(name: str, records: Sequence[ServiceAttributeRecord]) -> dict[str, Any]:
    return {
        "service": name,
        "values": {r.name: r.value for r in records},
        "updated": {
            r.name: {"at": r.updated_at, "by": r.updated_by}
            for r in records
            if r.updated_by is not None
        },
    }


def _print_attributes(records: Sequence[ServiceAttributeRecord]) -> None:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("attribute", "value", "set by", "at"):
        table.add_column(column, overflow="fold")
    for record in records:
        table.add_row(
            record.name,
            json.dumps(record.value, ensure_ascii=False),
            record.updated_by or Text("default", style="dim"),
            format_time(record.updated_at) if record.updated_by else "",
        )
    make_console().print(table)
