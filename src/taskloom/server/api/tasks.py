"""Tasks: the catalog, with each task's input and output JSON Schemas."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from .deps import EngineDep, Viewer, responses
from .models import TaskOut

__all__ = ["router"]

router = APIRouter(prefix="/tasks", tags=["tasks"], dependencies=[Viewer])


@router.get("", response_model=list[TaskOut], responses=responses(401, 403))
async def list_tasks(engine: EngineDep) -> list[dict[str, Any]]:
    """Every registered task, by name."""
    return [d.describe() for d in sorted(engine.registry, key=lambda d: d.name)]


@router.get("/{name}", response_model=TaskOut, responses=responses(401, 403, 404))
async def get_task(name: str, engine: EngineDep) -> dict[str, Any]:
    """One task (404 `UnknownTaskError` when no task has this name)."""
    return engine.task(name).describe()
