"""The errors of schedules, delayed runs and triggers."""

from __future__ import annotations

from ..exceptions import TaskloomError

__all__ = ["HookNotFoundError", "ScheduleError", "ScheduleNotFoundError", "SignatureError"]


class ScheduleError(TaskloomError, ValueError):
    """A schedule, a due time or a trigger is invalid; `field` names the part at fault."""

    def __init__(self, message: str, *, field: str | None = None, name: str | None = None):
        super().__init__(message)
        self.field = field
        self.name = name


class ScheduleNotFoundError(TaskloomError, LookupError):
    """No schedule has this name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no schedule is named {name!r}")
        self.name = name


class HookNotFoundError(TaskloomError, LookupError):
    """No webhook has this name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no webhook is named {name!r}")
        self.name = name


class SignatureError(TaskloomError, PermissionError):
    """A webhook call's signature is missing or does not match its body."""
