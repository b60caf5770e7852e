"""`GET /api/health`: the server is up, and what it serves."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request

from ... import __version__
from ..tokens import Caller
from .deps import EngineDep, Viewer, responses
from .models import CallerOut, HealthOut

__all__ = ["router"]

router = APIRouter(tags=["health"])


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


@router.get("/whoami", response_model=CallerOut, responses=responses(401))
async def whoami(caller: Annotated[Caller, Viewer]) -> CallerOut:
    """Who the caller is: the token's role, id and name (`admin` and no token when the
    server needs no token). The dashboard shows or hides controls by it."""
    return CallerOut(role=caller.role.value, token_id=caller.token_id, name=caller.name)
