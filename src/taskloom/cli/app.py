"""The `taskloom` command: its Typer app, and `main`, the console script."""

from __future__ import annotations

import sys
import traceback
from typing import Annotated

import typer

from .. import __version__
from . import (
    db,
    hooks,
    packages,
    pipelines,
    run,
    runs,
    schedules,
    serve,
    services,
    tasks,
    tokens,
    worker,
    workers,
    workflow,
)
from .errors import EXIT_FAILED, EXIT_INTERRUPTED, print_error
from .options import examples

__all__ = ["app", "main"]

app = typer.Typer(
    name="taskloom",
    help="Run custom tasks and inspect their runs, kept in a database.",
    epilog=examples(
        ("taskloom run examples/basics.py:adder a=1 b=2", "run a task; prints 3"),
        ("taskloom tasks examples/basics.py", "the tasks of a file and their inputs"),
        ("taskloom runs", "the newest runs"),
        ("taskloom show RUN_ID", "one run in full"),
        ("taskloom serve examples/", "serve tasks and services over HTTP until Ctrl-C"),
        ("taskloom services", "services and their state"),
        ("taskloom workflow run flow.yaml n=3", "run a workflow; prints its outputs"),
        ("taskloom pipeline deploy demo.yaml", "run a stream pipeline until Ctrl-C"),
    ),
    no_args_is_help=True,
    add_completion=False,
    # Every command reports its own errors as `error:` lines; a traceback here is a bug.
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"taskloom {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Run custom tasks and inspect their runs, kept in a database.

    The database is --db, else $TASKLOOM_DATABASE_URL, else .taskloom/taskloom.db under
    the working directory.
    """


app.command("run", epilog=run.EPILOG)(run.run_command)
app.command("tasks", epilog=tasks.EPILOG)(tasks.tasks_command)
app.command("runs", epilog=runs.RUNS_EPILOG)(runs.runs_command)
app.command("show", epilog=runs.SHOW_EPILOG)(runs.show_command)
app.command("cancel", epilog=runs.CANCEL_EPILOG)(runs.cancel_command)
app.command("serve", epilog=serve.SERVE_EPILOG)(serve.serve_command)
app.command("services", epilog=services.SERVICES_EPILOG)(services.services_command)
app.command("worker", epilog=worker.WORKER_EPILOG)(worker.worker_command)
app.command("workers", epilog=workers.WORKERS_EPILOG)(workers.workers_command)
app.command("schedules", epilog=schedules.SCHEDULES_EPILOG)(schedules.schedules_command)
app.add_typer(schedules.schedule_app, name="schedule")
app.command("hooks", epilog=hooks.HOOKS_EPILOG)(hooks.hooks_command)
app.add_typer(hooks.hook_app, name="hook")
app.add_typer(services.service_app, name="service")
app.add_typer(db.db_app, name="db")
app.add_typer(workflow.workflow_app, name="workflow")
app.add_typer(tokens.token_app, name="token")
app.command("manifest", epilog=packages.MANIFEST_EPILOG)(packages.manifest_command)
app.command("packages", epilog=packages.PACKAGES_EPILOG)(packages.packages_command)
app.add_typer(packages.package_app, name="package")
app.add_typer(pipelines.pipeline_app, name="pipeline")
app.add_typer(pipelines.topic_app, name="topic")


def main() -> None:
    """The console script `taskloom`."""
    try:
        app(prog_name="taskloom")
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # every command handles its own; this is the last resort
        print_error(f"{type(exc).__name__}: {exc}")
        if "-v" in sys.argv or "--verbose" in sys.argv:
            traceback.print_exc(file=sys.stderr)
        sys.exit(EXIT_FAILED)
