"""The API's routers, one module per part of the engine; `ROUTERS` lists them in order.

A new part of the engine (workflows, pipelines, packages) adds its module here.
"""

from __future__ import annotations

from fastapi import APIRouter

from . import (
    events,
    health,
    hooks,
    packages,
    pipelines,
    runs,
    schedules,
    services,
    stats,
    tasks,
    tokens,
    workers,
    workflows,
)

__all__ = ["ROUTERS"]

ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    tasks.router,
    runs.router,
    services.router,
    workers.router,
    stats.router,
    schedules.router,
    hooks.router,
    workflows.router,
    packages.router,
    pipelines.router,
    events.router,
    tokens.router,
)
