"""The exceptions of services: a branch of `TaskloomError`."""

from __future__ import annotations

from collections.abc import Sequence

from ..exceptions import FieldError, InputValidationError, TaskloomError

__all__ = [
    "AttributeValidationError",
    "ServiceError",
    "ServiceRunningError",
    "UnknownServiceError",
]


class ServiceError(TaskloomError):
    """A service operation failed."""


class UnknownServiceError(ServiceError, LookupError):
    """No service is registered under this name."""

    def __init__(
        self, name: str, known: Sequence[str] = (), *, what: str = "service", hint: str = ""
    ) -> None:
        listed = f"; registered services: {', '.join(sorted(known))}" if known else ""
        super().__init__(f"unknown {what} {name!r}{hint or listed}")
        self.name = name


class ServiceRunningError(ServiceError, RuntimeError):
    """The service is already started: stop it first, or use `restart`."""


class AttributeValidationError(InputValidationError):
    """New values of a service class's attributes are invalid: none of them was set.

    One `FieldError` per attribute at fault, named by the attribute (a nested part as
    `attribute.part`); `service` is the class's name.
    """

    def __init__(self, service: str, errors: Sequence[FieldError]) -> None:
        super().__init__(service, errors, what="attribute")

    @property
    def service(self) -> str:
        return self.task

    def _describe(self) -> str:
        lines = [f"service {self.task!r}: attribute {e.field!r}: {e.message}" for e in self.errors]
        return "\n".join(lines) or f"service {self.task!r}: invalid attributes"
