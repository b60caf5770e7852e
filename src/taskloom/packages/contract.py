"""`run_cli`: a task as an executable that speaks Fractal's command-line contract.

Two forms, as Fractal's runners call tasks:

- v2: `python task.py --args-json ARGS.json --out-json OUT.json`
- v1: `python task.py -j ARGS.json --metadata-out OUT.json`

The arguments file holds an object of the task's inputs. They are validated and coerced
like the task's own validation (pydantic's lax mode, as `validate_call`). Log lines go to
stderr in `log_format`. The result is written to the output file as JSON (`null` for
None); an output file that already exists is never overwritten. On invalid arguments or
a task exception the process prints one `error:` line last on stderr (the traceback is
logged before it) and exits non-zero: 2 for invalid arguments or usage, 1 when the task
raised.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from pydantic_core import to_jsonable_python

from ..context import Context
from ..exceptions import InputValidationError, TaskloomError
from ..tasks.classes import ClassTask
from ..tasks.definition import FunctionTask, TaskDefinition
from ..tasks.registry import as_task

__all__ = ["DEFAULT_LOG_FORMAT", "EXIT_INVALID", "EXIT_TASK_FAILED", "run_cli"]

#: Fractal's own log format, so logs read the same whichever runner made them.
DEFAULT_LOG_FORMAT = "%(asctime)s; %(levelname)s; %(message)s"
EXIT_TASK_FAILED = 1
EXIT_INVALID = 2

logger = logging.getLogger("taskloom.run_cli")


class _Parser(argparse.ArgumentParser):
    """Usage errors as one `error:` line and exit code 2, like every other refusal here."""

    def error(self, message: str) -> NoReturn:
        _fail(f"{self.prog}: {message}", EXIT_INVALID)


class _StderrSink:
    """Where a task's context reports when it runs under `run_cli`: the log."""

    def report_progress(self, fraction: float, message: str | None) -> None:
        logger.info("progress %.0f%%%s", fraction * 100, f": {message}" if message else "")

    def report_log(self, level: str, message: str) -> None:
        logger.log(logging.getLevelName(level), message)


def run_cli(
    task: Any = None,
    argv: Sequence[str] | None = None,
    *,
    task_function: Any = None,
    log_format: str = DEFAULT_LOG_FORMAT,
    log_level: int | str = logging.INFO,
) -> None:
    """Run `task` as a command: read its arguments file, call it, write its output file.

    `task` is a `@taskloom.task` function, a `Task` subclass or a plain function (made a
    task here); `task_function=` is the same, by the keyword of Fractal's
    `run_fractal_task`, so `run_cli(task_function=prepare_metadata)` works as written
    there. `argv` defaults to `sys.argv[1:]`. Returns after writing the output; exits the
    process with code 2 (invalid arguments) or 1 (the task raised) otherwise.
    """
    if (task is None) == (task_function is None):
        raise TypeError("run_cli() takes the task once: as `task` or as `task_function`")
    definition = _definition(task if task is not None else task_function)
    parser = _Parser(
        prog=Path(sys.argv[0]).name if argv is None else definition.name,
        description=f"Run the task {definition.name!r} (Fractal's task contract).",
    )
    parser.add_argument("--args-json", metavar="FILE", help="the arguments (v2 contract)")
    parser.add_argument("--out-json", metavar="FILE", help="where the result goes (v2 contract)")
    parser.add_argument("-j", "--json", dest="v1_args", metavar="FILE", help="v1: arguments")
    parser.add_argument("--metadata-out", metavar="FILE", help="v1: where the result goes")
    parsed = parser.parse_args(argv)
    args_path, out_path = _paths(definition, parsed)
    _configure_logging(log_format, log_level)
    if out_path.exists():
        _fail(
            f"task {definition.name!r}: the output file {str(out_path)!r} already exists; "
            "it is not overwritten",
            EXIT_INVALID,
        )
    arguments = _read_arguments(definition, args_path)
    try:
        call, _ = definition.validate_inputs(arguments)
    except InputValidationError as exc:
        _fail(str(exc).replace("\n", "; "), EXIT_INVALID)
    logger.info("START %s task", definition.name)
    started = time.monotonic()
    try:
        result = _call(definition, call)
        encoded = json.dumps(to_jsonable_python(result), indent=2)
    except Exception as exc:
        logger.exception("task %r raised", definition.name)
        reason = " ".join(str(exc).split()) or "(no message)"
        _fail(f"task {definition.name!r} failed: {type(exc).__name__}: {reason}", EXIT_TASK_FAILED)
    logger.info("END %s task (%.3f s)", definition.name, time.monotonic() - started)
    try:
        with out_path.open("x", encoding="utf-8") as out:  # "x": never overwrite
            out.write(encoded)
    except FileExistsError:
        _fail(
            f"task {definition.name!r}: the output file {str(out_path)!r} appeared while the "
            "task ran; it is not overwritten",
            EXIT_TASK_FAILED,
        )
    except OSError as exc:
        _fail(f"task {definition.name!r}: cannot write {str(out_path)!r}: {exc}", EXIT_TASK_FAILED)


