"""Workers: the engines' processes recorded on the database, alive or lost."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter

from ...store import WorkerRecord
from .deps import EngineDep, Viewer, responses
from .models import WorkerOut

__all__ = ["router", "worker_out"]

router = APIRouter(prefix="/workers", tags=["workers"])


def worker_out(worker: WorkerRecord) -> dict[str, Any]:
    """A worker as the API answers it: its record, and its `state` (`alive` or `lost`)."""
    return {**dataclasses.asdict(worker), "state": worker.state}


@router.get(
    "", response_model=list[WorkerOut], dependencies=[Viewer], responses=responses(401, 403)
)
async def list_workers(engine: EngineDep) -> list[dict[str, Any]]:
    """Every worker recorded on the database, this server's own and other processes',
    oldest first: `alive` while its process holds its lock, `lost` once it is gone
    (kept while it holds runs, and pruned a while after its last heartbeat)."""
    return [worker_out(worker) for worker in await engine.list_workers()]
