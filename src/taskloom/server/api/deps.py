"""What the routers share: the engine and event hub of the app, and the role checks."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from ...engine import Engine
from ..auth import require
from ..events import EventHub
from ..tokens import Role
from .models import ErrorOut

__all__ = ["ERRORS", "Admin", "EngineDep", "HubDep", "Operator", "Viewer", "responses"]


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _hub(request: Request) -> EventHub:
    hub: EventHub = request.app.state.events
    return hub


EngineDep = Annotated[Engine, Depends(_engine)]
HubDep = Annotated[EventHub, Depends(_hub)]

#: Router-level dependencies: every route of a router needs at least this role.
Viewer = require(Role.VIEWER)
Operator = require(Role.OPERATOR)
Admin = require(Role.ADMIN)

ERRORS = {
    401: "no valid token",
    403: "the token's role does not allow this",
    404: "not found",
    408: "the wait timed out",
    409: "conflict with the current state",
    422: "invalid input, one entry per field",
    503: "the server is shutting down or its database is unavailable",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error responses a route may give."""
    return {code: {"model": ErrorOut, "description": ERRORS[code]} for code in codes}
