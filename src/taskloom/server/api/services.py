"""Services: list, status (with recent starts), start, stop, restart, logs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from pydantic import TypeAdapter

from ...engine import Engine
from ...services.status import ServiceStatus
from ..encoding import jsonable
from .deps import EngineDep, Operator, Viewer, responses
from .models import ServiceConfigIn, ServiceLogsOut, ServiceOut

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
    return data


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
