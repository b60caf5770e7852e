"""The engine as the host of the workflows it drives (`workflows.host.WorkflowHost`).

Workflow executions see the engine only through this object: they insert step runs, learn
of their ends, record the workflow run and tell listeners through it, never through the
engine's own attributes.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..exceptions import RunNotFoundError, StoreError
from ..runs import ErrorInfo, Run, RunEventKind, RunStatus
from .live import LiveRun

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from ..store import Store
    from ..tasks.definition import TaskDefinition
    from ..tasks.registry import Registry
    from ..workflows.execution import WorkflowExecution
    from ..workflows.host import Committed
    from ..workflows.limits import WorkflowLimits
    from .engine import Engine

__all__ = ["EngineWorkflowHost"]

T = TypeVar("T")


class EngineWorkflowHost:
    """What an `Engine` offers the workflow executions it drives."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        #: Workflow runs executing here, by id (`wait` and `cancel` go to them).
        self.executions: dict[str, WorkflowExecution] = {}

    @property
    def worker_id(self) -> str:
        return self._engine.worker_id

    @property
    def concurrency(self) -> int:
        return self._engine.concurrency

    @property
    def store(self) -> Store:
        store = self._engine.store
        assert store is not None
        return store

    @property
    def registry(self) -> Registry:
        return self._engine.registry

    @property
    def workflow_limits(self) -> WorkflowLimits:
        return self._engine.workflow_limits

    @property
    def drives_workflows(self) -> bool:
        engine = self._engine
        return engine.worker and engine._recover_enabled and not engine._closing

    @property
    def tracer(self) -> Tracer | None:
        return self._engine._tracer

    def definition(self, task: Any) -> TaskDefinition:
        return self._engine._definition(task)

    # the workflow run ---------------------------------------------------------------------
    def record_workflow(self, run: Run, committed: Committed) -> None:
        writer = self._engine._writer
        assert writer is not None
        writer.check_available(run.task)
        writer.submit_run(run, committed)

    def attach(self, execution: WorkflowExecution) -> None:
        self.executions[execution.run.id] = execution

    def detach(self, run_id: str) -> None:
        self.executions.pop(run_id, None)

    def driving(self, run_id: str) -> bool:
        return run_id in self.executions

    def finish_workflow(self, run: Run, committed: Committed) -> None:
        writer = self._engine._writer
        assert writer is not None
        fields = {
            "status": run.status,
            "result": run.result,
            "error": run.error,
            "finished_at": run.finished_at,
        }
        writer.finish(run.id, fields, None, None, committed)

    def release_workflow(self, run_id: str) -> None:
        writer = self._engine._writer
        if writer is not None:
            writer.update_run(run_id, {"worker_id": None})

    def finished(self, run: Run) -> None:
        engine = self._engine
        engine._finished[run.id] = run
        self.tell(RunEventKind.FINISHED, run)

    # step runs ----------------------------------------------------------------------------
    def shares(self, definition: TaskDefinition) -> bool:
        return self._engine._shares_queue(definition, definition.options.queue)

    def step_run(self, run: Run, definition: TaskDefinition, call: dict[str, Any]) -> LiveRun:
        engine = self._engine
        if engine._hold_at_submit(definition, run.queue):
            run.worker_id, run.lease = engine.worker_id, 1
        else:
            run.worker_id, run.lease = None, 0
        return LiveRun(engine._execution, run, definition, call, None)

    def insert_steps(self, runs: list[Run], committed: Committed) -> None:
        engine = self._engine
        writer = engine._writer
        assert writer is not None
        held = sum(1 for run in runs if run.worker_id == engine.worker_id and run.lease)
        done = functools.partial(self._steps_inserted, held, committed) if held else committed
        if len(runs) == 1:  # a single insert may be committed on the loop (see BatchWriter)
            writer.new_run(runs[0], done)
        else:
            writer.new_runs(runs, done)

    def _steps_inserted(self, held: int, committed: Committed, error: BaseException | None) -> None:
        self._engine._reserved -= held  # (taken by `step_run`)
        committed(error)

    def inserted(self, live: LiveRun, *, start: bool) -> None:
        engine = self._engine
        run = live.run
        if run.worker_id is None:
            engine._on_inserted(live, None, None)  # kept for a claim here; claimable by all
            self.watch(run.id, functools.partial(_ended_elsewhere, live))
            return
        engine._hold(live)
        if start:
            engine._on_inserted(live, None, None)

    def start_held(self, live: LiveRun) -> None:
        self._engine._on_inserted(live, None, None)

    def watch(self, run_id: str, ended: Callable[[Run], None]) -> None:
        claims = self._engine._claims
        assert claims is not None
        claims.watch(run_id, ended)

    def fail_step(self, live: LiveRun, error: ErrorInfo) -> None:
        self._engine._execution.finish(live, RunStatus.FAILED, error=error)

    def cancel_step(self, run_id: str, live: LiveRun | None) -> None:
        engine = self._engine
        held = engine._live.get(run_id)
        if held is None and live is not None and live.run.worker_id == engine.worker_id:
            held = live  # held from its insert, not committed yet
        if held is not None:
            engine._control.cancel(held)
            return
        engine._spawn(self._cancel_elsewhere(run_id))

    async def _cancel_elsewhere(self, run_id: str) -> None:
        with contextlib.suppress(RunNotFoundError, StoreError):
            await self._engine.cancel(run_id)

    def tell(self, kind: RunEventKind, run: Run) -> None:
        engine = self._engine
        if engine._listeners or engine._execution.end_listeners:
            engine._execution.emit(kind, run)

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._engine._in_thread(fn, *args)


def _ended_elsewhere(live: LiveRun, run: Run) -> None:
    """A step run left for any worker ended (wherever it ran): report it, unless this
    engine executed it and reported it already."""
    if live.on_finish is None or live.run.is_finished:
        return
    live.run = run
    live.on_finish(live)
