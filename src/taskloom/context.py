"""`Context`: what a running task may know and do about its own run.

A task asks for it with a parameter named `context` (or annotated `taskloom.Context`).
Lines logged through `context.logger`, or through the standard `logging` module while the
run executes, are stored with the run.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from typing import Protocol

from .exceptions import TaskloomError

__all__ = ["Context", "RunCancelledError", "current_context"]


class RunSink(Protocol):
    """Where a context sends what the task reports (implemented by the engine)."""

    def report_progress(self, fraction: float, message: str | None) -> None: ...

    def report_log(self, level: str, message: str) -> None: ...


class RunCancelledError(TaskloomError):
    """The run was cancelled while the task was running (raised by `raise_if_cancelled`)."""


_current: contextvars.ContextVar[Context | None] = contextvars.ContextVar(
    "taskloom_context", default=None
)

# Loggers of tasks log at every level: what is stored is what the task chose to log,
# whatever the level of the root logger.
logging.getLogger("taskloom.tasks").setLevel(logging.DEBUG)


def current_context() -> Context | None:
    """The context of the run executing in this task or thread, if any."""
    return _current.get()


class Context:
    """The run a task is executing: ids, logger, progress and cancellation."""

    __slots__ = (
        "_cancelled",
        "_event",
        "_logger",
        "_sink",
        "attempt",
        "run_id",
        "task",
        "timestamp",
    )

    def __init__(
        self, *, run_id: str, task: str, attempt: int, timestamp: int, sink: RunSink
    ) -> None:
        self.run_id = run_id
        self.task = task
        self.attempt = attempt
        self.timestamp = timestamp
        self._sink = sink
        self._cancelled = False
        self._event: threading.Event | None = None  # made on demand: most runs never wait
        self._logger: logging.Logger | None = None

    def __repr__(self) -> str:
        return f"Context(run_id={self.run_id!r}, task={self.task!r}, attempt={self.attempt})"

    @property
    def logger(self) -> logging.Logger:
        """A logger whose lines are stored with the run (`taskloom.tasks.<task>`)."""
        if self._logger is None:
            self._logger = logging.getLogger(f"taskloom.tasks.{self.task}")
        return self._logger

    @property
    def cancelled(self) -> bool:
        """True once cancellation of this run was requested."""
        return self._cancelled

    def raise_if_cancelled(self) -> None:
        """For sync code in a thread: stop here if the run was cancelled."""
        if self._cancelled:
            raise RunCancelledError(f"run {self.run_id} of task {self.task!r} was cancelled")

    def wait_cancelled(self, timeout: float | None = None) -> bool:
        """Block (sync code only) up to `timeout` seconds; True if the run was cancelled."""
        event = self._event
        if event is None:
            with _event_lock:
                event = self._event
                if event is None:
                    event = self._event = threading.Event()
            if self._cancelled:  # set before the event existed
                event.set()
        return event.wait(timeout)

    async def sleep(self, seconds: float) -> None:
        """Sleep in an async task; a cancelled run is interrupted at once."""
        await asyncio.sleep(seconds)

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress as a fraction between 0 and 1, with an optional message."""
        fraction = min(max(float(fraction), 0.0), 1.0)
        self._sink.report_progress(fraction, message)

    def _cancel(self) -> None:
        """Called by the engine: mark the run cancelled and wake a waiting thread."""
        self._cancelled = True
        event = self._event
        if event is not None:
            event.set()


_event_lock = threading.Lock()


class _RunLogHandler(logging.Handler):
    """Stores the records logged while a run executes with that run."""

    def emit(self, record: logging.LogRecord) -> None:
        context = _current.get()
        if context is None:
            return
        try:
            message = record.getMessage()
            if record.exc_info:
                message = f"{message}\n{logging.Formatter().formatException(record.exc_info)}"
            context._sink.report_log(record.levelname, message)
        except Exception:
            self.handleError(record)


_handler = _RunLogHandler(level=logging.DEBUG)
_handler_users = 0
_handler_lock = threading.Lock()


def install_log_capture() -> None:
    """Attach the run log handler to the root logger (counted, for several engines)."""
    global _handler_users
    with _handler_lock:
        if _handler_users == 0:
            logging.getLogger().addHandler(_handler)
        _handler_users += 1


def uninstall_log_capture() -> None:
    global _handler_users
    with _handler_lock:
        _handler_users = max(_handler_users - 1, 0)
        if _handler_users == 0:
            logging.getLogger().removeHandler(_handler)


def set_current(context: Context | None) -> contextvars.Token[Context | None]:
    return _current.set(context)


def reset_current(token: contextvars.Token[Context | None]) -> None:
    _current.reset(token)
