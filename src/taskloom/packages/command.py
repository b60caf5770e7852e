"""Command tasks: a task defined by an executable and a contract instead of a callable.

The engine runs a command task as a subprocess in its own process group: the inputs go
to an arguments file, stdout and stderr are stored line by line as the run's log, the
result is read from the output file. A timeout or a cancel terminates the whole group
(SIGTERM, then SIGKILL after `kill_grace` seconds), so a task's own children go too.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import re
import signal
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import jsonschema

from ..context import Context
from ..exceptions import InputValidationError
from ..tasks.definition import TaskDefinition, check_name, not_an_object
from ..tasks.options import TaskOptions
from ..tasks.signature import JSON_SCHEMA_DIALECT
from ..tasks.validation import field_errors_from_jsonschema
from .errors import CommandTaskError

if TYPE_CHECKING:
    from ..engine import Engine

__all__ = ["CONTRACTS", "CommandCall", "CommandTask"]

#: Command-line forms: Fractal v2 (`--args-json`, `--out-json`) and v1 (`-j`, `--metadata-out`).
CONTRACTS: Mapping[str, tuple[str, str]] = {
    "v2": ("--args-json", "--out-json"),
    "v1": ("-j", "--metadata-out"),
}

_LEVEL = re.compile(r"\b(DEBUG|INFO|WARNING|ERROR|CRITICAL)\b")
_LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}
_READ_LIMIT = 1 << 20  # a log line longer than this is split, not an error


class CommandTask(TaskDefinition):
    """A task run as `command... --args-json FILE --out-json FILE` (or the v1 form).

    `command` is the argument list before the contract's options, e.g. a package's own
    interpreter and the task's script. Inputs are validated against `input_schema` with
    `jsonschema` before anything runs.
    """

    kind = "command"
    is_async = True

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        contract: str = "v2",
        input_schema: Mapping[str, Any] | None = None,
        output_schema: Mapping[str, Any] | None = None,
        label: str | None = None,
        description: str = "",
        options: TaskOptions | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        kill_grace: float = 5.0,
        package: str | None = None,
    ) -> None:
        check_name(name)
        if contract not in CONTRACTS:
            raise ValueError(f"task {name!r}: contract must be one of {sorted(CONTRACTS)}")
        if not command:
            raise ValueError(f"task {name!r}: a command task needs a command")
        self.name = name
        self.label = label or name
        self.description = description
        self.options = options or TaskOptions()
        self.command = tuple(str(part) for part in command)
        self.contract = contract
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.kill_grace = kill_grace
        self.package = package
        self.module = f"command:{package or ''}"
        self.qualname = name
        schema = dict(input_schema or {"type": "object"})
        schema.setdefault("$schema", JSON_SCHEMA_DIALECT)
        self._schema = schema
        self._output_schema = dict(output_schema or {})
        validator_cls = jsonschema.validators.validator_for(
            schema, default=jsonschema.Draft202012Validator
        )
        self._validator = validator_cls(schema)
        self._defaults = {
            key: prop["default"]
            for key, prop in (schema.get("properties") or {}).items()
            if isinstance(prop, dict) and "default" in prop
        }

    def __repr__(self) -> str:
        return f"<command task {self.name!r} ({' '.join(self.command)})>"

    def same_as(self, other: object) -> bool:
        return (
            isinstance(other, CommandTask)
            and other.name == self.name
            and other.command == self.command
            and other.contract == self.contract
        )

    @property
    def input_schema(self) -> dict[str, Any]:
        return self._schema

    @property
    def output_schema(self) -> dict[str, Any]:
        return self._output_schema

    def validate_inputs(self, inputs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        if not isinstance(inputs, Mapping):
            raise InputValidationError(self.name, [not_an_object(inputs)])
        values = {**self._defaults, **inputs}
        errors = field_errors_from_jsonschema(self._schema, values, self._validator)
        if errors:
            raise InputValidationError(self.name, errors)
        return values, values

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "command": list(self.command), "contract": self.contract}

    async def invoke(self, call: dict[str, Any], context: Context, engine: Engine) -> Any:
        return await run_command(self, call, context.logger)


class CommandSpec(Protocol):
    """What running a command needs of its task (a `CommandTask`, or a `CommandCall`'s
    copy of it sent to a Dask worker)."""

    @property
    def name(self) -> str: ...
    @property
    def command(self) -> tuple[str, ...]: ...
    @property
    def contract(self) -> str: ...
    @property
    def env(self) -> dict[str, str] | None: ...
    @property
    def cwd(self) -> str | None: ...
    @property
    def kill_grace(self) -> float: ...


@dataclass(frozen=True, slots=True)
class CommandCall:
    """A command task's call as a plain function of its arguments, to be sent elsewhere
    (a Dask worker): the command and how to run it, without the task's validators."""

    name: str
    command: tuple[str, ...]
    contract: str
    env: dict[str, str] | None
    cwd: str | None
    kill_grace: float

    @classmethod
    def of(cls, task: CommandTask) -> CommandCall:
        return cls(task.name, task.command, task.contract, task.env, task.cwd, task.kill_grace)

    def __call__(self, **arguments: Any) -> Any:
        # Its lines go to the task's logger, which the caller's log capture takes.
        log = logging.getLogger(f"taskloom.tasks.{self.name}")
        return asyncio.run(run_command(self, arguments, log))


