"""The exceptions of pipelines: a branch of `TaskloomError`."""

from __future__ import annotations

from collections.abc import Sequence

from ..exceptions import FieldError, InputValidationError, TaskloomError

__all__ = [
    "DeploymentNotFoundError",
    "PipelineError",
    "PortValidationError",
    "StageConfigError",
    "UnknownTopicError",
    "WiringError",
]


class PipelineError(TaskloomError):
    """A pipeline operation failed."""


class WiringError(PipelineError, ValueError):
    """The pipeline is wired wrongly; nothing was deployed."""

    def __init__(self, pipeline: str, problems: Sequence[str]) -> None:
        self.pipeline = pipeline
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"pipeline {pipeline!r} is mis-wired, nothing was deployed:\n{lines}")


class StageConfigError(InputValidationError):
    """The config of a stage is invalid."""

    def __init__(self, pipeline: str, stage: str, errors: Sequence[FieldError]) -> None:
        self.pipeline = pipeline
        super().__init__(stage, errors, what="config")

    def _describe(self) -> str:
        return "\n".join(
            f"pipeline {self.pipeline!r}, stage {self.task!r}: config {e.field!r}: {e.message}"
            for e in self.errors
        )


class PortValidationError(InputValidationError):
    """A value published on a topic does not fit the stage input it feeds."""

    def __init__(self, deployment: str, topic: str, stage: str, port: str, message: str) -> None:
        self.deployment = deployment
        self.topic = topic
        super().__init__(stage, [FieldError(port, message)], what="input")

    def _describe(self) -> str:
        error = self.errors[0]
        return (
            f"deployment {self.deployment!r}, topic {self.topic!r}: stage {self.task!r} "
            f"input {error.field!r}: {error.message}"
        )


class DeploymentNotFoundError(PipelineError, LookupError):
    """No deployment has this name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no deployment named {name!r}")
        self.name = name


class UnknownTopicError(PipelineError, LookupError):
    """A deployment has no topic of this name."""

    def __init__(self, deployment: str, topic: str, known: Sequence[str]) -> None:
        listed = ", ".join(known) or "none"
        super().__init__(f"deployment {deployment!r} has no topic {topic!r} (topics: {listed})")
