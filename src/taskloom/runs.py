"""Runs, their attempts, errors and log lines: the records the store keeps."""

from __future__ import annotations

import os
import random
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "Attempt",
    "ErrorInfo",
    "LogLine",
    "Run",
    "RunEventKind",
    "RunStatus",
    "new_run_id",
    "storable_text",
]


class RunEventKind(StrEnum):
    """What happened to a run, as the engine's listeners hear it (`RunEvent.kind`)."""

    SUBMITTED = "submitted"
    STARTED = "started"
    PROGRESS = "progress"
    LOG = "log"  # a line it logged (`RunEvent.line`)
    RETRYING = "retrying"  # an attempt failed; the next one is due
    FINISHED = "finished"


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset(
    {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.SKIPPED}
)
TERMINAL_STATUSES: frozenset[str] = frozenset(s.value for s in _TERMINAL)


# Seeded from the OS once per process: os.urandom per id costs a system call each time,
# which is most of the cost of an id on some machines.
_random = random.Random(os.urandom(16))


_RAND_BITS = 74  # 12 bits of rand_a and 62 of rand_b
_last = [0, 0]  # the millisecond and the random bits of the last id made in this process
_id_lock = threading.Lock()


def _after_fork() -> None:  # a child must not count on from its parent's last id
    _random.seed(os.urandom(16))
    _last[0] = _last[1] = 0


os.register_at_fork(after_in_child=_after_fork)


def new_run_id() -> str:
    """A UUIDv7 string: unique, and sorted by creation time.

    Ids made in one process within one millisecond count up from a random start (RFC 9562's
    monotonic random), so they sort in the order they were made.
    """
    now = time.time_ns() // 1_000_000
    with _id_lock:
        ms, rand = _last
        if now > ms:
            ms, rand = now, _random.getrandbits(_RAND_BITS - 1)  # top bit free to count up
        else:
            rand += 1
            if rand >> _RAND_BITS:  # counted through the millisecond: borrow the next one
                ms, rand = ms + 1, _random.getrandbits(_RAND_BITS - 1)
        _last[0], _last[1] = ms, rand
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62)
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def storable_text(text: str) -> str:
    """`text` as every store can keep it, written the same in memory and in the database.

    A lone surrogate (a Python `str` can hold one; UTF-8 cannot encode it) becomes its
    backslash escape (`\\ud800`), and so does NUL (`\\x00`; PostgreSQL text cannot hold it).
    Other text comes back as it is, the same object.
    """
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


@dataclass(slots=True)
class ErrorInfo:
    """Why an attempt or a run failed. Its text is kept storable (see `storable_text`)."""

    type: str
    message: str
    traceback: str | None = None
    retryable: bool = False

    def __post_init__(self) -> None:
        self.type = storable_text(self.type)
        self.message = storable_text(self.message)
        if self.traceback is not None:
            self.traceback = storable_text(self.traceback)

    @classmethod
    def from_exception(cls, exc: BaseException, *, retryable: bool = False) -> ErrorInfo:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cls(type=type(exc).__name__, message=str(exc), traceback=tb, retryable=retryable)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ErrorInfo:
        return cls(
            type=str(data.get("type", "Error")),
            message=str(data.get("message", "")),
            traceback=data.get("traceback"),
            retryable=bool(data.get("retryable", False)),
        )


@dataclass(slots=True)
class Run:
    """One execution of a task with given inputs.

    `attempts` is how many attempts have been made so far. Times are seconds since the
    epoch (UTC). `queue` is the queue its workers take it from; `worker_id` the worker that
    holds it (None: unclaimed, any live worker serving its task and queue may take it);
    `lease` counts its claims, and every write its holder makes is conditional on it.
    `trace_context` is the W3C trace context (`traceparent`, `tracestate`) of the span
    that submitted it, when tracing is on: its attempts' spans are that span's children.
    """

    id: str
    task: str
    inputs: dict[str, Any]
    status: RunStatus = RunStatus.PENDING
    priority: int = 0
    result: Any = None
    error: ErrorInfo | None = None
    attempts: int = 0
    max_attempts: int = 1
    parent_id: str | None = None
    idempotency_key: str | None = None
    worker_id: str | None = None
    created_at: float = 0.0
    scheduled_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    progress: float | None = None
    progress_message: str | None = None
    cancel_requested: bool = False
    config: dict[str, Any] | None = None
    queue: str = "default"
    lease: int = 0
    trace_context: dict[str, str] | None = None

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def copy(self) -> Run:
        """A shallow copy, field by field (a tenth of what a loop over the fields costs,
        and of `dataclasses.replace`: every submit returns one; a unit test holds it to
        every field)."""
        new = _new_run(Run)
        new.id = self.id
        new.task = self.task
        new.inputs = self.inputs
        new.status = self.status
        new.priority = self.priority
        new.result = self.result
        new.error = self.error
        new.attempts = self.attempts
        new.max_attempts = self.max_attempts
        new.parent_id = self.parent_id
        new.idempotency_key = self.idempotency_key
        new.worker_id = self.worker_id
        new.created_at = self.created_at
        new.scheduled_at = self.scheduled_at
        new.started_at = self.started_at
        new.finished_at = self.finished_at
        new.progress = self.progress
        new.progress_message = self.progress_message
        new.cancel_requested = self.cancel_requested
        new.config = self.config
        new.queue = self.queue
        new.lease = self.lease
        new.trace_context = self.trace_context
        return new

    def as_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in RUN_FIELDS}
        data["status"] = self.status.value
        data["error"] = self.error.as_dict() if self.error else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Run:
        """The run `as_dict` (then JSON) gave."""
        error = data.get("error")
        return cls(
            **{
                **data,
                "status": RunStatus(data["status"]),
                "error": ErrorInfo.from_dict(error) if error else None,
            }
        )


RUN_FIELDS: tuple[str, ...] = tuple(Run.__dataclass_fields__)
_new_run = object.__new__


@dataclass(slots=True)
class Attempt:
    """One try inside a run. `status` is `running`, `completed`, `failed` or `cancelled`.

    `worker_id` is the engine that executed it; `executor` what made its call: the name
    of a built-in executor (`loop`, `inline`, `thread`, `serial`) or `dask <scheduler
    address>`; `dashboard` the Dask dashboard's address, when the scheduler serves one.
    Attempts an older taskloom recorded have neither."""

    run_id: str
    number: int
    started_at: float
    finished_at: float | None = None
    status: str = "running"
    error: ErrorInfo | None = None
    worker_id: str | None = None
    executor: str | None = None
    dashboard: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["error"] = self.error.as_dict() if self.error else None
        return data


@dataclass(slots=True)
class LogLine:
    """A line a run logged, through `context.logger` or the standard `logging` module.

    Characters no store can keep are escaped (see `storable_text`)."""

    run_id: str
    attempt: int
    created_at: float
    level: str
    message: str
    id: int | None = field(default=None)

    def __post_init__(self) -> None:
        self.message = storable_text(self.message)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