def _definition(task: Any) -> TaskDefinition:
    if isinstance(task, TaskDefinition | type):
        return as_task(task)
    if callable(task):
        return FunctionTask(task)
    return as_task(task)  # raises, naming what it got


def _paths(definition: TaskDefinition, parsed: argparse.Namespace) -> tuple[Path, Path]:
    v2 = parsed.args_json is not None or parsed.out_json is not None
    v1 = parsed.v1_args is not None or parsed.metadata_out is not None
    if v1 and v2:
        _fail(
            f"task {definition.name!r}: use either --args-json/--out-json (v2) or "
            "-j/--metadata-out (v1), not both",
            EXIT_INVALID,
        )
    if v1:
        if parsed.v1_args is None or parsed.metadata_out is None:
            _fail(
                f"task {definition.name!r}: the v1 contract needs -j FILE and --metadata-out FILE",
                EXIT_INVALID,
            )
        return Path(parsed.v1_args), Path(parsed.metadata_out)
    if parsed.args_json is None or parsed.out_json is None:
        _fail(
            f"task {definition.name!r}: expected --args-json FILE --out-json FILE "
            "(or -j FILE --metadata-out FILE)",
            EXIT_INVALID,
        )
    return Path(parsed.args_json), Path(parsed.out_json)


def _read_arguments(definition: TaskDefinition, path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        _fail(
            f"task {definition.name!r}: cannot read the arguments file {str(path)!r}: {reason}",
            EXIT_INVALID,
        )
    try:
        data = json.loads(text)
    except ValueError as exc:
        _fail(
            f"task {definition.name!r}: the arguments file {str(path)!r} is not JSON: {exc}",
            EXIT_INVALID,
        )
    if not isinstance(data, dict):
        _fail(
            f"task {definition.name!r}: the arguments file {str(path)!r} must hold an object "
            f"of named arguments, got {type(data).__name__}",
            EXIT_INVALID,
        )
    return data


def _call(definition: TaskDefinition, call: dict[str, Any]) -> Any:
    if isinstance(definition, FunctionTask):
        kwargs = dict(call)
        specials = definition.specials
        if specials.context:
            kwargs[specials.context] = Context(
                run_id="cli",
                task=definition.name,
                attempt=1,
                timestamp=int(time.time() * 1000),
                sink=_StderrSink(),
            )
        if specials.config:
            kwargs["config"] = specials.config()
        if specials.state:
            kwargs["state"] = specials.state()
        if specials.timestamp:
            kwargs["timestamp"] = int(time.time() * 1000)
        if definition.is_async_generator:
            return asyncio.run(_collect(definition.fn(**kwargs)))
        if definition.is_async:
            return asyncio.run(definition.fn(**kwargs))
        return definition.fn(**kwargs)
    if isinstance(definition, ClassTask):
        return asyncio.run(_call_class(definition, call))
    raise TaskloomError(f"task {definition.name!r}: run_cli runs functions and Task classes")


async def _collect(generator: Any) -> list[Any]:
    return [item async for item in generator]


async def _call_class(definition: ClassTask, call: dict[str, Any]) -> Any:
    instance = definition.cls()
    instance.context = Context(
        run_id="cli",
        task=definition.name,
        attempt=1,
        timestamp=int(time.time() * 1000),
        sink=_StderrSink(),
    )
    await instance.setup()
    try:
        result = instance.execute(call["inputs"])
        if asyncio.iscoroutine(result):
            result = await result
        return result
    finally:
        await instance.teardown()


def _configure_logging(log_format: str, level: int | str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(log_format))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)


def _fail(message: str, code: int) -> NoReturn:
    """One `error:` line, last on stderr, and the exit code."""
    sys.stderr.flush()
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)
