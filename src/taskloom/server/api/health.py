"""`GET /api/health`: the server is up, and what it serves."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ... import __version__
from .deps import EngineDep
from .models import HealthOut

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
