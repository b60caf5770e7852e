"""The idempotency keys of a workflow's step runs, written and read in this one place.

A step's run is keyed `<workflow run id>/<step>`, item `i` of a map step
`<workflow run id>/<step>/<i>`. The key makes inserting a step's run idempotent (a workflow
resumed by another engine finds the runs already made) and tells, from a child run alone,
which step and item it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..runs import Run

__all__ = ["StepKey", "item_index", "runs_by_step", "step_key"]


def step_key(run_id: str, step: str, index: int | None = None) -> str:
    """The idempotency key of a step's run (or of item `index` of a map step)."""
    return f"{run_id}/{step}" if index is None else f"{run_id}/{step}/{index}"


@dataclass(frozen=True, slots=True)
class StepKey:
    """A step run's key, read back: the workflow run, the step, the map item (or None)."""

    workflow_id: str
    step: str
    index: int | None

    @classmethod
    def of(cls, run: Run) -> StepKey | None:
        """The key of `run`, or None when it is not a step run's key."""
        return cls.parse(run.idempotency_key or "")

    @classmethod
    def parse(cls, key: str) -> StepKey | None:
        workflow_id, sep, rest = key.partition("/")
        if not sep or not rest:
            return None
        step, sep, tail = rest.partition("/")
        if not sep:
            return cls(workflow_id, step, None)
        return cls(workflow_id, step, int(tail)) if tail.isdigit() else None

    @property
    def key(self) -> str:
        return step_key(self.workflow_id, self.step, self.index)

    @property
    def within(self) -> str:
        """The key without the workflow run: `<step>` or `<step>/<i>`, the same in a rerun."""
        return self.step if self.index is None else f"{self.step}/{self.index}"


def runs_by_step(workflow_id: str, children: Iterable[Run]) -> dict[str, list[Run]]:
    """The step runs among `children` of workflow run `workflow_id`, by step; the items
    of a map step in item order."""
    steps: dict[str, list[Run]] = {}
    for child in children:
        key = StepKey.of(child)
        if key is not None and key.workflow_id == workflow_id:
            steps.setdefault(key.step, []).append(child)
    for runs in steps.values():
        runs.sort(key=item_index)
    return steps


def item_index(run: Run) -> int:
    """The map item a step run is, or -1 for the run of a step that runs once."""
    key = StepKey.of(run)
    return -1 if key is None or key.index is None else key.index
