"""A run this engine holds in memory while it is queued or executing, and how it is called."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..aio import maybe_await
from ..context import Context
from ..runs import LogLine, Run, storable_text
from ..tasks.classes import ClassTask, Task
from ..tasks.definition import FunctionTask, TaskDefinition

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from .execution import RunExecution

__all__ = ["LiveRun", "TaskReportedFailure"]


class TaskReportedFailure(Exception):
    """A class task returned `{"status": "failed", "error": ...}` (the executor convention)."""

    def __init__(self, message: str, error_type: str) -> None:
        super().__init__(message)
        self.error_type = error_type


class LiveRun:
    """Engine-side state of one run: its record, its task, and its current attempt."""

    __slots__ = (
        "attempt_open",
        "began",
        "call",
        "cancelling",
        "claim_started",
        "config",
        "context",
        "dispatched",
        "dropped",
        "execution",
        "inserted",
        "instance",
        "interrupting",
        "on_finish",
        "priority",
        "run",
        "runner",
        "settled",
        "span",
        "task",
        "task_limit",
        "task_name",
        "timer",
        "token",
        "waiters",
    )

    def __init__(
        self,
        runner: RunExecution,
        run: Run,
        task: TaskDefinition,
        call: dict[str, Any],
        config: Any,
    ) -> None:
        self.runner = runner  # executes it, and hears what it reports
        self.run = run
        self.task = task
        self.task_name = run.task
        self.priority = run.priority
        self.task_limit = runner.task_limit(task)
        self.call = call
        self.config = config
        self.dropped = False  # cancelled while queued
        self.settled = True  # the current attempt has an outcome (or none has started)
        self.attempt_open = False
        self.dispatched = False  # holds a slot of the ReadyQueue
        #: Set while a run is inserted already started (`RunExecution.start_at_insert`):
        #: told once its insert, with its start, is committed.
        self.inserted: Callable[[BaseException | None], None] | None = None
        #: Started by its claim (`RunExecution.started_by_claim`): its attempt is in the
        #: store already, so the next `_begin` records nothing.
        self.claim_started = False
        self.began = False  # the current attempt's call has begun (see RunExecution._begin)
        self.token = 0  # the attempt number the current dispatch is for
        self.cancelling = False
        self.interrupting = False
        self.context: Context | None = None
        self.instance: Task | None = None
        self.execution: asyncio.Future[Any] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.waiters: list[asyncio.Future[Run]] | None = None
        self.on_finish: Callable[[LiveRun], None] | None = None  # set for workflow steps
        self.span: Span | None = None  # the current attempt's, when tracing

    def on_final_commit(self, error: BaseException | None) -> None:
        self.runner.on_final_commit(self, error)

    # the RunSink the Context reports to (may be called from task threads) ----------------
    def report_progress(self, fraction: float, message: str | None) -> None:
        if message is not None:
            message = storable_text(message)
        self.run.progress = fraction
        self.run.progress_message = message
        self.runner.on_progress(self, {"progress": fraction, "progress_message": message})

    def report_log(self, level: str, message: str) -> None:
        line = LogLine(self.run.id, self.run.attempts, time.time(), level, message)
        self.runner.on_log(self, line)

    # invocation ---------------------------------------------------------------------------
    def new_context(self) -> Context:
        context = Context(
            run_id=self.run.id,
            task=self.task_name,
            attempt=self.token,
            timestamp=int(self.run.created_at * 1000),
            sink=self,
        )
        self.context = context
        return context

    def function_kwargs(self, context: Context, *, here: bool = True) -> dict[str, Any]:
        """The call's keyword arguments, its special parameters included. With `here`
        False, those of values only (config, timestamp), for a call made in another
        process, which supplies its own context and state."""
        task = self.task
        specials = task.specials
        if not specials.any:
            return self.call
        kwargs = dict(self.call)
        if specials.context and here:
            kwargs[specials.context] = context
        if specials.config:
            kwargs["config"] = self.config
        if specials.state and here:
            kwargs["state"] = self.runner.state_of(task)
        if specials.timestamp:
            kwargs["timestamp"] = context.timestamp
        return kwargs

    def sync_callable(self, context: Context) -> Callable[[], Any]:
        """A zero-argument call for a sync function task (in a thread or inline)."""
        assert isinstance(self.task, FunctionTask)
        fn = self.task.fn
        kwargs = self.function_kwargs(context)
        return lambda: fn(**kwargs)

    async def invoke_async(self, context: Context) -> Any:
        task = self.task
        if isinstance(task, ClassTask):
            return await self._invoke_class(task, context)
        if not isinstance(task, FunctionTask):  # command tasks and other kinds run themselves
            return await task.invoke(self.call, context, self.runner.engine)
        kwargs = self.function_kwargs(context)
        if task.is_async_generator:
            return [item async for item in task.fn(**kwargs)]
        return await task.fn(**kwargs)

    async def _invoke_class(self, task: ClassTask, context: Context) -> Any:
        instance = task.cls()
        instance.context = context
        self.instance = instance
        await maybe_await(instance.setup())
        try:
            inputs = self.call["inputs"]
            if task.is_async:
                result = await instance.execute(inputs)
            else:
                result = await asyncio.to_thread(instance.execute, inputs)
        finally:
            await maybe_await(instance.teardown())
        if isinstance(result, dict) and result.get("status") == "failed" and "error" in result:
            raise TaskReportedFailure(
                str(result["error"]), str(result.get("error_type") or "TaskFailed")
            )
        return result

    @property
    def has_custom_cancel(self) -> bool:
        return self.instance is not None and type(self.instance).cancel is not Task.cancel
