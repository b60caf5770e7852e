"""`taskloom tasks`, and finding the task a command line names."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from ..exceptions import TaskDefinitionError, TaskloomError
from ..loading import load_target, resolve_task
from ..packages.definitions import find_package_task
from ..store import open_store
from ..store.connect import sqlite_file
from ..tasks.definition import TaskDefinition
from ..tasks.registry import Registry
from .errors import CliError, reporting_errors
from .options import DbOption, VerboseOption, database_url, dump_json, examples
from .render import make_console, task_description

__all__ = ["EPILOG", "find_tasks", "load_task", "tasks_command"]

EPILOG = examples(
    ("taskloom tasks examples/basics.py", "the tasks defined in a file"),
    ("taskloom tasks mypackage.tasks", "the tasks defined in a module"),
    ("taskloom tasks examples/basics.py:adder --json", "one task, its schemas as JSON"),
    ("taskloom tasks mypkg/threshold", "one task of a collected package"),
    ("taskloom tasks", "the tasks installed packages declare (entry points taskloom.tasks)"),
)


@contextmanager
def _loading(target: str) -> Iterator[None]:
    """Errors raised by a user's module while it is imported name the target they came from."""
    try:
        yield
    except TaskloomError:
        raise
    except Exception as exc:
        raise CliError(f"cannot load {target!r}: {type(exc).__name__}: {exc}") from exc


def load_task(target: str, database: str | None = None) -> TaskDefinition:
    """The one task `target` names: `module:attr`, `path/file.py:attr`, a registered name,
    or `PACKAGE/TASK` of a package installed in `database`."""
    if database is not None and _names_package_task(target):
        found = _package_task(target, database)
        if found is not None:
            return found
        if not Path(target.partition("/")[0]).exists():
            raise _unknown_package_task(target)
    with _loading(target):
        return resolve_task(target)


def _unknown_package_task(target: str) -> CliError:
    package, _, name = target.partition("/")
    return CliError(
        f"unknown task {target!r}: no ready package {package!r} has a task {name!r} "
        "(`taskloom packages` lists packages and their tasks)"
    )


def _names_package_task(target: str) -> bool:
    return (
        "/" in target
        and ":" not in target
        and not target.endswith(".py")
        and not Path(target).exists()
    )


def _package_task(target: str, database: str) -> TaskDefinition | None:
    path = sqlite_file(database) if database.startswith("sqlite") else None
    if path is not None and not path.exists():
        return None
    store = open_store(database)
    try:
        return find_package_task(store, target)
    finally:
        store.close()


def find_tasks(
    targets: Sequence[str], database: str | None = None
) -> tuple[list[TaskDefinition], list[str]]:
    """The tasks of `targets` and of installed packages, each once; and warnings to show.

    A target `PACKAGE/TASK` names a task of a package collected in `database`. A package
    whose entry point fails to load is reported as a warning: it should not hide the tasks
    of the targets asked for.
    """
    found: list[TaskDefinition] = []
    for target in targets:
        if database is not None and _names_package_task(target):
            package_task = _package_task(target, database)
            if package_task is None:
                raise _unknown_package_task(target)
            found.append(package_task)
            continue
        with _loading(target):
            found += load_target(target)
    warnings: list[str] = []
    installed = Registry()
    try:
        installed.register_entry_points()
    except TaskDefinitionError as exc:
        warnings.append(str(exc))
    found += list(installed)
    unique: list[TaskDefinition] = []
    for definition in found:
        if not any(definition.same_as(seen) for seen in unique):
            unique.append(definition)
    return unique, warnings


def tasks_command(
    targets: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="TARGET",
            help=(
                "Files, modules, module:attr or PACKAGE/TASK of a collected package to look "
                "in (installed packages are always listed)."
            ),
            show_default=False,
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print each task's description and JSON schemas.")
    ] = False,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """List tasks: name, label, description and inputs."""
    with reporting_errors(verbose=verbose):
        definitions, warnings = find_tasks(targets or [], database_url(db))
        for warning in warnings:
            typer.echo(f"warning: {warning}", err=True)
        if json_output:
            typer.echo(dump_json([definition.describe() for definition in definitions]))
            return
        if not definitions:
            typer.echo(
                "no tasks found: name a file or module, e.g. `taskloom tasks examples/basics.py`",
                err=True,
            )
            return
        console = make_console()
        for index, definition in enumerate(definitions):
            if index:
                console.print()
            console.print(task_description(definition))
