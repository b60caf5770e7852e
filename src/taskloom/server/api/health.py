"""`GET /api/health`: the server is up, and what it serves; `GET /api/ready`: it can
serve now.

Health is the liveness probe: 200 while the process answers, whatever its database does
(a restart would not mend a database). Ready is the readiness probe: a load balancer or
Kubernetes sends requests only while it is 200, and a 503 with `Retry-After` says why
not. Neither needs a token: probes carry none.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ... import __version__
from ...engine import Engine
from ...exceptions import StoreError
from ...http_errors import error_body
from ...store.migrate import HEAD_REVISION
from ..tokens import Caller
from .deps import EngineDep, Viewer, responses
from .models import CallerOut, HealthOut, ReadyOut

__all__ = ["READY_RETRY_AFTER", "READY_TIMEOUT", "router"]

logger = logging.getLogger("taskloom.server")

router = APIRouter(tags=["health"])

#: How long the readiness probe waits for the database, in seconds.
READY_TIMEOUT = 2.0
#: The `Retry-After` of a 503 from the readiness probe, in seconds.
READY_RETRY_AFTER = 5


@router.get("/health", response_model=HealthOut)
async def health(request: Request, engine: EngineDep) -> HealthOut:
    """Always open (no token needed): liveness, the version, and whether tokens are needed."""
    return HealthOut(
        status="ok",
        version=__version__,
        database=request.app.state.database,
        auth=request.app.state.auth.required,
        tasks=len(engine.registry),
        services=len(engine.supervisor.names),
    )


@router.get("/ready", response_model=ReadyOut, responses=responses(503))
async def ready(engine: EngineDep) -> ReadyOut | JSONResponse:
    """Always open (no token needed): readiness. 200 when the database answers, its
    schema is at the revision this taskloom needs and the engine runs; otherwise 503 with
    `Retry-After`, the error's `reason` one of `engine`, `database`, `schema`."""
    problem = await _not_ready(engine)
    if problem is None:
        return ReadyOut(status="ready", schema_revision=HEAD_REVISION)
    reason, message = problem
    return JSONResponse(
        error_body("NotReady", message, reason=reason),
        status_code=503,
        headers={"Retry-After": str(READY_RETRY_AFTER)},
    )


async def _not_ready(engine: Engine) -> tuple[str, str] | None:
    """What keeps the server from being ready (a reason and a message), or None."""
    if not engine.accepting or engine.store is None:
        return "engine", "the engine is not running: it is starting or shutting down"
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            revision = await engine.schema_revision()
    except TimeoutError:
        return "database", f"the database did not answer within {READY_TIMEOUT:g} s"
    except StoreError as exc:
        # The driver's message may name hosts and users: the log has it, not the probe.
        logger.warning("taskloom: not ready: %s", exc)
        return "database", "the database cannot be read now (the server's log says why)"
    if revision != HEAD_REVISION:
        return "schema", (
            f"the database's schema is at revision {revision or 'none'}, this taskloom "
            f"needs {HEAD_REVISION}: run `taskloom db upgrade` (a database a newer "
            "taskloom migrated needs that taskloom)"
        )
    return None


@router.get("/whoami", response_model=CallerOut, responses=responses(401))
async def whoami(caller: Annotated[Caller, Viewer]) -> CallerOut:
    """Who the caller is: the token's role, id and name (`admin` and no token when the
    server needs no token). The dashboard shows or hides controls by it."""
    return CallerOut(role=caller.role.value, token_id=caller.token_id, name=caller.name)
