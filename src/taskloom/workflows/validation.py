"""Checking a workflow before anything runs: tasks, references, cycles and types.

Every error is a `WorkflowValidationError` naming the step (and the input) at fault.
Types are compared only where both schemas state a JSON type: a reference whose producer
says `string` cannot feed an input that says `integer`; anything undeclared passes, and
the consuming task's own validation checks the value when the step runs.
"""

from __future__ import annotations

import graphlib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..documents import MAX_DEPTH, DocumentLimitError, check_depth
from ..exceptions import TaskloomError, WorkflowValidationError
from ..tasks.definition import TaskDefinition
from .limits import WorkflowLimits
from .model import ON_FAILURE, Step, Workflow
from .references import Ref, dump_value, references_in

__all__ = ["WorkflowProblems", "check_workflow", "step_output_schema", "topological_order"]

Resolver = Callable[[Step], TaskDefinition]
_STEP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
#: Levels of the data form above a step's inputs (the workflow, `steps`, the step).
_ABOVE_INPUTS = 3


class WorkflowProblems(WorkflowValidationError):
    """Several problems of one workflow found at once (each step whose task a server does
    not serve): it reads as the first, its message lists them all, one a line."""

    def __init__(self, problems: Sequence[WorkflowValidationError]) -> None:
        self.problems = list(problems)
        first = self.problems[0]
        super().__init__(first.workflow, first.problem, step=first.step, field=first.field)

    def _describe(self) -> str:
        return "\n".join(p.message for p in self.problems)


def check_workflow(
    workflow: Workflow, resolve: Resolver, *, limits: WorkflowLimits | None = None
) -> dict[str, TaskDefinition]:
    """Resolve each step's task and check the whole workflow; returns the tasks by step.

    `limits` (default: `WorkflowLimits()`) is checked first, before anything per step.
    """
    name = workflow.name
    limits = limits or WorkflowLimits()
    limits.check_steps(name, len(workflow.steps))
    definitions: dict[str, TaskDefinition] = {}
    for step in workflow.steps.values():
        try:
            definitions[step.name] = resolve(step)
        except (TaskloomError, ImportError) as exc:
            raise WorkflowValidationError(
                name, f"unknown task {step.task!r}: {exc}", step=step.name
            ) from None
    for step in workflow.steps.values():
        _check_step(workflow, step, definitions[step.name], limits)
    topological_order(workflow)
    for step in workflow.steps.values():
        _check_types(workflow, step, definitions)
    for key, value in workflow.outputs.items():
        for ref in references_in(value):
            _check_known(workflow, ref, None, f"output {key!r}")
    return definitions


def topological_order(workflow: Workflow) -> list[str]:
    """Step names, each after its dependencies (raises on a cycle, naming its steps)."""
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for step in workflow.steps.values():
        sorter.add(step.name, *step.dependencies)
    try:
        return list(sorter.static_order())
    except graphlib.CycleError as exc:
        cycle: list[str] = list(exc.args[1])
        raise WorkflowValidationError(
            workflow.name, f"steps form a cycle: {' -> '.join(cycle)}", step=cycle[0]
        ) from None


def step_output_schema(step: Step, definition: TaskDefinition) -> dict[str, Any]:
    """The schema of a step's result (a map step's result is a list of its task's)."""
    schema = definition.output_schema
    return {"type": "array", "items": schema} if step.map is not None else schema


