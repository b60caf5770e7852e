"""The workflow model: steps, their inputs and dependencies, in Python and as data.

`Workflow.step` and `Workflow.map` build the same `Step` records that `Workflow.from_dict`
reads from YAML or JSON; `to_dict` writes them back (what the store keeps, so `rerun` and
`show` work from another process).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter

from ..documents import MAX_DEPTH, DocumentLimitError, TooManyMembersError, check_depth
from ..documents import load_json as _load_json
from ..documents import load_yaml as _load_yaml
from ..exceptions import WorkflowValidationError
from ..tasks.definition import TaskDefinition
from ..tasks.registry import as_task
from .limits import WorkflowLimits
from .references import Ref, ReferenceSyntaxError, dump_value, parse_value, references_in

__all__ = ["ON_FAILURE", "Step", "StepHandle", "Workflow", "load_workflow"]

#: What a `map` step does when some of its items fail: `fail` the step, or `continue` with
#: the successes (the failures are recorded in the workflow run's result).
ON_FAILURE = ("fail", "continue")

_STEP_KEYS = frozenset(
    {
        "task",
        "inputs",
        "after",
        "optional",
        "map",
        "concurrency",
        "on_failure",
        "retries",
        "timeout",
        "priority",
    }
)
_TOP_KEYS = frozenset({"name", "description", "inputs", "steps", "outputs"})


@dataclass(slots=True, kw_only=True)
class Step:
    """One step: a task, its inputs (values and references), and how it is run.

    `task` is what the data form names (`module:attr`, `path/file.py:attr` or a registered
    name); `definition` is the task object when the step was built in Python. With `map`
    set, the step runs once per item of the list given to that input.
    """

    name: str
    task: str
    definition: TaskDefinition | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    after: list[str] = field(default_factory=list)
    optional: list[str] = field(default_factory=list)
    map: str | None = None
    concurrency: int | None = None
    on_failure: str = "fail"
    retries: int | None = None
    timeout: float | None = None
    priority: int | None = None

    @property
    def dependencies(self) -> list[str]:
        """The steps this one waits for: those it references, then those in `after`."""
        names = [r.name for r in references_in(self.inputs) if r.source == "steps"]
        return list(dict.fromkeys([*names, *self.after]))

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"task": self.task, "inputs": dump_value(self.inputs)}
        for key in ("after", "optional"):
            if getattr(self, key):
                data[key] = list(getattr(self, key))
        for key in ("map", "concurrency", "retries", "timeout", "priority"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        if self.on_failure != "fail":
            data["on_failure"] = self.on_failure
        return data


class StepHandle:
    """What `Workflow.step` and `Workflow.map` return: `result` refers to the step's result
    (`handle.result["key"]` or `handle.result[0]` to a part of it)."""

    __slots__ = ("name", "workflow")

    def __init__(self, workflow: Workflow, name: str) -> None:
        self.workflow = workflow
        self.name = name

    @property
    def result(self) -> Ref:
        return Ref("steps", self.name)

    def __repr__(self) -> str:
        return f"<step {self.name!r} of workflow {self.workflow.name!r}>"


class Workflow:
    """A DAG of steps whose results flow into other steps' inputs.

    `inputs` declares the workflow's own inputs: each value a type (`str`), a `(type,
    default)` pair, or a JSON Schema (a dict). `wf.input(name)` refers to one of them.
    `wf.output(name, value)` declares what the workflow run's result holds; without any,
    it holds the results of the steps no other step depends on.
    """

    def __init__(
        self,
        name: str,
        *,
        inputs: Mapping[str, Any] | None = None,
        description: str = "",
    ) -> None:
        if not name or not isinstance(name, str):
            raise WorkflowValidationError(str(name), "a workflow needs a non-empty name")
        self.name = name
        self.description = description
        self.input_schemas: dict[str, dict[str, Any]] = {}
        self.steps: dict[str, Step] = {}
        self.outputs: dict[str, Any] = {}
        for key, spec in (inputs or {}).items():
            self.input_schemas[key] = _input_schema(name, key, spec)

    def __repr__(self) -> str:
        return f"<workflow {self.name!r} ({len(self.steps)} steps)>"

    @property
    def task_name(self) -> str:
        """The task name of this workflow's runs."""
        return f"workflow:{self.name}"

    @property
    def input_schema(self) -> dict[str, Any]:
        required = [k for k, s in self.input_schemas.items() if "default" not in s]
        return {
            "type": "object",
            "properties": dict(self.input_schemas),
            "required": required,
            "additionalProperties": False,
        }

    # building in Python -------------------------------------------------------------------
    def input(self, name: str) -> Ref:
        """A reference to the workflow input `name`."""
        return Ref("inputs", name)

    def step(
        self,
        task: Any,
        inputs: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        after: Iterable[StepHandle | str] = (),
        optional: Iterable[StepHandle | str] = (),
        retries: int | None = None,
        timeout: float | None = None,
        priority: int | None = None,
        **kw_inputs: Any,
    ) -> StepHandle:
        """Add a step running `task` once. Inputs come as keywords or as the `inputs` dict
        (use the dict for an input named like an option of this method).

        `after` orders the step after others without taking their results; `optional`
        names dependencies whose failure does not skip this step (a reference to a failed
        optional step's result is left out of the inputs, so the input's default applies).
        """
        return self._add(
            task,
            {**(inputs or {}), **kw_inputs},
            name=name,
            after=after,
            optional=optional,
            retries=retries,
            timeout=timeout,
            priority=priority,
        )

    def map(
        self,
        task: Any,
        inputs: Mapping[str, Any] | None = None,
        *,
        over: str | None = None,
        concurrency: int | None = None,
        on_failure: str = "fail",
        name: str | None = None,
        after: Iterable[StepHandle | str] = (),
        optional: Iterable[StepHandle | str] = (),
        retries: int | None = None,
        timeout: float | None = None,
        priority: int | None = None,
        **kw_inputs: Any,
    ) -> StepHandle:
        """Add a step running `task` once per item of a list; its result is the list of
        the items' results, in item order.

        `over` names the input that receives one item per run; it may be left out when
        exactly one input is a reference or a list. At most `concurrency` items run at
        once. `on_failure="continue"` keeps the successes when some items fail.
        """
        values = {**(inputs or {}), **kw_inputs}
        if over is None:
            candidates = [
                k for k, v in values.items() if isinstance(v, Ref | StepHandle | list | tuple)
            ]
            if len(candidates) != 1:
                raise WorkflowValidationError(
                    self.name,
                    "name the input to map over with over=... (found "
                    f"{len(candidates)} inputs that are references or lists)",
                    step=name or (task if isinstance(task, str) else as_task(task).name),
                )
            over = candidates[0]
        return self._add(
            task,
            values,
            name=name,
            after=after,
            optional=optional,
            retries=retries,
            timeout=timeout,
            priority=priority,
            map=over,
            concurrency=concurrency,
            on_failure=on_failure,
        )

    def output(self, name: str, value: Any) -> None:
        """Declare an output of the workflow run (usually a step's `result` or part of it)."""
        self.outputs[name] = value

    def _add(
        self,
        task: Any,
        inputs: dict[str, Any],
        *,
        name: str | None,
        after: Iterable[StepHandle | str],
        optional: Iterable[StepHandle | str],
        **options: Any,
    ) -> StepHandle:
        if isinstance(task, str):
            definition, text = None, task
        else:
            definition = as_task(task)
            text = task_reference(definition)
        step_name = name or self._free_name(definition.name if definition else text)
        if step_name in self.steps:
            raise WorkflowValidationError(
                self.name, "another step has this name; pass name=...", step=step_name
            )
        self.steps[step_name] = Step(
            name=step_name,
            task=text,
            definition=definition,
            inputs={key: _from_python(value) for key, value in inputs.items()},
            after=[_step_name(item) for item in after],
            optional=[_step_name(item) for item in optional],
            **options,
        )
        return StepHandle(self, step_name)

    def _free_name(self, base: str) -> str:
        base = base.rsplit(":", 1)[-1].rsplit("/", 1)[-1].removesuffix(".py") or "step"
        if base not in self.steps:
            return base
        number = 2
        while f"{base}_{number}" in self.steps:
            number += 1
        return f"{base}_{number}"

    # the data form --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name}
        if self.description:
            data["description"] = self.description
        if self.input_schemas:
            data["inputs"] = dict(self.input_schemas)
        data["steps"] = {name: step.as_dict() for name, step in self.steps.items()}
        if self.outputs:
            data["outputs"] = dump_value(self.outputs)
        return data

    @classmethod
    def from_dict(
        cls, data: Any, *, source: str = "workflow", limits: WorkflowLimits | None = None
    ) -> Workflow:
        """Read the data form (what YAML or JSON gives); errors name the step and the key.

        With `limits`, a definition with more steps than allowed is refused before any
        step is read (`WorkflowLimitError`). Data nested deeper than `MAX_DEPTH` levels
        is refused either way.
        """
        if not isinstance(data, dict):
            raise WorkflowValidationError(source, "expected a mapping with name and steps")
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise WorkflowValidationError(source, "'name' is missing (a non-empty string)")
        steps = data.get("steps")
        if limits is not None and isinstance(steps, dict):
            limits.check_steps(name, len(steps))
        try:
            check_depth(data, MAX_DEPTH)
        except DocumentLimitError as exc:
            raise WorkflowValidationError(name, f"{exc}; flatten the data") from None
        unknown = sorted(set(data) - _TOP_KEYS)
        if unknown:
            raise WorkflowValidationError(
                name, f"unknown keys {unknown}; expected: {', '.join(sorted(_TOP_KEYS))}"
            )
        inputs = data.get("inputs") or {}
        if not isinstance(inputs, dict):
            raise WorkflowValidationError(name, "'inputs' must map input names to JSON Schemas")
        workflow = cls(name, inputs=inputs, description=str(data.get("description") or ""))
        if not isinstance(steps, dict) or not steps:
            raise WorkflowValidationError(name, "'steps' must map step names to steps")
        for step_name, spec in steps.items():
            workflow.steps[str(step_name)] = _step_from_dict(name, str(step_name), spec)
        outputs = data.get("outputs") or {}
        if not isinstance(outputs, dict):
            raise WorkflowValidationError(name, "'outputs' must map names to values")
        try:
            workflow.outputs = {str(k): parse_value(v) for k, v in outputs.items()}
        except ReferenceSyntaxError as exc:
            raise WorkflowValidationError(name, str(exc), field="outputs") from None
        return workflow


def load_workflow(path: str | Path, *, limits: WorkflowLimits | None = None) -> Workflow:
    """Read a workflow from a YAML (`.yaml`, `.yml`) or JSON file.

    `limits` (default: `WorkflowLimits()`) bounds its steps; YAML is read without aliases
    and no deeper than `MAX_DEPTH` levels.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WorkflowValidationError(str(path), f"cannot read the file: {exc.strerror}") from None
    limits = limits or WorkflowLimits()
    data = parse_text(text, source=str(path), limits=limits, json_only=path.suffix == ".json")
    return Workflow.from_dict(data, source=str(path), limits=limits)


def parse_text(text: str, *, source: str, limits: WorkflowLimits, json_only: bool = False) -> Any:
    """The data form of a workflow's YAML (or JSON) text, read within `limits`: counting
    stops past `max_steps` steps, before the rest is read."""
    try:
        if json_only:
            return _load_json(text)
        return _load_yaml(text, counted_key="steps", max_members=limits.max_steps)
    except TooManyMembersError:
        raise limits.too_many_steps(source, None) from None
    except (ValueError, yaml.YAMLError) as exc:
        raise WorkflowValidationError(source, f"cannot parse the text: {exc}") from None


def task_reference(definition: TaskDefinition) -> str:
    """How the data form names a task object: `module:qualname` when it can be imported
    again from another process, else its registered name."""
    module = definition.module
    if module and module != "__main__" and "<locals>" not in definition.qualname:
        return f"{module}:{definition.qualname}"
    return definition.name


def _step_from_dict(workflow: str, name: str, spec: Any) -> Step:
    if not isinstance(spec, dict):
        raise WorkflowValidationError(workflow, "expected a mapping with 'task'", step=name)
    unknown = sorted(set(spec) - _STEP_KEYS)
    if unknown:
        raise WorkflowValidationError(
            workflow,
            f"unknown keys {unknown}; expected: {', '.join(sorted(_STEP_KEYS))}",
            step=name,
        )
    task = spec.get("task")
    if not isinstance(task, str) or not task:
        raise WorkflowValidationError(workflow, "'task' is missing", step=name)
    inputs = spec.get("inputs") or {}
    if not isinstance(inputs, dict):
        raise WorkflowValidationError(workflow, "'inputs' must be a mapping", step=name)
    try:
        parsed = {str(k): parse_value(v) for k, v in inputs.items()}
    except ReferenceSyntaxError as exc:
        raise WorkflowValidationError(workflow, str(exc), step=name) from None
    lists = {}
    for key in ("after", "optional"):
        value = spec.get(key) or []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise WorkflowValidationError(
                workflow, f"'{key}' must be a list of step names", step=name
            )
        lists[key] = value
    return Step(
        name=name,
        task=task,
        inputs=parsed,
        after=lists["after"],
        optional=lists["optional"],
        map=_optional(workflow, name, spec, "map", str),
        concurrency=_optional(workflow, name, spec, "concurrency", int),
        on_failure=_optional(workflow, name, spec, "on_failure", str) or "fail",
        retries=_optional(workflow, name, spec, "retries", int),
        timeout=_optional(workflow, name, spec, "timeout", float),
        priority=_optional(workflow, name, spec, "priority", int),
    )


def _optional(workflow: str, step: str, spec: dict[str, Any], key: str, kind: type) -> Any:
    value = spec.get(key)
    if value is None:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise WorkflowValidationError(
            workflow, f"expected {kind.__name__}, got {value!r}", step=step, field=f"'{key}'"
        )
    return value


def _input_schema(workflow: str, key: str, spec: Any) -> dict[str, Any]:
    if isinstance(spec, dict):
        return dict(spec)
    default: Any = ...
    if isinstance(spec, tuple):
        if len(spec) != 2:
            raise WorkflowValidationError(
                workflow,
                "expected a type, (type, default) or a JSON Schema",
                field=f"input {key!r}",
            )
        spec, default = spec
    try:
        schema = TypeAdapter(spec).json_schema()
    except Exception as exc:
        raise WorkflowValidationError(
            workflow, f"cannot make a JSON Schema of {spec!r}: {exc}", field=f"input {key!r}"
        ) from None
    if default is not ...:
        schema["default"] = default
    return schema


def _from_python(value: Any) -> Any:
    """Inputs given in Python: handles become references, text references are parsed."""
    if isinstance(value, StepHandle):
        return value.result
    if isinstance(value, Ref):
        return value
    if isinstance(value, dict):
        return {key: _from_python(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_from_python(item) for item in value]
    return parse_value(value) if isinstance(value, str) else value


def _step_name(item: StepHandle | str) -> str:
    return item.name if isinstance(item, StepHandle) else str(item)
