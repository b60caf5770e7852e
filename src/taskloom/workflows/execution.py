"""Executing one workflow run: a count of unmet dependencies per step and a ready list.

Nothing rescans the graph. When a step settles, each of its dependents has its count
lowered; a dependent whose count reaches zero starts. A failed (or skipped, or cancelled)
required dependency skips its dependents at once, which skip theirs in turn.

Step runs are runs like any other, inserted through the engine (one commit for many
items of a `map`). One the engine can start soon, or whose queue no other worker serves,
is held by it from its insert and queued in its `ReadyQueue`; the rest wait in the
database for any worker, this one included, so a map's items spread over every worker
(its `concurrency` then bounds how many are inserted and unfinished, so it holds across
them). Each step run is a child of the workflow run (`parent_id`) and carries the
idempotency key `<workflow run id>/<step>` (a map item: `<workflow run id>/<step>/<index>`),
unique in the store: that is how `show` and `rerun` find a step's runs, and why a step is
never inserted twice. The engine reports the end of a step run it holds through
`LiveRun.on_finish` as it records it (no coroutine per step, and the inserts of the
dependents join the commit of that end: the writer keeps order, so nothing that depends
on a result is committed before it); the end of one executed elsewhere comes from the
store's change feed.

The workflow run is driven by one engine at a time (its `worker_id`). If that engine dies,
another resumes it (`WorkflowExecution(existing=...)`): from the workflow's definition in
the run's record and the step runs already in the store, it goes on where the first left
off, waiting for the step runs still unfinished (given back by the reaper when their
worker died too) and inserting only the steps that have no run yet. An engine that closes
lets go of its workflows the same way; one that loses its lease drops them.

Large maps and wide workflows are taken in slices, so the event loop they share with
everything else (the HTTP API) is never held for long, and the writer's queue stays
short (a few thousand changes, not a whole map, between a change and its commit): a
map's items are validated `ITEMS_PER_TURN` per turn of the loop,
before any of them runs (one invalid item fails the step with nothing run); a map keeps
only so many items inserted and not yet finished (as many as may run: `MAP_RUNNING`, or
the step's own `concurrency`, or the engine's if lower; and a slice more, queued, so none
waits for an insert to commit), and inserts the next slice as earlier items end; steps
that become ready together start `ITEMS_PER_TURN` per turn.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import functools
import time
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

from ..exceptions import EngineClosedError, InputValidationError
from ..observability import tracing
from ..runs import ErrorInfo, Run, RunEventKind, RunStatus, new_run_id
from ..tasks.definition import TaskDefinition
from .keys import StepKey
from .limits import WorkflowLimitError, WorkflowLimits
from .model import Step, Workflow
from .references import Ref, resolve_value

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from ..engine.live import LiveRun
    from .host import WorkflowHost

__all__ = ["ITEMS_PER_TURN", "MAP_RUNNING", "WorkflowExecution"]

#: Map items validated (or inserted, or steps started) in one turn of the event loop.
ITEMS_PER_TURN = 250
#: Items of a map without a `concurrency` of its own that may run at once (fewer if the
#: engine's concurrency is lower): more in flight only lengthen the writer's queue.
MAP_RUNNING = 500

_COMPLETED, _FAILED = RunStatus.COMPLETED, RunStatus.FAILED
_CANCELLED, _SKIPPED = RunStatus.CANCELLED, RunStatus.SKIPPED
_ABSENT = object()  # the result of an optional dependency that did not complete


class _StepState:
    __slots__ = (
        "active",
        "definition",
        "dependents",
        "error",
        "held",
        "in_flight",
        "items",
        "lives",
        "next_item",
        "outcomes",
        "prepared",
        "remaining",
        "remote",
        "result",
        "shared",
        "skip_cause",
        "span",
        "started",
        "status",
        "step",
        "trace",
        "unconfirmed",
        "waiting",
    )

    def __init__(self, step: Step, definition: TaskDefinition) -> None:
        self.step = step
        self.definition = definition
        self.waiting = len(step.dependencies)
        self.dependents: list[_StepState] = []
        self.status: RunStatus | None = None
        self.result: Any = None
        self.error: ErrorInfo | None = None
        self.skip_cause: str | None = None
        self.started = False
        # Items not finished, by index (a finished item's run, task and context are let go).
        self.lives: dict[int, LiveRun] = {}
        self.held: deque[tuple[int, LiveRun]] = deque()  # items past the step's concurrency
        self.outcomes: list[Run | None] = []
        self.remaining = 0  # items without an outcome
        # A map: the list it maps over and its inputs while they are validated, then each
        # item's (call, stored inputs); items from `next_item` on are not inserted yet.
        self.items: tuple[dict[str, Any], list[Any]] | None = None
        self.prepared: list[tuple[dict[str, Any], Any]] = []
        self.next_item = 0
        self.in_flight = 0  # inserted (or being inserted), not finished
        self.active = 0  # handed to the engine's queue, not finished
        self.unconfirmed: set[int] = set()  # items whose insert is not committed yet
        self.remote: dict[int, str] = {}  # items found in the store unfinished (resumed)
        self.shared = False  # its runs may execute on other workers (see `_window`)
        # When tracing: the step's span, and the trace context its runs are recorded with.
        self.span: Span | None = None
        self.trace: dict[str, str] | None = None


class WorkflowExecution:
    """The engine-side state of one workflow run while it executes."""

    def __init__(
        self,
        host: WorkflowHost,
        workflow: Workflow,
        definitions: dict[str, TaskDefinition],
        run: Run,
        *,
        reuse: dict[str, Run] | None = None,
        limits: WorkflowLimits | None = None,
        existing: dict[str, Run] | None = None,
    ) -> None:
        """`existing`: resuming a workflow run another engine drove, the step runs it has
        in the store, by the part of their key after the workflow run's id."""
        self.host = host
        self.tracer = host.tracer
        self.workflow = workflow
        self.run = run
        self.reuse = reuse or {}
        self.existing = existing or {}
        self.abandoned = False  # let go of (the engine closed or lost its lease)
        self.limits = limits or WorkflowLimits()
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.done: asyncio.Future[Run] = loop.create_future()
        self.states = {
            name: _StepState(step, _with_overrides(step, definitions[name]))
            for name, step in workflow.steps.items()
        }
        for state in self.states.values():
            for dependency in state.step.dependencies:
                self.states[dependency].dependents.append(state)
        self.open = len(self.states)
        self.counts: Counter[str] = Counter()
        self.reused = 0
        self.failures: dict[str, list[dict[str, Any]]] = {}
        self.failed_steps: list[str] = []
        self.stopping: ErrorInfo | None = None  # set by cancel or by the engine closing
        self.stop_status = _CANCELLED
        self._settled: deque[_StepState] = deque()
        self._to_start: deque[_StepState] = deque()  # ready, to start in later turns
        self._draining = False
        self._finishing = False

    # control ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._start_all([s for s in self.states.values() if s.waiting == 0])

    def _start_all(self, ready: list[_StepState]) -> None:
        """Start steps that became ready together, higher priority first: their runs are
        queued in this order, so with no free slot the engine takes them in this order.
        Many at once start `ITEMS_PER_TURN` per turn of the loop."""
        ready.sort(key=_priority, reverse=True)
        if not self._to_start and len(ready) <= ITEMS_PER_TURN:
            for state in ready:
                self._ready(state)
            return
        if not self._to_start:
            self.loop.call_soon(self._start_some)
        self._to_start.extend(ready)

    def _start_some(self) -> None:
        if self.abandoned:
            return
        waiting = self._to_start
        for _ in range(min(ITEMS_PER_TURN, len(waiting))):
            self._ready(waiting.popleft())
        if waiting:
            self.loop.call_soon(self._start_some)

    async def cancel(self) -> Run:
        """Cancel every running and pending step; the workflow run ends `cancelled`."""
        self.stop(_CANCELLED, ErrorInfo("Cancelled", f"workflow run {self.run.id} was cancelled"))
        return await asyncio.shield(self.done)

    def stop(self, status: RunStatus, error: ErrorInfo) -> None:
        if self.stopping is not None or self.done.done() or self.abandoned:
            return
        self.stopping = error
        self.stop_status = status
        host = self.host
        for state in self.states.values():
            for index, live in list(state.lives.items()):
                if live.run.is_finished:
                    continue
                if index in state.unconfirmed and live.run.worker_id is None:
                    live.run.cancel_requested = True  # cancelled once its insert is committed
                else:
                    host.cancel_step(live.run.id, live)
            for run_id in list(state.remote.values()):
                host.cancel_step(run_id, None)

    def abandon(self) -> None:
        """Stop driving this workflow run without recording anything more of it (the
        engine closes, or lost its lease): another engine resumes it from the store."""
        if self.abandoned or self.done.done():
            return
        self.abandoned = True
        self._to_start.clear()
        for state in self.states.values():
            if state.span is not None:
                tracing.end(state.span, "abandoned")
                state.span = None
        self.done.set_exception(
            EngineClosedError(f"the engine stopped driving workflow run {self.run.id}")
        )
        self.done.exception()  # retrieved: nobody need wait for it

    # a step becomes ready ------------------------------------------------------------------------
    def _ready(self, state: _StepState) -> None:
        if state.status is not None or state.started or self.abandoned:
            return
        state.started = True
        step = state.step
        if self.stopping is not None:
            self._record_terminal(state, _CANCELLED, error=self.stopping)
            return
        if self.tracer is not None:
            state.span, state.trace = tracing.start_step(self.tracer, self.run, step.name)
        try:
            inputs = self._resolve(step)
            if step.map is None:
                prepared = [self._validated(state, inputs, None)]
            else:
                over = inputs.get(step.map)
                if not isinstance(over, list):
                    raise TypeError(
                        f"step {step.name!r}: input {step.map!r} to map over must be a list, "
                        f"got {type(over).__name__}"
                    )
                self.limits.check_map_items(self.workflow.name, step.name, step.map, len(over))
                state.items = (inputs, over)
                self._validate_items(state)
                return
        except (InputValidationError, WorkflowLimitError, LookupError, TypeError) as exc:
            self._record_terminal(state, _FAILED, error=ErrorInfo.from_exception(exc))
            return
        self._launch(state, prepared)

    def _validate_items(self, state: _StepState) -> None:
        """Validate the next `ITEMS_PER_TURN` items of a map; launch it once all are."""
        assert state.items is not None
        if self.abandoned:
            return
        if self.stopping is not None:
            state.items, state.prepared = None, []
            self._record_terminal(state, _CANCELLED, error=self.stopping)
            return
        inputs, over = state.items
        name = state.step.map
        assert name is not None
        prepared = state.prepared
        end = min(len(over), len(prepared) + ITEMS_PER_TURN)
        try:
            for index in range(len(prepared), end):
                prepared.append(self._validated(state, {**inputs, name: over[index]}, index))
        except InputValidationError as exc:
            state.items, state.prepared = None, []
            self._record_terminal(state, _FAILED, error=ErrorInfo.from_exception(exc))
            return
        if end < len(over):
            self.loop.call_soon(self._validate_items, state)
            return
        state.items = None
        self._launch(state, prepared)

    def _validated(
        self, state: _StepState, item: dict[str, Any], index: int | None
    ) -> tuple[dict[str, Any], Any]:
        try:
            return state.definition.validate_inputs(item)
        except InputValidationError as exc:
            where = f"item {index} of " if index is not None else ""
            raise InputValidationError(
                f"{exc.task} ({where}step {state.step.name!r} of workflow {self.workflow.name!r})",
                exc.errors,
            ) from None

    def _resolve(self, step: Step) -> dict[str, Any]:
        inputs: dict[str, Any] = {}
        for key, value in step.inputs.items():
            if isinstance(value, Ref) and self._lookup(value) is _ABSENT:
                continue  # a failed optional dependency: the input's default applies
            inputs[key] = resolve_value(value, self._lookup_or_none)
        return inputs

    def _lookup(self, ref: Ref) -> Any:
        if ref.source == "inputs":
            return ref.follow(self.run.inputs.get(ref.name))
        dependency = self.states[ref.name]
        if dependency.status != _COMPLETED:
            return _ABSENT
        return ref.follow(dependency.result)

    def _lookup_or_none(self, ref: Ref) -> Any:
        value = self._lookup(ref)
        return None if value is _ABSENT else value

    # creating step runs ----------------------------------------------------------------------
    def _new_run(
        self, state: _StepState, stored: dict[str, Any], key: str, status: RunStatus
    ) -> Run:
        step, definition = state.step, state.definition
        now = time.time()
        retries = definition.options.retries if step.retries is None else step.retries
        run = Run(
            id=new_run_id(),
            task=definition.name,
            inputs=stored,
            status=status,
            priority=definition.options.priority if step.priority is None else step.priority,
            max_attempts=retries + 1,
            parent_id=self.run.id,
            idempotency_key=key,
            created_at=now,
            queue=definition.options.queue,
            trace_context=state.trace,
        )
        if status.is_terminal:
            run.finished_at = now
        return run

    def _launch(self, state: _StepState, prepared: list[tuple[dict[str, Any], Any]]) -> None:
        state.outcomes = [None] * len(prepared)
        state.remaining = len(prepared)
        state.prepared = prepared
        state.shared = self.host.shares(state.definition)
        if not prepared:  # a map over an empty list
            self._settle(state, _COMPLETED, result=[])
            return
        self._insert_items(state)

    def _insert_items(self, state: _StepState) -> None:
        """Insert the step's next items, as many as the window leaves room for."""
        if self.abandoned:
            return
        host = self.host
        step = state.step
        is_map = step.map is not None
        start = state.next_item
        end = min(len(state.prepared), start + self._window(state) - state.in_flight)
        if end <= start:
            return
        runs: list[Run] = []
        lives: list[tuple[int, LiveRun]] = []
        reused: list[tuple[int, Run]] = []
        found: list[tuple[int, Run]] = []
        for index in range(start, end):
            call, stored = state.prepared[index]
            step_run = StepKey(self.run.id, step.name, index if is_map else None)
            key, suffix = step_run.key, step_run.within
            there = self.existing.pop(suffix, None)
            if there is not None:  # resuming: this item has a run already
                found.append((index, there))
                continue
            old = self.reuse.get(suffix)
            if old is not None and old.inputs == stored:
                run = self._new_run(state, stored, key, _COMPLETED)
                run.result = old.result
                run.started_at = run.finished_at
                runs.append(run)
                reused.append((index, run))
                continue
            run = self._new_run(state, stored, key, RunStatus.PENDING)
            runs.append(run)
            live = host.step_run(run, state.definition, call)
            # Not handed to the engine yet (see `_inserted`); a cancel before the insert
            # is committed reports the end through this.
            live.on_finish = functools.partial(self._live_done, state, index, False)
            lives.append((index, live))
            state.lives[index] = live
            state.unconfirmed.add(index)
        state.next_item = end
        state.in_flight += end - start
        if end == len(state.prepared):
            state.prepared = []  # all inserted: let the inputs go
        self.reused += len(reused)
        if runs:
            host.insert_steps(runs, functools.partial(self._inserted, state, lives, reused))
        for index, there in found:
            if not there.is_finished:
                state.remote[index] = there.id
                host.watch(there.id, functools.partial(self._remote_done, state, index))
        ended = [(index, there) for index, there in found if there.is_finished]
        if ended:  # next turn: this may be deep in the settling of another step
            self.loop.call_soon(self._items_found, state, ended)

    def _items_found(self, state: _StepState, ended: list[tuple[int, Run]]) -> None:
        for index, run in ended:
            if not self.abandoned and state.outcomes[index] is None:
                self._item_finished(state, index, run)

    def _remote_done(self, state: _StepState, index: int, run: Run) -> None:
        """An item executed elsewhere (found unfinished on resuming) ended."""
        if self.abandoned or state.remote.pop(index, None) is None:
            return
        if state.outcomes and state.outcomes[index] is None:
            self._item_finished(state, index, run)

    def _window(self, state: _StepState) -> int:
        limit = state.step.concurrency
        if limit is not None and state.shared:
            # Any worker may take an inserted item: the limit is what is inserted.
            return min(limit, MAP_RUNNING)
        running = limit or MAP_RUNNING
        return min(self.host.concurrency, running) + ITEMS_PER_TURN

    def _inserted(
        self,
        state: _StepState,
        lives: list[tuple[int, LiveRun]],
        reused: list[tuple[int, Run]],
        error: BaseException | None,
    ) -> None:
        host = self.host
        for index, _ in lives:
            state.unconfirmed.discard(index)
        if self.abandoned:
            return
        if error is not None:
            failure = ErrorInfo.from_exception(error)
            for _, live in lives:
                if not live.run.is_finished:
                    host.fail_step(live, failure)
            for index, run in reused:
                self._item_finished(state, index, run)
            return
        for _, run in reused:
            host.tell(RunEventKind.SUBMITTED, run)
            host.tell(RunEventKind.FINISHED, run)
        limit = state.step.concurrency
        for index, live in lives:
            if live.run.is_finished:  # cancelled before its insert was committed
                continue
            if live.run.worker_id is None:  # for any worker: this engine watches its end
                host.inserted(live, start=False)
                if live.run.cancel_requested:
                    host.cancel_step(live.run.id, live)
                continue
            if limit is not None and state.active >= limit:
                host.inserted(live, start=False)
                state.held.append((index, live))
                continue
            self._hand(state, index, live, first=True)
        for index, run in reused:
            self._item_finished(state, index, run)

    def _hand(self, state: _StepState, index: int, live: LiveRun, *, first: bool = False) -> None:
        """Queue an item in the engine (it counts against the step's concurrency)."""
        live.on_finish = functools.partial(self._live_done, state, index, True)
        state.active += 1
        if first:
            self.host.inserted(live, start=True)
        else:
            self.host.start_held(live)

    def _live_done(self, state: _StepState, index: int, handed: bool, live: LiveRun) -> None:
        """A step run ended (called by the engine as it records the end, or from the
        store's change feed when another worker executed it); `handed`: it was in this
        engine's queue, not held back by the step's concurrency."""
        if handed:
            state.active -= 1
            if state.held:
                # Next turn: an inline task would otherwise run inside this call, and the
                # next inside that one, as deep as the list of held items.
                self.loop.call_soon(self._release_held, state)
        if self.abandoned or not state.outcomes or state.outcomes[index] is not None:
            return
        state.lives.pop(index, None)
        self._item_finished(state, index, live.run)

    def _release_held(self, state: _StepState) -> None:
        if self.abandoned:
            return
        held, limit = state.held, state.step.concurrency
        while held and (limit is None or state.active < limit):
            index, live = held.popleft()
            if not live.run.is_finished:
                self._hand(state, index, live)

    def _item_finished(self, state: _StepState, index: int, run: Run) -> None:
        state.outcomes[index] = run
        state.remaining -= 1
        state.in_flight -= 1
        if state.remaining:
            if state.next_item < len(state.outcomes) and state.status is None:
                if self.stopping is not None:
                    if not state.in_flight:  # nothing of the rest was inserted: none ran
                        state.prepared = []
                        self._settle(state, _CANCELLED, error=self.stopping)
                elif state.in_flight <= self._window(state) - ITEMS_PER_TURN:
                    self._insert_items(state)
            return
        outcomes = [r for r in state.outcomes if r is not None]
        if state.step.map is None:
            only = outcomes[0]
            self._settle(state, only.status, result=only.result, error=only.error)
            return
        self._settle_map(state, outcomes)

    def _settle_map(self, state: _StepState, outcomes: list[Run]) -> None:
        failed = [(i, r) for i, r in enumerate(outcomes) if r.status != _COMPLETED]
        results = [r.result for r in outcomes if r.status == _COMPLETED]
        if not failed:
            self._settle(state, _COMPLETED, result=results)
            return
        if any(r.status == _CANCELLED for _, r in failed) and self.stopping is not None:
            self._settle(state, _CANCELLED, error=self.stopping)
            return
        records = [
            {"index": i, "run": r.id, "status": str(r.status), "error": _describe(r.error)}
            for i, r in failed
        ]
        self.failures[state.step.name] = records
        if state.step.on_failure == "continue":
            self._settle(state, _COMPLETED, result=results)
            return
        first_index, first = failed[0]
        message = (
            f"{len(failed)} of {len(outcomes)} items failed; item {first_index} "
            f"(run {first.id}): {_describe(first.error)}"
        )
        self._settle(state, _FAILED, error=ErrorInfo("MapItemsFailed", message))

    def _record_terminal(
        self, state: _StepState, status: RunStatus, *, error: ErrorInfo | None
    ) -> None:
        """A step that never runs: recorded as a run that is already finished."""
        step_run = StepKey(self.run.id, state.step.name, None)
        key = step_run.key
        if self.existing.pop(step_run.within, None) is None:  # (resuming: recorded)
            run = self._new_run(state, {}, key, status)
            run.error = error
            self.host.insert_steps([run], _ignore)
            self.host.tell(RunEventKind.SUBMITTED, run)
            self.host.tell(RunEventKind.FINISHED, run)
        self._settle(state, status, error=error)

    # a step settles ----------------------------------------------------------------------
    def _settle(
        self,
        state: _StepState,
        status: RunStatus,
        *,
        result: Any = None,
        error: ErrorInfo | None = None,
    ) -> None:
        state.status = status
        state.result = result
        state.error = error
        state.lives = {}
        if self.tracer is not None:
            self._end_span(state, status, error)
        self.open -= 1
        self.counts[str(status)] += 1
        if status == _FAILED or (status == _CANCELLED and self.stopping is None):
            self.failed_steps.append(state.step.name)
        self._settled.append(state)
        if self._draining:
            return  # the loop below takes it: skips cascade without deep recursion
        self._draining = True
        ready: list[_StepState] = []
        try:
            while self._settled:
                self._propagate(self._settled.popleft(), ready)
        finally:
            self._draining = False
        if ready:
            self._start_all(ready)
        if self.open == 0:
            self._finish()

    def _end_span(self, state: _StepState, status: RunStatus, error: ErrorInfo | None) -> None:
        assert self.tracer is not None
        span = state.span
        if span is None:  # a step that never ran (skipped, cancelled) has its span too
            span, _ = tracing.start_step(self.tracer, self.run, state.step.name)
        state.span = None
        tracing.end(span, status.value, error=error if status == _FAILED else None)

    def _propagate(self, settled: _StepState, ready: list[_StepState]) -> None:
        name = settled.step.name
        for dependent in settled.dependents:
            if dependent.status is not None or dependent.started:
                continue
            dependent.waiting -= 1
            if settled.status != _COMPLETED and name not in dependent.step.optional:
                dependent.skip_cause = dependent.skip_cause or name
                dependent.started = True
                if self.stopping is not None:
                    self._record_terminal(dependent, _CANCELLED, error=self.stopping)
                else:
                    reason = f"step {name!r} ended {settled.status}; nothing of this step ran"
                    self._record_terminal(dependent, _SKIPPED, error=ErrorInfo("Skipped", reason))
            elif dependent.waiting == 0:
                ready.append(dependent)

    # the workflow run ends -----------------------------------------------------------------
    def _finish(self) -> None:
        if self._finishing or self.abandoned:
            return
        self._finishing = True
        error: ErrorInfo | None = None
        if self.stopping is not None:
            status, error = self.stop_status, self.stopping
        elif self.failed_steps:
            status = _FAILED
            parts = []
            for name in self.failed_steps:
                step_error = self.states[name].error
                parts.append(f"step {name!r} failed: {_describe(step_error)}")
            skipped = [n for n, s in self.states.items() if s.status == _SKIPPED]
            if skipped:
                parts.append(f"skipped: {', '.join(skipped)}")
            error = ErrorInfo("WorkflowStepFailed", "; ".join(parts))
        else:
            status = _COMPLETED
        result: dict[str, Any] = {
            "outputs": self._outputs(),
            "steps": dict(sorted(self.counts.items())),
            "reused": self.reused,
        }
        if self.failures:
            result["failures"] = self.failures
        run = self.run
        run.status, run.result, run.error = status, result, error
        run.finished_at = time.time()
        self.host.finish_workflow(run, self._finish_committed)

    def _outputs(self) -> dict[str, Any]:
        if self.workflow.outputs:
            return {
                key: resolve_value(value, self._output_lookup)
                for key, value in self.workflow.outputs.items()
            }
        return {
            name: state.result
            for name, state in self.states.items()
            if not state.dependents and state.status == _COMPLETED
        }

    def _output_lookup(self, ref: Ref) -> Any:
        try:
            return self._lookup_or_none(ref)
        except LookupError:
            return None

    def _finish_committed(self, error: BaseException | None) -> None:
        self.host.detach(self.run.id)
        if error is not None:
            if not self.done.done():
                self.done.set_exception(error)
                self.done.exception()
            return
        self.host.finished(self.run)
        if not self.done.done():
            self.done.set_result(self.run.copy())


def _with_overrides(step: Step, definition: TaskDefinition) -> TaskDefinition:
    """The step's own timeout replaces the task's (on a copy: the task is left alone)."""
    if step.timeout is None or step.timeout == definition.options.timeout:
        return definition
    changed = copy.copy(definition)
    changed.options = dataclasses.replace(definition.options, timeout=step.timeout)
    return changed


def _priority(state: _StepState) -> int:
    step = state.step
    return state.definition.options.priority if step.priority is None else step.priority


def _describe(error: ErrorInfo | None) -> str:
    return "no error recorded" if error is None else f"{error.type}: {error.message}"


def _ignore(error: BaseException | None) -> None:
    """A finished step's record is written with the others; an error there surfaces when
    the workflow run's own end is committed."""