async def run_command(task: CommandSpec, arguments: Mapping[str, Any], log: logging.Logger) -> Any:
    """Run `task`'s command with `arguments`; its result, or `CommandTaskError`."""
    args_flag, out_flag = CONTRACTS[task.contract]
    with tempfile.TemporaryDirectory(prefix="taskloom-command-") as folder:
        args_path = Path(folder) / "args.json"
        out_path = Path(folder) / "out.json"
        args_path.write_text(json.dumps(arguments), encoding="utf-8")
        argv = [*task.command, args_flag, str(args_path), out_flag, str(out_path)]
        env = None if task.env is None else {**os.environ, **task.env}
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group: a kill reaches its children
                env=env,
                cwd=task.cwd,
                limit=_READ_LIMIT,
            )
        except OSError as exc:
            raise CommandTaskError(
                f"task {task.name!r}: cannot start {argv[0]!r}: {exc.strerror or exc}"
            ) from exc
        tail: collections.deque[str] = collections.deque(maxlen=200)
        try:
            assert process.stdout is not None and process.stderr is not None
            await asyncio.gather(
                _pump(process.stdout, log, None),
                _pump(process.stderr, log, tail),
            )
            code = await process.wait()
        except BaseException:  # cancelled or timed out: the whole group goes
            await _terminate(process, task.kill_grace)
            raise
        if code != 0:
            reason = _reason(tail)
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            raise CommandTaskError(f"task {task.name!r}: the command {how}: {reason}")
        if not out_path.exists():
            raise CommandTaskError(
                f"task {task.name!r}: the command wrote no output file (does its script end "
                "with `taskloom.run_cli(...)` or `run_fractal_task(...)`?)"
            )
        text = out_path.read_text(encoding="utf-8")
        try:
            return json.loads(text) if text.strip() else None
        except ValueError as exc:
            raise CommandTaskError(
                f"task {task.name!r}: the output file is not JSON: {exc}"
            ) from exc


def _reason(tail: collections.deque[str]) -> str:
    """The line that says why: the last `error:` line (run_cli's), else the last line."""
    for line in reversed(tail):
        if line.startswith("error:"):
            return line.removeprefix("error:").strip()
    return tail[-1] if tail else "no message on stderr"


async def _pump(
    stream: asyncio.StreamReader, log: logging.Logger, tail: collections.deque[str] | None
) -> None:
    """Store each line of `stream` as a log line of the run; keep stderr's last lines."""
    while True:
        try:
            raw = await stream.readline()
        except ValueError:  # a line over the limit: take what is there
            raw = await stream.read(_READ_LIMIT)
        if not raw:
            return
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            continue
        found = _LEVEL.search(line[:80])
        level = _LEVELS[found.group(1)] if found else logging.INFO
        if line.startswith("error:"):
            level = logging.ERROR
        log.log(level, "%s", line)
        if tail is not None:
            tail.append(line)


async def _terminate(process: asyncio.subprocess.Process, grace: float) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError, asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(process.wait()), grace)
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(process.wait())
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # children that outlived their parent
