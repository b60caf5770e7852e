"""How errors become responses: one JSON shape, a status code per kind of taskloom error.

Every response for an error has the body
`{"error": {"type": "UnknownTaskError", "message": "..."}}`; a validation error adds
`"task"` and `"errors": [{"field": ..., "message": ...}]`. A taskloom error's status, body
and headers come from the table of `http_errors`, from which the Python client raises the
same exception again. Nothing a client sends may end in a 500: every taskloom error has a
4xx status there, and the request's own shape is checked by FastAPI (422).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from ..exceptions import TaskloomError
from ..http_errors import ERRORS, error_body

__all__ = [
    "RouteMethods",
    "error_body",
    "error_response",
    "install_error_handlers",
]

logger = logging.getLogger("taskloom.server")


def error_response(exc: TaskloomError) -> JSONResponse:
    """The answer for a taskloom error: its status, body and headers from `ERRORS`."""
    status = ERRORS.status(exc)
    if status >= 500:
        logger.warning("%s: %s", type(exc).__name__, exc)
    return JSONResponse(ERRORS.body(exc), status_code=status, headers=ERRORS.headers(exc))


async def _taskloom_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TaskloomError)
    return error_response(exc)


def _field_of(location: tuple[Any, ...] | list[Any]) -> str:
    # ("body", "inputs", "a") -> "inputs.a"; ("query", "limit") -> "limit"
    parts = [str(p) for p in location]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"}:
        parts = parts[1:]
    return ".".join(parts) or "body"


async def _request_invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"field": _field_of(e.get("loc", ())), "message": str(e.get("msg", "invalid"))}
        for e in exc.errors()
    ]
    lines = "; ".join(f"{e['field']!r}: {e['message']}" for e in errors)
    message = f"{request.method} {request.url.path}: invalid request: {lines}"
    return JSONResponse(
        error_body("RequestValidationError", message, task=None, what="request", errors=errors),
        status_code=422,
    )


#: The error `type` of the answers the HTTP layer gives by itself.
_HTTP_NAMES = {
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "BodyTooLarge",
    415: "UnsupportedMediaType",
}


class RouteMethods:
    """The methods each path of the API takes, for the `Allow` header of a 405.

    Each method of a path is a route of its own, and Starlette names only the first
    route's methods in `Allow`: the answer names those of every route of the path. The
    table is made from the routers themselves, whatever way FastAPI routes them."""

    def __init__(self, routers: Sequence[APIRouter], *, prefix: str) -> None:
        self._paths: list[tuple[re.Pattern[str], frozenset[str]]] = []
        for router in routers:
            for route in router.routes:
                if isinstance(route, APIRoute):
                    pattern, _format, _convertors = compile_path(prefix + route.path)
                    self._paths.append((pattern, frozenset(route.methods or ())))

    def allowed(self, path: str) -> list[str]:
        methods: set[str] = set()
        for pattern, route_methods in self._paths:
            if pattern.match(path):
                methods |= route_methods
        return sorted(methods)


def _allowed_methods(request: Request) -> list[str]:
    table: RouteMethods | None = getattr(request.app.state, "methods", None)
    return table.allowed(request.url.path) if table is not None else []


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(getattr(exc, "headers", None) or {})
    message = str(exc.detail)
    if exc.status_code == 405 and (allowed := _allowed_methods(request)):
        headers["Allow"] = ", ".join(allowed)
        message = f"{request.method} {request.url.path}: use {' or '.join(allowed)}"
    return JSONResponse(
        error_body(_HTTP_NAMES.get(exc.status_code, "HTTPError"), message),
        status_code=exc.status_code,
        headers=headers or None,
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # A bug of the server, never the client's doing: logged with its traceback, and
    # answered in the same shape as every other error.
    logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    message = f"the server failed: {type(exc).__name__}: {exc}"
    return JSONResponse(error_body("InternalServerError", message), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(TaskloomError, _taskloom_error)
    app.add_exception_handler(RequestValidationError, _request_invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