def _check_step(
    workflow: Workflow, step: Step, definition: TaskDefinition, limits: WorkflowLimits
) -> None:
    wf = workflow.name
    try:
        # A workflow built in Python is stored in its data form: it must read back.
        check_depth(step.inputs, MAX_DEPTH - _ABOVE_INPUTS)
    except DocumentLimitError as exc:
        raise WorkflowValidationError(
            wf, f"inputs {exc}; flatten the data", step=step.name
        ) from None
    if not _STEP_NAME.fullmatch(step.name):
        raise WorkflowValidationError(
            wf,
            "a step name is letters, digits, '_' and '-', starting with a letter or '_'",
            step=step.name,
        )
    if step.timeout is not None and definition.options.inline:
        raise WorkflowValidationError(
            wf, f"task {definition.name!r} is inline and cannot have a timeout", step=step.name
        )
    for ref in references_in(step.inputs):
        _check_known(workflow, ref, step.name, None)
    for other in (*step.after, *step.optional):
        if other not in workflow.steps:
            raise WorkflowValidationError(
                wf, f"depends on unknown step {other!r}", step=step.name, field="'after'"
            )
        if other == step.name:
            raise WorkflowValidationError(wf, "a step cannot depend on itself", step=step.name)
    for other in step.optional:
        if other not in step.dependencies:
            raise WorkflowValidationError(
                wf,
                f"{other!r} is optional but not a dependency (reference it or list it in after)",
                step=step.name,
                field="'optional'",
            )
    schema = definition.input_schema
    properties: Mapping[str, Any] = schema.get("properties") or {}
    if properties and schema.get("additionalProperties") is False:
        for key in step.inputs:
            if key not in properties:
                raise WorkflowValidationError(
                    wf,
                    f"task {definition.name!r} has no input {key!r}; "
                    f"expected one of: {', '.join(properties)}",
                    step=step.name,
                    field=f"input {key!r}",
                )
    for key in schema.get("required") or ():
        if key not in step.inputs:
            raise WorkflowValidationError(
                wf,
                f"missing required input of task {definition.name!r}",
                step=step.name,
                field=f"input {key!r}",
            )
    if step.map is not None and step.map not in step.inputs:
        raise WorkflowValidationError(
            wf, f"maps over {step.map!r}, which is not one of its inputs", step=step.name
        )
    if step.map is not None and not isinstance(step.inputs[step.map], Ref | list):
        raise WorkflowValidationError(
            wf,
            "a map needs a list or a reference to one, got "
            f"{type(dump_value(step.inputs[step.map])).__name__}",
            step=step.name,
            field=f"input {step.map!r}",
        )
    if step.map is not None and isinstance(step.inputs[step.map], list):
        limits.check_map_items(wf, step.name, step.map, len(step.inputs[step.map]))
    if step.on_failure not in ON_FAILURE:
        raise WorkflowValidationError(
            wf,
            f"on_failure must be one of {', '.join(ON_FAILURE)}, got {step.on_failure!r}",
            step=step.name,
        )
    if step.concurrency is not None and step.concurrency < 1:
        raise WorkflowValidationError(wf, "concurrency must be >= 1", step=step.name)
    if step.retries is not None and step.retries < 0:
        raise WorkflowValidationError(wf, "retries must be >= 0", step=step.name)
    if step.timeout is not None and step.timeout <= 0:
        raise WorkflowValidationError(wf, "timeout must be > 0", step=step.name)


def _check_known(workflow: Workflow, ref: Ref, step: str | None, field: str | None) -> None:
    if ref.source == "steps" and ref.name not in workflow.steps:
        raise WorkflowValidationError(
            workflow.name, f"{ref.text} refers to an unknown step", step=step, field=field
        )
    if ref.source == "inputs" and ref.name not in workflow.input_schemas:
        raise WorkflowValidationError(
            workflow.name,
            f"{ref.text} refers to an undeclared workflow input",
            step=step,
            field=field,
        )


def _check_types(workflow: Workflow, step: Step, definitions: dict[str, TaskDefinition]) -> None:
    properties: Mapping[str, Any] = definitions[step.name].input_schema.get("properties") or {}
    for key, value in step.inputs.items():
        if not isinstance(value, Ref) or key not in properties:
            continue
        wanted: Any = properties[key]
        if key == step.map:
            wanted = {"type": "array", "items": wanted}
        if value.source == "steps":
            producer = workflow.steps[value.name]
            given = step_output_schema(producer, definitions[producer.name])
        else:
            given = workflow.input_schemas[value.name]
        given = _descend(given, value.path)
        if given is None:
            continue
        problem = _mismatch(given, wanted)
        if problem is not None:
            raise WorkflowValidationError(
                workflow.name,
                f"{value.text} {problem}",
                step=step.name,
                field=f"input {key!r}",
            )


def _descend(schema: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        if not isinstance(schema, dict):
            return None
        if isinstance(part, int):
            schema = schema.get("items")
        else:
            schema = (schema.get("properties") or {}).get(part)
    return schema if isinstance(schema, dict) else None


def _types(schema: Any) -> set[str] | None:
    """The JSON types a schema allows, or None when it does not say."""
    if not isinstance(schema, dict):
        return None
    kind = schema.get("type")
    if isinstance(kind, str):
        return {kind}
    if isinstance(kind, list):
        return set(kind)
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list):
            found: set[str] = set()
            for option in options:
                types = _types(option)
                if types is None:
                    return None
                found |= types
            return found
    return None


def _mismatch(given: Any, wanted: Any) -> str | None:
    given_types, wanted_types = _types(given), _types(wanted)
    if given_types is None or wanted_types is None:
        return None
    accepts = set(wanted_types)
    if "number" in accepts:
        accepts.add("integer")
    if not given_types & accepts:
        return (
            f"gives {' or '.join(sorted(given_types))}, "
            f"but the input expects {' or '.join(sorted(wanted_types))}"
        )
    if "array" in given_types and wanted_types == {"array"}:
        return _mismatch(given.get("items"), wanted.get("items"))
    return None
