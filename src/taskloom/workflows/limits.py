"""How large one workflow may be: steps in its definition, items in one map.

A workflow is data a client may send. Without a bound, one request with a million steps
(or a map over a result with ten million items) takes the process's memory and its event
loop with it. The defaults are far above what real workflows use; an engine given other
`WorkflowLimits` applies those. A count is checked before anything is built per step or
per item, and going over is an error naming the limit, the count and how to raise it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..exceptions import WorkflowValidationError

__all__ = [
    "DEFAULT_MAX_MAP_ITEMS",
    "DEFAULT_MAX_STEPS",
    "WorkflowLimitError",
    "WorkflowLimits",
]

DEFAULT_MAX_STEPS = 10_000
DEFAULT_MAX_MAP_ITEMS = 100_000

#: Where each limit is raised, named in the errors.
STEPS_SETTING = (
    "--max-workflow-steps or TASKLOOM_MAX_WORKFLOW_STEPS; in Python "
    "Engine(workflow_limits=WorkflowLimits(max_steps=...))"
)
ITEMS_SETTING = (
    "--max-map-items or TASKLOOM_MAX_MAP_ITEMS; in Python "
    "Engine(workflow_limits=WorkflowLimits(max_map_items=...))"
)


class WorkflowLimitError(WorkflowValidationError):
    """A workflow is larger than the engine's limits allow: too many steps, or too many
    items in one map."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowLimits:
    """The most steps one workflow definition may have, and the most items one `map` step
    may run (a list given in the definition, or a result it maps over, checked when the
    step starts)."""

    max_steps: int = DEFAULT_MAX_STEPS
    max_map_items: int = DEFAULT_MAX_MAP_ITEMS

    def __post_init__(self) -> None:
        for name in ("max_steps", "max_map_items"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"WorkflowLimits.{name} must be an integer >= 1, got {value!r}")

    def check_steps(self, workflow: str, count: int) -> None:
        """Refuse a definition with more than `max_steps` steps."""
        if count > self.max_steps:
            raise self.too_many_steps(workflow, count)

    def too_many_steps(self, workflow: str, count: int | None) -> WorkflowLimitError:
        """The error for a definition over `max_steps` (`count` None: counting stopped
        at the limit, the rest was not read)."""
        counted = f"{count:,} steps" if count is not None else f"more than {self.max_steps:,}"
        return WorkflowLimitError(
            workflow,
            f"has {counted}; the limit is {self.max_steps:,} steps in one workflow. "
            f"Split it into smaller workflows, or raise the limit ({STEPS_SETTING})",
            field="steps",
        )

    def check_map_items(self, workflow: str, step: str, over: str, count: int) -> None:
        """Refuse a map over more than `max_map_items` items."""
        if count > self.max_map_items:
            raise WorkflowLimitError(
                workflow,
                f"maps over {count:,} items; the limit is {self.max_map_items:,} items in "
                f"one map. Split the list over several steps, or raise the limit "
                f"({ITEMS_SETTING})",
                step=step,
                field=f"input {over!r}",
            )
