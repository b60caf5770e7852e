"""What a supervisor knows about a service: its state, its starts and its last error."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from ..runs import ErrorInfo

__all__ = [
    "AttributeChange",
    "ExitReason",
    "ServiceAttributes",
    "ServiceStart",
    "ServiceState",
    "ServiceStatus",
]


class ServiceState(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"  # waiting out `restart_sec` before the next start
    FAILED = "failed"  # failed and not restarted again (no restart allowed)
    COMPLETED = "completed"  # the loop returned

    @property
    def active(self) -> bool:
        """Started and not yet ended: a start must wait for a stop."""
        return self in _ACTIVE


_ACTIVE = frozenset({ServiceState.STARTING, ServiceState.RUNNING, ServiceState.RESTARTING})


class ExitReason(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"
    LOST = "lost"  # its process ended while it ran (found so by the next supervisor)


@dataclass(slots=True, kw_only=True)
class ServiceStart:
    """One start of a service: when it began and ended, and why it ended."""

    number: int
    started_at: float
    restart: bool = False  # started by the restart policy rather than by a caller
    ended_at: float | None = None
    exit_reason: ExitReason | None = None
    error: ErrorInfo | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceStatus:
    """A snapshot of one service, as listeners, the CLI and the server see it.

    `starts` counts every start, restarts included; `restarts` counts those made by the
    restart policy. `stop_timed_out` is set when the last stop gave up waiting for the loop
    (it ignored the stop for longer than `stop_timeout`). `config` is the config it runs
    (or will start) with, in its JSON form; None for a service that takes none.
    """

    name: str
    state: ServiceState
    since: float
    starts: int
    restarts: int
    restart_times: tuple[float, ...]
    next_restart_at: float | None
    last_error: ErrorInfo | None
    stop_timed_out: bool
    history: tuple[ServiceStart, ...] = field(default=())
    config: Any = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceAttributes:
    """The live attributes of a service class, as its instance holds them now.

    `values` are the JSON forms; `schema` is a JSON Schema object with a property per
    attribute (its `default` the class's default); `updated` says, per attribute set since
    the class was first served, when (`at`) and by whom (`by`: `cli:<user>`,
    `token:<name> (<role>)`, `http`, `python`, or `service` for the class's own code); one
    still at its default is not there. `loops` names the class's loops.
    """

    service: str
    values: dict[str, Any]
    schema: dict[str, Any]
    updated: dict[str, dict[str, Any]]
    loops: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class AttributeChange:
    """New values of some attributes of a service class (JSON forms), when and by whom."""

    service: str
    values: dict[str, Any]
    changed_at: float
    changed_by: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
