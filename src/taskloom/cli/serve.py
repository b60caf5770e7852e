"""`taskloom serve`: the tasks, services and pipelines of the targets, served over HTTP
with the dashboard, until SIGINT or SIGTERM."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .. import __version__
from ..exceptions import ExecutorUnavailableError
from ..observability.logs import DEFAULT_LOG_FORMAT, announce, logging_to_stderr
from ..observability.tracing import tracing_from_environment
from ..processes import Served, load_served, run_to_end, serve
from ..services.supervisor import Supervisor
from ..store.connect import sqlite_file
from ..workflows import WorkflowLimits
from ..workflows.limits import DEFAULT_MAX_MAP_ITEMS, DEFAULT_MAX_STEPS
from .db import retention_policy
from .errors import EXIT_FAILED, EXIT_USAGE, CliError, print_error, reporting_errors
from .options import (
    DaskOption,
    DbOption,
    LogFormatOption,
    MaxItemsOption,
    MaxStepsOption,
    RetentionOption,
    VerboseOption,
    database_url,
    display_url,
    examples,
)

if TYPE_CHECKING:
    from ..engine import Engine
    from ..server.http import HttpServer

__all__ = ["SERVE_EPILOG", "serve_command"]

SERVE_EPILOG = examples(
    ("taskloom serve examples/", "serve the tasks and services of a folder's files over HTTP"),
    ("taskloom serve examples/services.py --port 0", "on a free port (printed); Ctrl-C stops"),
    ("taskloom serve examples/ --host 0.0.0.0", "on every address: needs a token"),
    ("taskloom serve mypackage.services --db postgresql://user@host/taskloom", "a module"),
)


# serve ----------------------------------------------------------------------------------
def serve_command(
    targets: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[TARGETS]...",
            help=(
                "Files (path/file.py) or modules whose tasks, services and pipelines to "
                "serve; the packages collected in the database are served too, so none "
                "are needed for those."
            ),
            show_default=False,
        ),
    ] = None,
    db: DbOption = None,
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            envvar="TASKLOOM_HOST",
            metavar="ADDRESS",
            show_default=False,
            help=(
                "Address to listen on. Default: 127.0.0.1. Any address other than loopback "
                "needs a token (`taskloom token create`)."
            ),
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            envvar="TASKLOOM_PORT",
            min=0,
            max=65535,
            show_default=False,
            help="Port to listen on. Default: 8321; 0 picks a free port (printed).",
        ),
    ] = None,
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log",
            help="Print a line per HTTP request on stdout (token= values redacted).",
        ),
    ] = False,
    allowed_hosts: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            metavar="NAME",
            show_default=False,
            help=(
                "A name the Host header may carry besides localhost, 127.0.0.1 and [::1] "
                "(repeat for several; *.example.org for every name under it). Also "
                "TASKLOOM_ALLOWED_HOSTS, comma-separated. Off loopback, any Host is "
                "accepted unless names are given."
            ),
        ),
    ] = None,
    max_body: Annotated[
        str | None,
        typer.Option(
            "--max-body",
            metavar="SIZE",
            show_default=False,
            help=(
                "The largest request body read, in bytes or as 512K, 16M, 1G; larger "
                "ones get 413. Default: 16M. Also TASKLOOM_MAX_BODY."
            ),
        ),
    ] = None,
    max_steps: MaxStepsOption = DEFAULT_MAX_STEPS,
    max_items: MaxItemsOption = DEFAULT_MAX_MAP_ITEMS,
    log_format: LogFormatOption = DEFAULT_LOG_FORMAT,
    no_worker: Annotated[
        bool,
        typer.Option(
            "--no-worker",
            help=(
                "Execute no runs here: serve the API and the dashboard only; runs wait "
                "for `taskloom worker` processes on the same database."
            ),
        ),
    ] = False,
    retention: RetentionOption = None,
    dask: DaskOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Serve tasks and services over HTTP until Ctrl-C or SIGTERM.

    The API is under /api (OpenAPI at /api/openapi.json), the dashboard at /. Starts the
    `autostart` services, performs the requests of `taskloom service start|stop|restart`,
    and on SIGINT or SIGTERM stops every service (each within its stop_timeout) and exits
    0. When an `exit_on_failure` service has failed for good, it stops the others and
    exits 1.
    """
    # Imported here: the web stack is only needed by this command.
    from ..server.http import HttpServer, ServerStartError
    from ..server.settings import ServerSettings, SettingsError, parse_size
    from ..server.tokens import AuthError

    with logging_to_stderr(log_format, verbose=verbose), reporting_errors(verbose=verbose):
        # Without targets it serves the packages collected in the database (`taskloom
        # package add`) and those installed with entry points: nothing else is needed.
        policy = retention_policy(retention)
        targets = targets or []
        served = load_served(targets)
        url = database_url(db)
        try:
            settings = ServerSettings.from_env(
                host=host,
                port=port,
                database_url=url,
                access_log=access_log or None,
                allowed_hosts=allowed_hosts,
                max_body=parse_size(max_body, what="--max-body") if max_body else None,
            )
        except SettingsError as exc:
            raise CliError(exc.message) from exc
        http = HttpServer(settings, database=_database_text(url), pipelines=served.pipelines)
        with tracing_from_environment():
            try:
                result = run_to_end(
                    serve(
                        served,
                        url,
                        workflow_limits=WorkflowLimits(
                            max_steps=max_steps, max_map_items=max_items
                        ),
                        surfaces=[http],
                        worker=not no_worker,
                        retention=policy,
                        dask=dask or None,
                        on_ready=lambda engine, supervisor: _announce(
                            served, engine, supervisor, url, targets, http
                        ),
                        on_stopping=lambda why: announce(f"stopping services: {why}"),
                    )
                )
            except AuthError as exc:
                raise CliError(exc.message) from exc
            except ServerStartError as exc:
                raise CliError(exc.message, exit_code=EXIT_FAILED) from exc
            except ExecutorUnavailableError as exc:
                raise CliError(exc.message, exit_code=EXIT_USAGE) from exc
        if result.exit_code:
            for name in result.failed:
                print_error(
                    f"service {name!r} failed for good and has exit_on_failure set: "
                    "the other services were stopped"
                )
            raise typer.Exit(result.exit_code)
        announce("stopped")


def _database_text(url: str) -> str:
    """The database as people read it: a SQLite file's path (relative when under the
    working folder), else the URL without its password."""
    path = sqlite_file(url)
    if path is None:
        return display_url(url)
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    return str(path)


def _announce(
    served: Served,
    engine: Engine,
    supervisor: Supervisor,
    url: str,
    targets: Sequence[str],
    http: HttpServer,
) -> None:
    typer.echo(f"taskloom {__version__} serving {http.url}  (database: {_database_text(url)})")
    names = ", ".join(supervisor.names) or "none"
    started = [s.name for s in supervisor.statuses() if s.state.active]
    packages = sum(1 for task in engine.registry if getattr(task, "package", None))
    sources = [*targets, *([f"{packages} collected package task(s)"] if packages else [])]
    typer.echo(
        f"serving {len(served.services)} service(s) ({names}; started: "
        f"{', '.join(started) or 'none'}) and {len(served.tasks) + packages} task(s) from "
        f"{' and '.join(sources) or 'nothing yet'}; database {display_url(url)}"
    )
