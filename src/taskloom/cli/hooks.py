"""`taskloom hooks` and `taskloom hook create|remove`: webhooks that start runs."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ..schedules.hooks import SIGNATURE_HEADER, HookBook
from ..store import open_store
from .errors import reporting_errors
from .options import DbOption, JsonOption, VerboseOption, database_url, dump_json, examples
from .render import format_time, make_console
from .runs import _opened_store
from .schedules import TargetsArgument, _task_for

__all__ = ["HOOKS_EPILOG", "hook_app", "hooks_command"]

HOOKS_EPILOG = examples(("taskloom hooks", "every webhook: its name and task"))

hook_app = typer.Typer(
    help="Create and remove webhooks that start runs when called with a signed body.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)


def hooks_command(
    json_output: JsonOption = False,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """List webhooks: name, task, created (their secrets are not shown)."""
    with reporting_errors(verbose=verbose), _opened_store(db) as store:
        hooks = HookBook(store).all()
        if json_output:
            typer.echo(
                dump_json(
                    [{"name": h.name, "task": h.task, "created_at": h.created_at} for h in hooks]
                )
            )
            return
        if not hooks:
            typer.echo("no webhooks recorded", err=True)
            return
        table = Table(box=None, header_style="bold")
        for column in ("hook", "task", "created"):
            table.add_column(column)
        for hook in hooks:
            table.add_row(hook.name, hook.task, format_time(hook.created_at))
        make_console().print(table)


@hook_app.command(
    "create",
    epilog=examples(
        ("taskloom hook create deploy deploy_site tasks.py", "prints the secret, once"),
    ),
)
def create_command(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The webhook's name (its URL).")],
    task: Annotated[str, typer.Argument(metavar="TASK", help="The task each call runs.")],
    targets: TargetsArgument = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace a webhook of this name (a new secret).")
    ] = False,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Record a webhook of TASK and print its secret on stdout (it is not shown again).

    Callers send `POST /api/hooks/NAME` with the task's inputs as a JSON object and the
    header `X-Taskloom-Signature: sha256=<HMAC-SHA256 of the body under the secret>`.
    """
    with reporting_errors(verbose=verbose):
        definition = _task_for(task, targets or [])
        store = open_store(database_url(db))
        try:
            record, secret = HookBook(store, [definition]).create(
                name, definition.name, replace=replace
            )
        finally:
            store.close()
        typer.echo(secret)
        typer.echo(
            f"webhook {record.name!r} runs {record.task!r}: POST /api/hooks/{record.name} "
            f"with {SIGNATURE_HEADER}: sha256=<HMAC-SHA256 of the body under the secret>",
            err=True,
        )


@hook_app.command("remove")
def remove_command(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The webhook's name.")],
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Forget a webhook: calls to it answer 404 from now on."""
    with reporting_errors(verbose=verbose):
        store = open_store(database_url(db))
        try:
            HookBook(store).remove(name)
        finally:
            store.close()
        typer.echo(f"webhook {name!r} removed", err=True)
