"""`taskloom workflow run|show|rerun`: run a workflow file, draw a workflow run, run it again."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.text import Text
from rich.tree import Tree

from ..engine import Engine, RunEvent
from ..exceptions import RunNotFoundError, WorkflowError
from ..runs import Run, RunStatus
from ..tasks.validation import coerce_cli_value
from ..workflows import Workflow, WorkflowLimits, load_workflow
from ..workflows.keys import StepKey, item_index
from ..workflows.limits import DEFAULT_MAX_MAP_ITEMS, DEFAULT_MAX_STEPS
from ..workflows.operations import workflow_of, workflow_steps
from ..workflows.validation import topological_order
from .errors import EXIT_FAILED, EXIT_USAGE, CliError, print_error, reporting_errors
from .options import (
    DbOption,
    JsonOption,
    MaxItemsOption,
    MaxStepsOption,
    VerboseOption,
    database_url,
    dump_json,
    examples,
)
from .render import STATUS_STYLES, format_duration, make_console
from .runs import _opened_store

__all__ = ["workflow_app", "workflow_tree"]

workflow_app = typer.Typer(
    help="Run workflows (DAGs of steps) and inspect their runs.",
    no_args_is_help=True,
    epilog=examples(
        ("taskloom workflow run thumbnails.yaml folder=/data/plate1", "run a workflow file"),
        ("taskloom workflow show RUN_ID", "the steps of a workflow run as a tree"),
        ("taskloom workflow rerun RUN_ID", "run it again, reusing the steps that completed"),
    ),
)

FileArgument = Annotated[
    str,
    typer.Argument(metavar="FILE", help="A workflow in YAML or JSON.", show_default=False),
]
RunArgument = Annotated[
    str, typer.Argument(metavar="RUN", help="The workflow run's id.", show_default=False)
]
#: Failed items of a map step listed by `show`; the rest are counted.
SHOWN_ITEMS = 5


@workflow_app.command("run")
def run_command(
    path: FileArgument,
    pairs: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="KEY=VALUE",
            help="Workflow inputs. Values are read as JSON unless the input is text.",
            show_default=False,
        ),
    ] = None,
    db: DbOption = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the whole workflow run record.")
    ] = False,
    verbose: VerboseOption = False,
    max_steps: MaxStepsOption = DEFAULT_MAX_STEPS,
    max_items: MaxItemsOption = DEFAULT_MAX_MAP_ITEMS,
) -> None:
    """Run a workflow file and print its outputs as JSON.

    Progress of the steps goes to stderr. Exit status: 0 completed, 1 a step failed or the
    workflow was cancelled, 2 invalid workflow or inputs, or over the limits (nothing is
    run).
    """
    with reporting_errors(verbose=verbose), _workflow_errors():
        limits = WorkflowLimits(max_steps=max_steps, max_map_items=max_items)
        workflow = load_workflow(path, limits=limits)
        inputs = _parse_pairs(workflow, pairs or ())
        url = database_url(db)

        async def submit(engine: Engine) -> Run:
            return await engine.submit(workflow, inputs)

        run = asyncio.run(_execute(url, workflow.name, submit, limits))
        _report(run, json_output=json_output)


@workflow_app.command("rerun")
def rerun_command(
    run_id: RunArgument,
    db: DbOption = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the whole workflow run record.")
    ] = False,
    verbose: VerboseOption = False,
    max_steps: MaxStepsOption = DEFAULT_MAX_STEPS,
    max_items: MaxItemsOption = DEFAULT_MAX_MAP_ITEMS,
) -> None:
    """Run a finished workflow run again: steps that completed with the same inputs are
    reused (their tasks are not called), the failed, skipped and cancelled ones run.

    Tasks named by a file path are found from the working directory, as in the first run.
    """
    with reporting_errors(verbose=verbose), _workflow_errors():

        async def submit(engine: Engine) -> Run:
            return await engine.rerun_workflow(run_id)

        limits = WorkflowLimits(max_steps=max_steps, max_map_items=max_items)
        run = asyncio.run(_execute(database_url(db), run_id, submit, limits))
        _report(run, json_output=json_output)


@workflow_app.command("show")
def show_command(
    run_id: RunArgument,
    json_output: JsonOption = False,
    db: DbOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Show a workflow run: its status, and its steps as a tree (each under the first
    step it depends on) with their statuses."""
    with reporting_errors(verbose=verbose), _workflow_errors(), _opened_store(db) as store:
        run = store.get_run(run_id)
        if run is None:
            raise RunNotFoundError(run_id)
        workflow = workflow_of(run)
        steps = workflow_steps(store, run.id)
        if json_output:
            document = {
                "run": run.as_dict(),
                "steps": {name: [r.as_dict() for r in runs] for name, runs in steps.items()},
            }
            typer.echo(dump_json(document))
            return
        make_console().print(workflow_tree(run, workflow, steps))


# running --------------------------------------------------------------------------------------
@contextmanager
def _workflow_errors() -> Iterator[None]:
    """An invalid workflow, or a run that is not a workflow run, is a usage error (2)."""
    try:
        yield
    except WorkflowError as exc:
        raise CliError(str(exc), exit_code=EXIT_USAGE) from None


