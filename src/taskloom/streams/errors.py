"""The exceptions of pipelines: a branch of `TaskloomError`."""

from __future__ import annotations

from collections.abc import Sequence

from ..exceptions import FieldError, InputValidationError, TaskloomError

__all__ = [
    "DeploymentNotFoundError",
    "PipelineError",
    "PortValidationError",
    "StageConfigError",
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
        super().__init__(stage, errors, what="config")
        self.pipeline = pipeline
        lines = [
            f"pipeline {pipeline!r}, stage {stage!r}: config {e.field!r}: {e.message}"
            for e in self.errors
        ]
        self.args = ("\n".join(lines),)


class PortValidationError(InputValidationError):
    """A value published on a topic does not fit the stage input it feeds."""

    def __init__(self, deployment: str, topic: str, stage: str, port: str, message: str) -> None:
        errors = [FieldError(port, message)]
        super().__init__(stage, errors, what="input")
        self.deployment = deployment
        self.topic = topic
        self.args = (
            f"deployment {deployment!r}, topic {topic!r}: stage {stage!r} input {port!r}: "
            f"{message}",
        )


class DeploymentNotFoundError(PipelineError, LookupError):
    """No deployment has this name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no deployment named {name!r}")
        self.name = name
