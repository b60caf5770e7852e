"""Services: list, status (with recent starts and config), start, stop, restart, logs; the
live attributes of service classes: read, set (who set them is recorded), their changes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from pydantic import TypeAdapter

from ...engine import Engine
from ...services.instances import LoopService
from ...services.status import ServiceStatus
from ..encoding import jsonable
from ..tokens import Caller
from .deps import EngineDep, Operator, Viewer, responses
from .models import (
    AttributeChangesOut,
    ServiceAttributesOut,
    ServiceConfigIn,
    ServiceLogsOut,
    ServiceOut,
)

__all__ = ["router"]

router = APIRouter(prefix="/services", tags=["services"])

_NO_CONFIG = ServiceConfigIn()


def _config_schema(engine: Engine, name: str) -> dict[str, Any] | None:
    kind = engine.supervisor.definition(name).specials.config
    if kind is None:
        return None
    try:
        schema: dict[str, Any] = TypeAdapter(kind).json_schema()
    except Exception:  # a config type pydantic cannot describe still works, unshown
        return None
    return schema


def _out(engine: Engine, status: ServiceStatus) -> dict[str, Any]:
    data: dict[str, Any] = jsonable(status.as_dict())
    definition = engine.supervisor.definition(status.name)
    data["description"] = definition.description or ""
    data["config_schema"] = _config_schema(engine, status.name)
    data["instance"] = definition.owner.name if isinstance(definition, LoopService) else None
    return data


def changed_by(caller: Caller) -> str:
    """Who made a change over HTTP, as the store records it: the token's name and role,
    or `http` on a server that needs no token."""
    if caller.token_id is None:
        return "http"
    return f"token:{caller.name or caller.token_id} ({caller.role.value})"


@router.get(
    "", response_model=list[ServiceOut], dependencies=[Viewer], responses=responses(401, 403)
)
async def list_services(engine: EngineDep) -> list[dict[str, Any]]:
    """Every service this server supervises, by name."""
    return [_out(engine, s) for s in sorted(engine.service_statuses(), key=lambda s: s.name)]


@router.get(
    "/{name}", response_model=ServiceOut, dependencies=[Viewer], responses=responses(401, 403, 404)
)
async def service_status(name: str, engine: EngineDep) -> dict[str, Any]:
    """One service: state, counts, last error and its recent starts."""
    return _out(engine, engine.service_status(name))


@router.post(
    "/{name}/start",
    response_model=ServiceOut,
    dependencies=[Operator],
    responses=responses(401, 403, 404, 409, 422),
)
async def start_service(
    name: str, engine: EngineDep, body: Annotated[ServiceConfigIn, Body()] = _NO_CONFIG
) -> dict[str, Any]:
    """Start a service (409 `ServiceRunningError` when it is started already; 422 when the
    config is invalid, and nothing starts)."""
    return _out(engine, await engine.start_service(name, body.config))


@router.post(
    "/{name}/stop",
    response_model=ServiceOut,
    dependencies=[Operator],
    responses=responses(401, 403, 404),
)
async def stop_service(name: str, engine: EngineDep) -> dict[str, Any]:
    """Stop a service, waiting at most its `stop_timeout`."""
    return _out(engine, await engine.stop_service(name))


@router.post(
    "/{name}/restart",
    response_model=ServiceOut,
    dependencies=[Operator],
    responses=responses(401, 403, 404, 422),
)
async def restart_service(
    name: str, engine: EngineDep, body: Annotated[ServiceConfigIn, Body()] = _NO_CONFIG
) -> dict[str, Any]:
    """Stop (if started) and start again; a null config keeps the one it had."""
    return _out(engine, await engine.restart_service(name, body.config))


@router.get(
    "/{name}/logs",
    response_model=ServiceLogsOut,
    dependencies=[Viewer],
    responses=responses(401, 403, 404),
)
async def service_logs(
    name: str,
    engine: EngineDep,
    after_id: Annotated[int, Query(ge=0, le=2**53)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
) -> dict[str, Any]:
    """The service's log lines with an id above `after_id`, oldest first."""
    lines = await engine.service_logs(name, after_id=after_id, limit=limit)
    last = lines[-1].id if lines and lines[-1].id is not None else after_id
    return {"lines": [line.as_dict() for line in lines], "next_after_id": last}


@router.get(
    "/{name}/attributes",
    response_model=ServiceAttributesOut,
    dependencies=[Viewer],
    responses=responses(401, 403, 404),
)
async def service_attributes(name: str, engine: EngineDep) -> dict[str, Any]:
    """The live attributes of a service class (`name` is the class's, say
    `SensorService`): their values now, their JSON Schema, who last set each."""
    attributes: dict[str, Any] = jsonable(engine.service_attributes(name).as_dict())
    return attributes


@router.patch(
    "/{name}/attributes",
    response_model=ServiceAttributesOut,
    responses=responses(401, 403, 404, 422),
)
async def set_service_attributes(
    name: str,
    engine: EngineDep,
    caller: Annotated[Caller, Operator],
    values: Annotated[
        dict[str, Any],
        Body(
            description="New values by attribute name; the others keep theirs.",
            examples=[{"readout_frequency": 2.0}],
        ),
    ],
) -> dict[str, Any]:
    """Set attributes of a service class while its loops run: each loop sees a new value
    at its next read. 422 `AttributeValidationError`, naming each attribute at fault, when
    any is invalid or unknown, and none is set. The change is recorded with who made it
    (the token's name and role) before the answer."""
    attributes = await engine.set_service_attributes(name, values, by=changed_by(caller))
    answer: dict[str, Any] = jsonable(attributes.as_dict())
    return answer


@router.get(
    "/{name}/attributes/changes",
    response_model=AttributeChangesOut,
    dependencies=[Viewer],
    responses=responses(401, 403, 404),
)
async def service_attribute_changes(
    name: str,
    engine: EngineDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The last changes of a service class's attributes made from outside it (the CLI,
    the API, the clients, the dashboard), newest first, each with who made it."""
    changes = await engine.service_attribute_changes(name, limit=limit)
    return {"changes": [jsonable(change.as_dict()) for change in changes]}
