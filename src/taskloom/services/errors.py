"""The exceptions of services: a branch of `TaskloomError`."""

from __future__ import annotations

from collections.abc import Sequence

from ..exceptions import TaskloomError

__all__ = ["ServiceError", "ServiceRunningError", "UnknownServiceError"]


class ServiceError(TaskloomError):
    """A service operation failed."""


class UnknownServiceError(ServiceError, LookupError):
    """No service is registered under this name."""

    def __init__(self, name: str, known: Sequence[str] = ()) -> None:
        hint = f"; registered services: {', '.join(sorted(known))}" if known else ""
        super().__init__(f"unknown service {name!r}{hint}")
        self.name = name


class ServiceRunningError(ServiceError, RuntimeError):
    """The service is already started: stop it first, or use `restart`."""
