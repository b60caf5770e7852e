"""Streams: the same task functions as live pipeline stages, in-process or over NATS.

`Pipeline` wires stages by topics; `deploy()` (or `Engine.deploy`) runs them; the buses
carry `Message`s through bounded `Subscription`s.
"""

from __future__ import annotations

from .buses import Bus, MemoryBus, open_bus
from .deployment import Deployment, deploy, deployment_status, request_stop
from .errors import (
    DeploymentNotFoundError,
    PipelineError,
    PortValidationError,
    StageConfigError,
    UnknownTopicError,
    WiringError,
)
from .messages import Message, now_ms
from .pipeline import Pipeline, load_pipeline
from .queues import Backpressure, Subscription, SubscriptionClosed
from .runner import StageIO
from .stages import StageSpec, StreamStage
from .status import DeploymentState, DeploymentStatus, StageState, StageStatus

__all__ = [
    "Backpressure",
    "Bus",
    "Deployment",
    "DeploymentNotFoundError",
    "DeploymentState",
    "DeploymentStatus",
    "MemoryBus",
    "Message",
    "Pipeline",
    "PipelineError",
    "PortValidationError",
    "StageConfigError",
    "StageIO",
    "StageSpec",
    "StageState",
    "StageStatus",
    "StreamStage",
    "Subscription",
    "SubscriptionClosed",
    "UnknownTopicError",
    "WiringError",
    "deploy",
    "deployment_status",
    "load_pipeline",
    "now_ms",
    "open_bus",
    "request_stop",
]
