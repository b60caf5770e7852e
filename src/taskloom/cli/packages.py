"""`taskloom manifest`, `taskloom packages` and `taskloom package add|remove|reinstall|show`."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from ..packages.collection import FAILED, READY, PackageCollector, PackageInstallError
from ..packages.definitions import package_tasks
from ..packages.errors import ManifestWarning, PackageError
from ..packages.installs import package_summary, package_task_names
from ..packages.manifest import fractal_manifest, taskloom_manifest
from ..store import PackageRecord, open_store
from .errors import EXIT_FAILED, CliError, print_error, reporting_errors
from .options import DbOption, JsonOption, VerboseOption, database_url, dump_json, examples
from .render import make_console
from .runs import _opened_store

__all__ = [
    "MANIFEST_EPILOG",
    "PACKAGES_EPILOG",
    "VENVS_ENV",
    "manifest_command",
    "package_app",
    "packages_command",
]

#: The environment variable naming the folder of package venvs when `--venvs` is not given.
VENVS_ENV = "TASKLOOM_VENVS_DIR"

MANIFEST_EPILOG = examples(
    ("taskloom manifest mypkg", "the taskloom manifest of the importable package mypkg"),
    ("taskloom manifest mypkg --format fractal", "its __FRACTAL_MANIFEST__.json"),
)
PACKAGES_EPILOG = examples(
    ("taskloom packages", "name, version, state, venv and tasks of each package"),
    ("taskloom packages --json", "everything, with the frozen requirements"),
)

VenvsOption = Annotated[
    str | None,
    typer.Option(
        "--venvs",
        envvar=VENVS_ENV,
        metavar="DIR",
        show_default=False,
        help="Where package venvs go. Default: .taskloom/venvs under the working directory.",
    ),
]

package_app = typer.Typer(
    help="Install task packages into their own virtual environments.",
    no_args_is_help=True,
    epilog=examples(
        ("taskloom package add ./dist/mypkg-1.0-py3-none-any.whl", "a wheel, in its own venv"),
        ("taskloom package add some-fractal-tasks==0.3", "from the package index"),
        ("taskloom package add ./mypkg --pip-arg=--find-links=./wheels", "a folder; pip options"),
        ("taskloom package reinstall mypkg", "the venv again, from the frozen requirements"),
        ("taskloom package remove mypkg", "forget it and delete its venv"),
    ),
)


def manifest_command(
    package: Annotated[str, typer.Argument(metavar="PACKAGE", help="An importable package name.")],
    format: Annotated[
        str, typer.Option("--format", "-f", metavar="taskloom|fractal", help="Manifest form.")
    ] = "taskloom",
    verbose: VerboseOption = False,
) -> None:
    """Print the manifest of a package's tasks as JSON, generated from its code."""
    with reporting_errors(verbose=verbose):
        if format not in ("taskloom", "fractal"):
            raise CliError(f"--format: expected 'taskloom' or 'fractal', got {format!r}")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ManifestWarning)
            try:
                made = (
                    taskloom_manifest(package)
                    if format == "taskloom"
                    else fractal_manifest(package)
                )
            except PackageError as exc:
                raise CliError(str(exc)) from exc
        for warning in caught:
            typer.echo(f"warning: {warning.message}", err=True)
        typer.echo(dump_json(made))


@contextmanager
def _collector(db: str | None, venvs: str | None) -> Iterator[PackageCollector]:
    store = open_store(database_url(db))
    try:
        folder = Path(venvs) if venvs else Path.cwd() / ".taskloom" / "venvs"
        yield PackageCollector(store, venvs_dir=folder.resolve())
    finally:
        store.close()


def _installed(record: PackageRecord) -> None:
    tasks = ", ".join(t.name for t in package_tasks(record))
    typer.echo(f"package {record.name} {record.version} is ready in {record.venv}", err=True)
    typer.echo(f"tasks: {tasks}", err=True)


def _install_failed(exc: PackageInstallError) -> None:
    typer.echo(exc.record.log, err=True)
    print_error(str(exc))
    raise typer.Exit(EXIT_FAILED)


def _install(install: Callable[[], PackageRecord]) -> None:
    """Run an install (add or reinstall) and report how it ended."""
    try:
        record = install()
    except PackageInstallError as exc:
        _install_failed(exc)
        return
    except PackageError as exc:
        raise CliError(str(exc)) from exc
    _installed(record)


@package_app.command("add")
def add_command(
    source: Annotated[
        str,
        typer.Argument(
            metavar="SOURCE", help="NAME[==VERSION] (extras and pins allowed), a wheel or a folder."
        ),
    ],
    pip_arg: Annotated[
        list[str] | None,
        typer.Option(
            "--pip-arg",
            metavar="ARG",
            help="Passed to pip install (repeatable).",
            show_default=False,
        ),
    ] = None,
    db: DbOption = None,
    venvs: VenvsOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Install a task package into its own venv and register its tasks as PACKAGE/TASK."""
    with reporting_errors(verbose=verbose), _collector(db, venvs) as collector:
        _install(lambda: collector.add(source, pip_args=pip_arg or []))


@package_app.command("reinstall")
def reinstall_command(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The package.")],
    db: DbOption = None,
    venvs: VenvsOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Make a package's venv again from its frozen requirements."""
    with reporting_errors(verbose=verbose), _collector(db, venvs) as collector:
        _install(lambda: collector.reinstall(name))


@package_app.command("remove")
def remove_command(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The package.")],
    db: DbOption = None,
    venvs: VenvsOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Forget a package and delete its venv (the runs of its tasks are kept)."""
    with reporting_errors(verbose=verbose), _collector(db, venvs) as collector:
        try:
            record = collector.remove(name)
        except PackageError as exc:
            raise CliError(str(exc)) from exc
        typer.echo(f"package {record.name} removed", err=True)


@package_app.command("show")
def show_command(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The package.")],
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Print one package's record as JSON: state, error, install log, frozen requirements."""
    with reporting_errors(verbose=verbose), _opened_store(db) as store:
        record = store.get_package(name)
        if record is None:
            raise CliError(f"no package named {name!r} (`taskloom packages` lists them)")
        typer.echo(dump_json(package_summary(record, with_log=True)))


def packages_command(
    json_output: JsonOption = False,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """List task packages: name, version, state, venv, tasks and how many requirements
    were frozen (`package show NAME` lists them)."""
    with reporting_errors(verbose=verbose), _opened_store(db) as store:
        records = store.list_packages()
        if json_output:
            typer.echo(dump_json([package_summary(r) for r in records]))
            return
        if not records:
            typer.echo("no packages (`taskloom package add SOURCE` installs one)", err=True)
            return
        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in ("name", "version", "state", "venv", "tasks", "requirements"):
            table.add_column(column, overflow="fold")
        for record in records:
            style = {READY: "green", FAILED: "red"}.get(record.state, "yellow")
            table.add_row(
                record.name,
                record.version or "",
                Text(record.state, style=style),
                record.venv or "",
                "\n".join(package_task_names(record)) or (record.error or ""),
                _requirements_summary(record),
            )
        make_console().print(table)


def _requirements_summary(record: PackageRecord) -> str:
    """How many requirements the package's venv froze: the list itself is long (every
    dependency, pinned), and `package show` or `--json` prints it."""
    count = len((record.frozen or "").splitlines())
    if count == 0:
        return ""
    return f"{count} frozen" if count != 1 else "1 frozen"
