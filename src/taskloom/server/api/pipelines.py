"""Pipelines and topics: deploy one given as data or by name, list, status, stop, publish, tail.

A pipeline comes as data or by the name of one the served files define, resolved among
the served tasks only (`taskloom.streams.requests`). Deployments made here run inside the
server process (`Engine.deploy`), on the in-process bus by default (or on a NATS bus
given by URL). Their status is live for those; a deployment run by another process is
read from the store and stopped by a stop request through it (`Engine.deployment_status`,
`Engine.stop_deployment`). Topics (publish, tail) are reachable for the deployments this
server runs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from ...engine import Engine
from ...streams import Deployment, Pipeline
from ...streams.errors import (
    PipelineError,
    StageConfigError,
    UnknownTopicError,
    WiringError,
)
from ...streams.queues import Backpressure
from ...streams.requests import pipeline_from_request
from ...streams.status import DeploymentStatus
from ..encoding import jsonable
from .deps import EngineDep, Operator, Viewer, responses

__all__ = ["router"]

router = APIRouter(prefix="/pipelines", tags=["pipelines"])

#: Seconds between two comment lines that keep an idle tail open.
PING_INTERVAL = 15
#: How many messages a tail keeps for a slow reader before it drops the oldest.
TAIL_QUEUE = 1000


def _served(request: Request) -> dict[str, Pipeline]:
    """The pipelines the served files define, deployable by name."""
    served: dict[str, Pipeline] | None = getattr(request.app.state, "pipelines", None)
    return served if served is not None else {}


# models -----------------------------------------------------------------------------------
class DeployIn(BaseModel):
    pipeline: dict[str, Any] | Annotated[str, Field(max_length=100_000)] = Field(
        description="The name of a served pipeline, or a pipeline in its data form "
        "(an object, or YAML/JSON text) whose stages name served tasks."
    )
    name: Annotated[str | None, Field(max_length=200)] = Field(
        default=None, description="The deployment's name (default: the pipeline's)."
    )
    bus: Annotated[str | None, Field(max_length=500)] = Field(
        default=None, description="memory:// (the default) or nats://host:port."
    )
    status_interval: float = Field(default=1.0, ge=0.05, le=3600)


class PublishIn(BaseModel):
    value: Any = Field(description="The message's value, checked against the inputs it feeds.")
    # 2**53: the largest integer every JSON reader holds exactly.
    timestamp: int | None = Field(default=None, ge=0, le=2**53, description="Milliseconds.")
    metadata: dict[str, Any] | None = None


class PublishedOut(BaseModel):
    deployment: str
    topic: str
    timestamp: int | None


class ErrorInfoOut(BaseModel):
    type: str
    message: str
    traceback: str | None = None


class StageOut(BaseModel):
    stage: str
    task: str
    state: str
    messages_in: int
    messages_out: int
    dropped: int
    errors: int
    restarts: int
    last_timestamp: int | None
    last_error: dict[str, Any] | None
    updated_at: float


class PartOut(BaseModel):
    part: str
    host: str
    pid: int
    stages: list[str]
    state: str = Field(description="running, stopped, or lost (not heard from in a while)")
    started_at: float
    stopped_at: float | None
    updated_at: float


class DeploymentOut(BaseModel):
    name: str
    pipeline: str
    state: str
    bus: str
    started_at: float
    stopped_at: float | None
    stop_requested: bool
    here: bool = Field(description="Whether this server runs it (its topics are reachable).")
    topics: dict[str, Any]
    stages: list[StageOut]
    parts: list[PartOut] = Field(
        description="The processes running it, each with its stages: stopped only once all are."
    )


class PipelineOut(BaseModel):
    name: str
    stages: list[dict[str, Any]]
    topics: dict[str, Any]


# status -----------------------------------------------------------------------------------
def _out(status: DeploymentStatus, *, here: bool) -> dict[str, Any]:
    data: dict[str, Any] = jsonable(status.as_dict())
    data["here"] = here
    return data


def _running(engine: Engine, name: str) -> Deployment:
    deployment = engine.deployment(name)
    if deployment is None:
        raise PipelineError(
            f"deployment {name!r} is not running in this server: its topics are reachable "
            "only from the process running it"
        )
    return deployment


def _check_topic(deployment: Deployment, topic: str) -> None:
    topics = deployment.pipeline.topics()
    if topic not in topics:
        raise UnknownTopicError(deployment.name, topic, sorted(topics))


# routes -----------------------------------------------------------------------------------
@router.get("/available", response_model=list[PipelineOut], dependencies=[Viewer])
async def available(request: Request) -> list[dict[str, Any]]:
    """The pipelines the served files define, deployable by name."""
    return [
        {
            "name": p.name,
            "stages": [
                {"name": s.name, "inputs": s.inputs, "outputs": s.outputs} for s in p.stages
            ],
            "topics": jsonable(p.topics()),
        }
        for p in _served(request).values()
    ]


@router.post(
    "",
    status_code=201,
    response_model=DeploymentOut,
    dependencies=[Operator],
    responses=responses(401, 403, 409, 422),
)
async def deploy(body: DeployIn, engine: EngineDep, request: Request) -> dict[str, Any]:
    """Deploy a pipeline in this server; returns its status once its stages run.

    422 `WiringError` (each problem names its stage) or `StageConfigError`; 409 while a
    deployment of the same name runs here.
    """
    # Off the loop: YAML text takes a while to read.
    pipeline = await asyncio.to_thread(
        pipeline_from_request, body.pipeline, registry=engine.registry, served=_served(request)
    )
    name = body.name or pipeline.name
    if engine.deployment(name) is not None:
        raise PipelineError(f"deployment {name!r} is running already; stop it first")
    try:
        deployment = await engine.deploy(
            pipeline, name=body.name, bus=body.bus, status_interval=body.status_interval
        )
    except (WiringError, StageConfigError):
        raise
    except (PipelineError, OSError) as exc:  # a bus that cannot be opened
        raise WiringError(pipeline.name, [f"bus {body.bus!r}: {exc}"]) from None
    return _out(deployment.status(), here=True)


@router.get("", response_model=list[DeploymentOut], dependencies=[Viewer])
async def deployments(engine: EngineDep) -> list[dict[str, Any]]:
    """Every deployment in the store, running or stopped, newest first."""
    return [
        _out(status, here=engine.deployment(status.name) is not None)
        for status in await engine.list_deployments()
    ]


@router.get(
    "/{name}",
    response_model=DeploymentOut,
    dependencies=[Viewer],
    responses=responses(401, 403, 404),
)
async def status(name: str, engine: EngineDep) -> dict[str, Any]:
    """A deployment and each stage: state, messages in and out, dropped, errors, restarts."""
    status = await engine.deployment_status(name)
    return _out(status, here=engine.deployment(name) is not None)


@router.post(
    "/{name}/stop",
    response_model=DeploymentOut,
    dependencies=[Operator],
    responses=responses(401, 403, 404),
)
async def stop(name: str, engine: EngineDep) -> dict[str, Any]:
    """Stop a deployment: this server's part at once, the parts other processes run by a
    stop request in the store (they act on it within their status interval). A stopped
    one is returned as it is."""
    return _out(await engine.stop_deployment(name), here=False)


@router.post(
    "/{name}/topics/{topic}",
    status_code=202,
    response_model=PublishedOut,
    dependencies=[Operator],
    responses=responses(401, 403, 404, 409, 422),
)
async def publish(name: str, topic: str, body: PublishIn, engine: EngineDep) -> dict[str, Any]:
    """Publish one message on a topic of a deployment this server runs; the value is
    checked against every stage input the topic feeds (422 naming the stage and input)."""
    deployment = _running(engine, name)
    _check_topic(deployment, topic)
    await deployment.publish(topic, body.value, timestamp=body.timestamp, metadata=body.metadata)
    return {"deployment": name, "topic": topic, "timestamp": body.timestamp}


@router.get(
    "/{name}/topics/{topic}/tail",
    response_class=EventSourceResponse,
    dependencies=[Viewer],
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "the topic's messages"},
        **responses(401, 403, 404, 409, 422),
    },
)
async def tail(
    name: str,
    topic: str,
    engine: EngineDep,
    queue: Annotated[int, Query(ge=1, le=100_000, description="Messages kept for you.")] = (
        TAIL_QUEUE
    ),
) -> EventSourceResponse:
    """Follow a topic's messages as Server-Sent Events (`message`: timestamp, value,
    metadata). A reader that falls behind loses the oldest messages; a `lagged` event
    says how many were dropped so far. The stream ends when the deployment stops."""
    deployment = _running(engine, name)
    _check_topic(deployment, topic)
    subscription = deployment.subscribe(topic, maxsize=queue, backpressure=Backpressure.DROP_OLDEST)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        reported = 0
        try:
            yield ServerSentEvent(comment="subscribed")
            async for message in subscription:
                if subscription.dropped != reported:
                    reported = subscription.dropped
                    yield ServerSentEvent(data=json.dumps({"dropped": reported}), event="lagged")
                data = {
                    "timestamp": message.timestamp,
                    "value": jsonable(message.value),
                    "metadata": message.metadata,
                }
                yield ServerSentEvent(data=json.dumps(data, separators=(",", ":")), event="message")
        finally:
            subscription.close()

    return EventSourceResponse(stream(), ping=PING_INTERVAL)
