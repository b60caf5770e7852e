"""What a workflow execution needs of the engine that drives it (a typed seam).

The engine gives each workflow execution a `WorkflowHost`; nothing in `workflows/`
reaches into the engine past it. The engine's implementation is `engine/steps.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..runs import ErrorInfo, Run, RunEventKind

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from ..engine.live import LiveRun
    from ..store import QueueStore
    from ..tasks.definition import TaskDefinition
    from ..tasks.registry import Registry
    from .execution import WorkflowExecution
    from .limits import WorkflowLimits

__all__ = ["Committed", "WorkflowHost"]

T = TypeVar("T")

#: Called once a change is committed (None) or refused (the error).
Committed = Callable[[BaseException | None], None]


class WorkflowHost(Protocol):
    """The engine as a workflow execution sees it."""

    @property
    def worker_id(self) -> str: ...

    @property
    def concurrency(self) -> int: ...

    @property
    def store(self) -> QueueStore:
        """The runs, and the queue for taking over workflows whose driver is gone."""
        ...

    @property
    def registry(self) -> Registry: ...

    @property
    def workflow_limits(self) -> WorkflowLimits: ...

    @property
    def drives_workflows(self) -> bool:
        """Whether this engine takes over the workflows of engines that died."""
        ...

    @property
    def tracer(self) -> Tracer | None:
        """The tracer of workflow and step spans; None when tracing is off."""
        ...

    def definition(self, task: Any) -> TaskDefinition:
        """The definition of a task object or registered name (registered if new)."""
        ...

    # the workflow run ---------------------------------------------------------------------
    def record_workflow(self, run: Run, committed: Committed) -> None:
        """Insert a workflow run this engine drives (refused at once, with
        `StoreUnavailableError`, while the store is away)."""
        ...

    def attach(self, execution: WorkflowExecution) -> None:
        """The engine drives this execution now: `wait` and `cancel` go to it."""
        ...

    def detach(self, run_id: str) -> None: ...

    def driving(self, run_id: str) -> bool: ...

    def finish_workflow(self, run: Run, committed: Committed) -> None:
        """Record the workflow run's end (status, result, error, finished_at of `run`)."""
        ...

    def release_workflow(self, run_id: str) -> None:
        """Let go of a workflow run unfinished (the engine closes): any engine resumes it."""
        ...

    def finished(self, run: Run) -> None:
        """A workflow run ended (committed): tell listeners, keep it for `wait`."""
        ...

    # step runs ----------------------------------------------------------------------------
    def shares(self, definition: TaskDefinition) -> bool:
        """Whether runs of this task may be executed by another worker than this engine
        (so a step's `concurrency` must hold in the database, not only here)."""
        ...

    def step_run(self, run: Run, definition: TaskDefinition, call: dict[str, Any]) -> LiveRun:
        """A step run to insert: held by this engine when it can start it soon (or no
        other worker serves its queue), else left for any worker (`run.worker_id` says)."""
        ...

    def insert_steps(self, runs: list[Run], committed: Committed) -> None:
        """Insert step runs (one commit; dependents of a step join the commit of its end)."""
        ...

    def inserted(self, live: LiveRun, *, start: bool) -> None:
        """A step run's insert is committed: hold it (queue it when `start`) or, left
        for any worker, watch for its end (its `on_finish` is called either way)."""
        ...

    def start_held(self, live: LiveRun) -> None:
        """Queue a step run held back by its step's concurrency."""
        ...

    def watch(self, run_id: str, ended: Callable[[Run], None]) -> None:
        """Call `ended` with a run executed anywhere once it has ended."""
        ...

    def fail_step(self, live: LiveRun, error: ErrorInfo) -> None: ...

    def cancel_step(self, run_id: str, live: LiveRun | None) -> None:
        """Cancel a step run wherever it executes (or stop it here; `live`: the step's
        run as inserted from here, None for one found in the store)."""
        ...

    def tell(self, kind: RunEventKind, run: Run) -> None:
        """Tell the engine's listeners (`submitted`, `finished`, ...)."""
        ...

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T: ...
