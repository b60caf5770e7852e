"""Fractal's task types as taskloom operations: `parallel` and `compound`.

A Fractal `non_parallel` task is a plain command task. The other two types are
operations that submit child runs (with `parent_id` set) through the engine, so the
children run in parallel within the engine's limits and each is recorded with its logs:

- `parallel`: inputs `zarr_urls` (the images) and `args_parallel`; one run of the
  per-image command task (`<name>.parallel`) per image, with `zarr_url` and the args.
- `compound`: inputs `zarr_urls`, `zarr_dir`, `args_non_parallel` and `args_parallel`;
  one run of the init command (`<name>.init`), whose result holds a
  `parallelization_list`, then one run of the compute command (`<name>.compute`) per
  entry of that list, with the entry's `zarr_url` and `init_args` and the args.

Both return `{"image_list_updates": [...], "results": [...]}` (the children's image list
updates concatenated, and each child's result in order); a compound task adds its
`parallelization_list`. A child that fails fails the operation, naming the child run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import jsonschema

from ..context import Context
from ..exceptions import FieldError, InputValidationError
from ..runs import RunStatus
from ..tasks.definition import TaskDefinition, check_name, not_an_object
from ..tasks.options import TaskOptions
from ..tasks.signature import JSON_SCHEMA_DIALECT
from ..tasks.validation import field_errors_from_jsonschema
from .command import CommandTask
from .errors import CommandTaskError

if TYPE_CHECKING:
    from ..engine import Engine

__all__ = ["FractalOperation"]

_URLS = {"type": "array", "items": {"type": "string"}, "title": "Zarr Urls"}


def _strip(schema: Mapping[str, Any], fixed: Sequence[str]) -> dict[str, Any]:
    """An argument schema without the arguments the runner fills in itself."""
    properties = {k: v for k, v in (schema.get("properties") or {}).items() if k not in fixed}
    required = [k for k in schema.get("required") or [] if k not in fixed]
    stripped: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        stripped["required"] = required
    if "additionalProperties" in schema:
        stripped["additionalProperties"] = schema["additionalProperties"]
    return stripped


class FractalOperation(TaskDefinition):
    """A Fractal `parallel` or `compound` task: runs its command tasks as child runs."""

    def __init__(
        self,
        name: str,
        *,
        fractal_type: str,
        compute: CommandTask,
        init: CommandTask | None = None,
        label: str | None = None,
        description: str = "",
        options: TaskOptions | None = None,
        package: str | None = None,
    ) -> None:
        check_name(name)
        if fractal_type not in ("parallel", "compound"):
            raise ValueError(f"task {name!r}: fractal_type must be 'parallel' or 'compound'")
        if (fractal_type == "compound") != (init is not None):
            raise ValueError(f"task {name!r}: a compound task (and only it) has an init task")
        self.name = name
        self.kind = f"fractal_{fractal_type}"
        self.fractal_type = fractal_type
        self.label = label or name
        self.description = description
        self.options = options or TaskOptions()
        self.compute = compute
        self.init = init
        self.package = package
        self.module = f"command:{package or ''}"
        self.qualname = name
        self.is_async = True
        properties: dict[str, Any] = {"zarr_urls": _URLS}
        required = ["zarr_urls"]
        if init is not None:
            properties["zarr_dir"] = {"type": "string", "title": "Zarr Dir"}
            required.append("zarr_dir")
            init_args = _strip(init.input_schema, ("zarr_urls", "zarr_dir"))
            properties["args_non_parallel"] = {**init_args, "default": {}}
            fixed: tuple[str, ...] = ("zarr_url", "init_args")
        else:
            fixed = ("zarr_url",)
        properties["args_parallel"] = {**_strip(compute.input_schema, fixed), "default": {}}
        self._fixed = fixed
        defs = {**compute.input_schema.get("$defs", {})}
        if init is not None:
            defs.update(init.input_schema.get("$defs", {}))
        self._schema: dict[str, Any] = {
            "$schema": JSON_SCHEMA_DIALECT,
            "title": name,
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        }
        if defs:
            self._schema["$defs"] = defs
        self._validator = jsonschema.Draft202012Validator(self._schema)

    def __repr__(self) -> str:
        return f"<Fractal {self.fractal_type} task {self.name!r}>"

    @property
    def children(self) -> list[CommandTask]:
        return [self.init, self.compute] if self.init is not None else [self.compute]

    def same_as(self, other: object) -> bool:
        return (
            isinstance(other, FractalOperation)
            and other.name == self.name
            and all(a.same_as(b) for a, b in zip(other.children, self.children, strict=True))
        )

    @property
    def input_schema(self) -> dict[str, Any]:
        return self._schema

    @property
    def output_schema(self) -> dict[str, Any]:
        return {"type": "object"}

    def validate_inputs(self, inputs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        if not isinstance(inputs, Mapping):
            raise InputValidationError(self.name, [not_an_object(inputs)])
        values = {"args_parallel": {}, **inputs}
        if self.init is not None:
            values.setdefault("args_non_parallel", {})
        errors = field_errors_from_jsonschema(self._schema, values, self._validator)
        if errors:
            raise InputValidationError(self.name, errors)
        # The children's own validation (defaults filled in), once, before anything runs.
        sample = {"zarr_url": values["zarr_urls"][0] if values["zarr_urls"] else ""}
        if self.init is not None:
            sample["init_args"] = {}
            init_call = {
                "zarr_urls": values["zarr_urls"],
                "zarr_dir": values["zarr_dir"],
                **values["args_non_parallel"],
            }
            self._check_child(self.init, init_call, "args_non_parallel")
        self._check_child(self.compute, {**sample, **values["args_parallel"]}, "args_parallel")
        return values, values

    def _check_child(self, child: CommandTask, call: dict[str, Any], field: str) -> None:
        try:
            child.validate_inputs(call)
        except InputValidationError as exc:
            errors = [FieldError(f"{field}.{e.field}", e.message, e.value) for e in exc.errors]
            raise InputValidationError(self.name, errors) from None

    async def invoke(self, call: dict[str, Any], context: Context, engine: Engine) -> Any:
        log = context.logger
        urls: list[str] = list(call["zarr_urls"])
        result: dict[str, Any] = {}
        if self.init is not None:
            init_call = {
                "zarr_urls": urls,
                "zarr_dir": call["zarr_dir"],
                **call["args_non_parallel"],
            }
            (init_result,) = await self._run_children(engine, context, self.init, [init_call])
            entries = (init_result or {}).get("parallelization_list")
            if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
                raise CommandTaskError(
                    f"task {self.name!r}: the init task {self.init.name!r} returned no "
                    "`parallelization_list` (a list of objects with zarr_url and init_args)"
                )
            result["parallelization_list"] = entries
            calls = [{**entry, **call["args_parallel"]} for entry in entries]
        else:
            calls = [{"zarr_url": url, **call["args_parallel"]} for url in urls]
        log.info("%s: %d runs of %s", self.name, len(calls), self.compute.name)
        results = await self._run_children(engine, context, self.compute, calls)
        updates: list[Any] = []
        for item in results:
            if isinstance(item, dict):
                updates += item.get("image_list_updates") or []
        result["image_list_updates"] = updates
        result["results"] = results
        return result

    async def _run_children(
        self, engine: Engine, context: Context, child: CommandTask, calls: list[dict[str, Any]]
    ) -> list[Any]:
        run_ids: list[str] = []
        try:
            for inputs in calls:
                run = await engine.submit(child, inputs, parent_id=context.run_id)
                run_ids.append(run.id)
            finished = await engine.wait_many(run_ids)
        except asyncio.CancelledError:  # the operation is cancelled or timed out: so are they
            await asyncio.shield(_cancel_all(engine, run_ids))
            raise
        failed = [run for run in finished if run.status != RunStatus.COMPLETED]
        if failed:
            first = failed[0]
            reason = f"{first.error.type}: {first.error.message}" if first.error else first.status
            raise CommandTaskError(
                f"task {self.name!r}: {len(failed)} of {len(finished)} runs of {child.name!r} "
                f"did not complete; run {first.id}: {reason}"
            )
        return [run.result for run in finished]


async def _cancel_all(engine: Engine, run_ids: list[str]) -> None:
    for run_id in run_ids:
        await engine.cancel(run_id)