def _parse_pairs(workflow: Workflow, pairs: Sequence[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CliError(f"workflow {workflow.name!r}: expected KEY=VALUE, got {pair!r}")
        if key in values:
            raise CliError(f"workflow {workflow.name!r}: input {key!r} is given twice")
        values[key] = coerce_cli_value(raw, workflow.input_schemas.get(key))
    return values


class StepProgress:
    """A bar of step runs finished out of those started, on stderr (only on a terminal)."""

    def __init__(self, console: Console, label: str) -> None:
        self.console = console
        self.label = label
        self.started = 0
        self.finished = 0
        self.progress: Progress | None = None
        self.bar: TaskID | None = None

    def on_event(self, event: RunEvent) -> None:
        run = event.run
        if run.parent_id is None:
            return
        if event.kind == "submitted":
            self.started += 1
        elif event.kind == "finished":
            self.finished += 1
            if run.status in (RunStatus.FAILED, RunStatus.CANCELLED):
                key = StepKey.of(run)
                step = key.within if key is not None else run.id
                reason = f": {run.error.message}" if run.error else ""
                self.console.print(
                    Text(f"step {step} {run.status}{reason}", style="red"), soft_wrap=True
                )
        else:
            return
        self._draw()

    def _draw(self) -> None:
        if not self.console.is_terminal:
            return
        if self.progress is None:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                console=self.console,
                transient=True,
            )
            self.progress.start()
            self.bar = self.progress.add_task(self.label, total=1)
        assert self.bar is not None
        self.progress.update(self.bar, total=self.started, completed=self.finished)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


async def _execute(
    url: str, label: str, submit: Callable[[Engine], Awaitable[Run]], limits: WorkflowLimits
) -> Run:
    progress = StepProgress(make_console(stderr=True), f"workflow {label}")
    try:
        async with Engine(url, recover=False, workflow_limits=limits) as engine:
            engine.add_listener(progress.on_event)
            run = await submit(engine)
            return await engine.wait(run.id)
    finally:
        progress.stop()


def _report(run: Run, *, json_output: bool) -> None:
    if json_output:
        typer.echo(dump_json(run.as_dict()))
    elif run.status == RunStatus.COMPLETED:
        typer.echo(dump_json((run.result or {}).get("outputs")))
    if run.status == RunStatus.COMPLETED:
        return
    reason = f": {run.error.message}" if run.error is not None else ""
    print_error(f"workflow run {run.id} ({run.task!r}) {run.status}{reason}")
    typer.echo(
        f"(`taskloom workflow show {run.id}` draws its steps; "
        f"`taskloom workflow rerun {run.id}` runs it again, reusing the completed steps)",
        err=True,
    )
    raise typer.Exit(EXIT_FAILED)


# showing --------------------------------------------------------------------------------------
def _status(status: str) -> Text:
    return Text(str(status), style=STATUS_STYLES.get(status, ""))


def workflow_tree(run: Run, workflow: Workflow, steps: dict[str, list[Run]]) -> Tree:
    """The workflow run as a tree: each step under the first step it depends on."""
    head = Text.assemble(
        (f"workflow {workflow.name}", "bold"),
        "  ",
        _status(run.status),
        f"  {run.id}  {format_duration(_duration(run))}",
    )
    tree = Tree(head)
    if run.error is not None:
        tree.add(Text(f"{run.error.type}: {run.error.message}", style="red"))
    nodes: dict[str, Tree] = {}
    for name in topological_order(workflow):
        step = workflow.steps[name]
        dependencies = step.dependencies
        parent = nodes.get(dependencies[0], tree) if dependencies else tree
        nodes[name] = parent.add(_step_line(name, step.task, dependencies[1:], steps.get(name)))
        if step.map is not None:
            _add_items(nodes[name], steps.get(name) or [])
    return tree


def _step_line(name: str, task: str, also: list[str], runs: list[Run] | None) -> Text:
    line = Text.assemble((name, "bold"), "  ")
    if not runs:
        line.append_text(_status("not started"))
    elif len(runs) == 1 and item_index(runs[0]) < 0:
        only = runs[0]
        line.append_text(_status(only.status))
        if only.status == RunStatus.COMPLETED and only.attempts == 0:
            line.append(" (reused)", style="dim")
        line.append(f"  {only.id}  {format_duration(only.duration)}")
        if only.error is not None and only.status != RunStatus.COMPLETED:
            line.append(f"  {only.error.type}: {only.error.message}", style="red")
    else:
        counts = Counter(str(r.status) for r in runs)
        line.append(f"map of {len(runs)}: ")
        line.append(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    line.append(f"  {task}", style="dim")
    if also:
        line.append(f"  (also after {', '.join(also)})", style="dim")
    return line


def _add_items(node: Tree, runs: list[Run]) -> None:
    failed = [r for r in runs if r.status not in (RunStatus.COMPLETED, RunStatus.PENDING)]
    for run in failed[:SHOWN_ITEMS]:
        reason = f"  {run.error.type}: {run.error.message}" if run.error else ""
        node.add(Text(f"item {item_index(run)}  {run.status}  {run.id}{reason}", style="red"))
    if len(failed) > SHOWN_ITEMS:
        node.add(Text(f"... and {len(failed) - SHOWN_ITEMS} more", style="red"))


def _duration(run: Run) -> float | None:
    if run.finished_at is None or run.started_at is None:
        return None
    return run.finished_at - run.started_at
