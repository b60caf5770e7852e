"""Exit codes, and turning whatever goes wrong into `error: ...` lines a person can act on.

No Python traceback reaches the user for anything they can type; an unexpected internal
error shows one only with `--verbose`.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from ..exceptions import (
    InputValidationError,
    RunNotFoundError,
    StoreError,
    TaskDefinitionError,
    UnknownTaskError,
)
from ..observability.logs import json_logging
from ..observability.tracing import TracingSetupError
from ..schedules.errors import HookNotFoundError, ScheduleError, ScheduleNotFoundError

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "CliError",
    "print_error",
    "reporting_errors",
]

EXIT_OK = 0
#: The task failed or was cancelled; or taskloom itself failed (a store error, a bug).
EXIT_FAILED = 1
#: Invalid input or usage: nothing was run or recorded.
EXIT_USAGE = 2
#: Interrupted with Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A failure the command explains in its own words; each line becomes an `error:` line."""

    def __init__(self, message: str, *, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def print_error(message: str) -> None:
    """Print `error: <line>` on stderr for each line of `message` (logging JSON lines,
    one line of level ERROR instead)."""
    if json_logging():
        logging.getLogger("taskloom.cli").error(message)
        return
    for line in message.splitlines() or [""]:
        typer.echo(f"error: {line}", err=True)


def _unknown_task_message(exc: UnknownTaskError) -> str:
    return (
        f"{exc.message} (give `module:attr`, `path/file.py:attr`, "
        "or the name of a task an installed package declares)"
    )


@contextmanager
def reporting_errors(*, verbose: bool = False) -> Iterator[None]:
    """Run a command body: known failures become `error:` lines and the matching exit code."""
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except CliError as exc:
        print_error(exc.message)
        if verbose and exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__, file=sys.stderr)
        raise typer.Exit(exc.exit_code) from None
    except InputValidationError as exc:
        print_error(exc.message)
        raise typer.Exit(EXIT_USAGE) from None
    except UnknownTaskError as exc:
        print_error(_unknown_task_message(exc))
        raise typer.Exit(EXIT_USAGE) from None
    except (
        TaskDefinitionError,
        TracingSetupError,
        RunNotFoundError,
        ScheduleError,
        ScheduleNotFoundError,
        HookNotFoundError,
    ) as exc:
        print_error(str(exc))
        if verbose:
            traceback.print_exc(file=sys.stderr)
        raise typer.Exit(EXIT_USAGE) from None
    except StoreError as exc:
        print_error(str(exc))
        if verbose:
            traceback.print_exc(file=sys.stderr)
        raise typer.Exit(EXIT_FAILED) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:
        print_error(f"{type(exc).__name__}: {exc}")
        if verbose:
            traceback.print_exc(file=sys.stderr)
        else:
            typer.echo("(run with --verbose to see the traceback)", err=True)
        raise typer.Exit(EXIT_FAILED) from None
