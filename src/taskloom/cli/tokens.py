"""`taskloom token create|list|revoke`: the tokens of the HTTP API, kept hashed in the
database."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from ..server.tokens import TokenNotFoundError, create_token
from ..store import open_store
from .errors import CliError, reporting_errors
from .options import DbOption, JsonOption, VerboseOption, database_url, dump_json, examples
from .render import format_time, make_console
from .runs import _opened_store

__all__ = ["token_app"]

token_app = typer.Typer(
    help="Tokens of the HTTP API: viewer reads, operator also runs and controls, admin all.",
    no_args_is_help=True,
    epilog=examples(
        ("taskloom token create --role operator --name ci", "prints the token, this once"),
        ("taskloom token list", "id, name, role, created, revoked"),
        ("taskloom token revoke TOKEN_ID", "requests with it get 401 from now on"),
    ),
)

ROLES = ("viewer", "operator", "admin")


@token_app.command("create")
def create_command(
    role: Annotated[
        str,
        typer.Option(
            "--role",
            metavar="viewer|operator|admin",
            help="What the token may do.",
            show_default=False,
        ),
    ],
    name: Annotated[
        str | None, typer.Option("--name", help="A name to tell it apart.", show_default=False)
    ] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Create a token and print it. Only its hash is stored: copy it now."""
    with reporting_errors(verbose=verbose):
        if role not in ROLES:
            raise CliError(f"--role: expected viewer, operator or admin, got {role!r}")
        store = open_store(database_url(db))  # made (and migrated) if it does not exist
        try:
            secret, record = create_token(store, role, name)
        finally:
            store.close()
        if json_output:
            data = dataclasses.asdict(record)
            del data["token_hash"]
            typer.echo(dump_json({**data, "token": secret}))
            return
        typer.echo(secret)
        typer.echo(
            f"token {record.id} ({record.name}, {record.role}) created; it is shown only once",
            err=True,
        )


@token_app.command("list")
def list_command(
    json_output: JsonOption = False, db: DbOption = None, verbose: VerboseOption = False
) -> None:
    """List the tokens (never their secrets)."""
    with reporting_errors(verbose=verbose), _opened_store(db) as store:
        records = store.list_api_tokens()
        if json_output:
            rows = [dataclasses.asdict(r) for r in records]
            for row in rows:
                del row["token_hash"]
            typer.echo(dump_json(rows))
            return
        if not records:
            typer.echo("no tokens (`taskloom token create --role admin` makes one)", err=True)
            return
        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in ("id", "name", "role", "created", "revoked"):
            table.add_column(column, overflow="fold")
        for record in records:
            table.add_row(
                record.id,
                record.name,
                record.role,
                format_time(record.created_at),
                format_time(record.revoked_at) if record.revoked_at else "",
            )
        make_console().print(table)


@token_app.command("revoke")
def revoke_command(
    token_id: Annotated[str, typer.Argument(metavar="TOKEN_ID", help="The token's id.")],
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Revoke a token: requests with it are refused from now on."""
    with reporting_errors(verbose=verbose), _opened_store(db) as store:
        if not store.revoke_api_token(token_id):
            known = ", ".join(r.id for r in store.list_api_tokens() if r.revoked_at is None)
            hint = f"; valid tokens: {known}" if known else ""
            raise CliError(str(TokenNotFoundError(f"no valid token with id {token_id!r}{hint}")))
        typer.echo(f"token {token_id} revoked at {datetime.now().astimezone():%H:%M:%S}")
