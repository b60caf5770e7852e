"""Pipelines and topics: deploy one given as data or by name, list, status, stop, publish, tail.

A pipeline comes in the data form `taskloom pipeline deploy FILE.yaml` reads (a JSON
object, or the YAML or JSON text of a file), or as the name of a `taskloom.Pipeline`
defined at module level in the served files. The server runs only the tasks it serves: a
stage's `task` must be a served task, by its name, by its `module:attr` reference, or as
`file.py:attr` where the file is a served module; anything else is refused (422, naming
the stage) and never imported.

Deployments made here run inside the server process, on the in-process bus by default
(or on a NATS bus given by URL). Their status is live for those; a deployment run by
another process is read from the store and stopped by a stop request through it. Topics
(publish, tail) are reachable for the deployments this server runs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from ...documents import DocumentLimitError, check_depth, load_yaml
from ...engine import Engine
from ...streams import Deployment, Pipeline
from ...streams.deployment import request_stop
from ...streams.errors import (
    DeploymentNotFoundError,
    PipelineError,
    StageConfigError,
    UnknownTopicError,
    WiringError,
)
from ...streams.pipeline import _STAGE_KEYS, keep_topics
from ...streams.queues import Backpressure
from ...streams.status import DeploymentState, DeploymentStatus
from ...tasks.definition import TaskDefinition
from ...workflows.model import task_reference
from ..encoding import jsonable
from .deps import EngineDep, Operator, Viewer, responses

__all__ = ["DeploymentsHere", "router"]

router = APIRouter(prefix="/pipelines", tags=["pipelines"])

#: Seconds between two comment lines that keep an idle tail open.
PING_INTERVAL = 15
#: How many messages a tail keeps for a slow reader before it drops the oldest.
TAIL_QUEUE = 1000


class DeploymentsHere:
    """The pipelines the served files define, and the deployments this server runs."""

    def __init__(self, pipelines: list[Pipeline] | None = None) -> None:
        self.pipelines = {p.name: p for p in pipelines or []}
        self.running: dict[str, Deployment] = {}

    def add(self, deployment: Deployment) -> None:
        self.running[deployment.name] = deployment
        deployment.add_stop_callback(self._stopped)

    def _stopped(self, deployment: Deployment) -> None:
        if self.running.get(deployment.name) is deployment:
            del self.running[deployment.name]


def _here(request: Request) -> DeploymentsHere:
    here: DeploymentsHere | None = getattr(request.app.state, "pipelines", None)
    if here is None:
        here = request.app.state.pipelines = DeploymentsHere()
    return here


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


# parsing ----------------------------------------------------------------------------------
def _served_task(engine: Engine, reference: str) -> TaskDefinition | None:
    found = engine.registry.find(reference)
    if found is not None:
        return found
    module_part, _, attr = reference.partition(":")
    for definition in engine.registry:
        if task_reference(definition) == reference:
            return definition
        module = definition.module or ""
        if (
            module_part.endswith(".py")
            and attr == definition.qualname
            and Path(module_part).stem == module.rpartition(".")[2]
        ):
            return definition
    return None


def _from_data(engine: Engine, data: Any) -> Pipeline:
    """A pipeline from its data form, with stages resolved among the served tasks only."""
    if not isinstance(data, Mapping) or "name" not in data:
        raise WiringError("pipeline", ["give a `name` and a list of `stages`"])
    pipeline = Pipeline(str(data["name"]))
    stages = data.get("stages")
    if not isinstance(stages, list) or not stages:
        raise WiringError(pipeline.name, ["`stages` must be a non-empty list"])
    problems: list[str] = []
    try:
        keep_topics(pipeline, data.get("keep"))
    except WiringError as exc:
        problems.extend(exc.problems)
    for index, entry in enumerate(stages):
        where = f"stages[{index}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("task"), str):
            problems.append(f"{where}: needs `task`, the name of a served task")
            continue
        unknown = sorted(str(k) for k in set(entry) - _STAGE_KEYS)
        if unknown:
            problems.append(f"{where}: unknown key(s) {', '.join(unknown)}")
            continue
        task = _served_task(engine, entry["task"])
        if task is None:
            served = ", ".join(sorted(engine.registry.names)) or "none"
            problems.append(
                f"{where}: unknown task {entry['task']!r}: this server runs only the tasks "
                f"it serves ({served})"
            )
            continue
        options = {str(k): v for k, v in entry.items() if k != "task"}
        try:
            pipeline.stage(task, **options)
        except WiringError as exc:
            problems.extend(f"{where}: {p}" for p in exc.problems)
        except TypeError as exc:  # a wrongly typed option (a list for `name`, ...)
            problems.append(f"{where}: {exc}")
    if problems:
        raise WiringError(pipeline.name, problems)
    return pipeline


def _pipeline_of(engine: Engine, here: DeploymentsHere, given: dict[str, Any] | str) -> Pipeline:
    """The pipeline a request names or gives (YAML text: read without aliases and no
    deeper than 64 levels; any data form: no deeper than 64 levels, 422 otherwise)."""
    data: Any = given
    if isinstance(given, str):
        if given in here.pipelines:
            return here.pipelines[given]
        try:
            data = load_yaml(given)
        except (DocumentLimitError, yaml.YAMLError) as exc:
            raise WiringError("pipeline", [f"cannot parse the text: {exc}"]) from None
        if isinstance(data, str):
            known = ", ".join(sorted(here.pipelines)) or "none"
            raise WiringError("pipeline", [f"no served pipeline named {given!r} (served: {known})"])
    try:
        check_depth(data)
    except DocumentLimitError as exc:
        raise WiringError("pipeline", [f"{exc}; flatten the data"]) from None
    return _from_data(engine, data)


# status -----------------------------------------------------------------------------------
def _out(status: DeploymentStatus, *, here: bool) -> dict[str, Any]:
    data: dict[str, Any] = jsonable(status.as_dict())
    data["here"] = here
    return data


async def _status(engine: Engine, here: DeploymentsHere, name: str) -> dict[str, Any]:
    running = here.running.get(name)
    if running is not None:
        status = running.status()
        saved = await engine.deployment_status(name)
        status.stop_requested = saved.stop_requested
        # This server's part live, the other processes' as they saved them.
        mine = {p.part for p in status.parts}
        status.parts += [p for p in saved.parts if p.part not in mine]
        stages = {s.stage for s in status.stages}
        status.stages += [s for s in saved.stages if s.stage not in stages]
        return _out(status, here=True)
    return _out(await engine.deployment_status(name), here=False)


def _running(here: DeploymentsHere, name: str, engine: Engine) -> Deployment:
    deployment = here.running.get(name)
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
        for p in _here(request).pipelines.values()
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
    here = _here(request)
    # Off the loop: YAML text takes a while to read.
    pipeline = await asyncio.to_thread(_pipeline_of, engine, here, body.pipeline)
    name = body.name or pipeline.name
    if name in here.running:
        raise PipelineError(f"deployment {name!r} is running already; stop it first")
    try:
        deployment = await engine.deploy(
            pipeline, name=body.name, bus=body.bus, status_interval=body.status_interval
        )
    except (WiringError, StageConfigError):
        raise
    except (PipelineError, OSError) as exc:  # a bus that cannot be opened
        raise WiringError(pipeline.name, [f"bus {body.bus!r}: {exc}"]) from None
    here.add(deployment)
    return _out(deployment.status(), here=True)


@router.get("", response_model=list[DeploymentOut], dependencies=[Viewer])
async def deployments(engine: EngineDep, request: Request) -> list[dict[str, Any]]:
    """Every deployment in the store, running or stopped, newest first."""
    here = _here(request)
    assert engine.store is not None
    records = await asyncio.to_thread(engine.store.list_deployments)
    found = []
    for record in records:
        try:
            found.append(await _status(engine, here, record.name))
        except DeploymentNotFoundError:  # removed in between
            continue
    return found


@router.get(
    "/{name}",
    response_model=DeploymentOut,
    dependencies=[Viewer],
    responses=responses(401, 403, 404),
)
async def status(name: str, engine: EngineDep, request: Request) -> dict[str, Any]:
    """A deployment and each stage: state, messages in and out, dropped, errors, restarts."""
    return await _status(engine, _here(request), name)


@router.post(
    "/{name}/stop",
    response_model=DeploymentOut,
    dependencies=[Operator],
    responses=responses(401, 403, 404),
)
async def stop(name: str, engine: EngineDep, request: Request) -> dict[str, Any]:
    """Stop a deployment: this server's part at once, the parts other processes run by a
    stop request in the store (they act on it within their status interval). A stopped
    one is returned as it is."""
    here = _here(request)
    running = here.running.get(name)
    if running is not None:
        await running.stop()
    assert engine.store is not None
    saved = await engine.deployment_status(name)
    if saved.state is not DeploymentState.STOPPED:
        saved = await asyncio.to_thread(request_stop, engine.store, name)
    return _out(saved, here=False)


@router.post(
    "/{name}/topics/{topic}",
    status_code=202,
    response_model=PublishedOut,
    dependencies=[Operator],
    responses=responses(401, 403, 404, 409, 422),
)
async def publish(
    name: str, topic: str, body: PublishIn, engine: EngineDep, request: Request
) -> dict[str, Any]:
    """Publish one message on a topic of a deployment this server runs; the value is
    checked against every stage input the topic feeds (422 naming the stage and input)."""
    deployment = _running(_here(request), name, engine)
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
    request: Request,
    queue: Annotated[int, Query(ge=1, le=100_000, description="Messages kept for you.")] = (
        TAIL_QUEUE
    ),
) -> EventSourceResponse:
    """Follow a topic's messages as Server-Sent Events (`message`: timestamp, value,
    metadata). A reader that falls behind loses the oldest messages; a `lagged` event
    says how many were dropped so far. The stream ends when the deployment stops."""
    deployment = _running(_here(request), name, engine)
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
