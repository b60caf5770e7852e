"""JSON request bodies, read the same way whatever the FastAPI version.

Every route of the API that takes a body takes JSON, and the request must say so: a body
sent under `/api` with another `Content-Type`, or with none, gets 415. That is what keeps a
page of another site from posting a form or a `text/plain` "simple request" that the server
would read as JSON (older FastAPI parses a body with no `Content-Type` as JSON).

The JSON must be strict: UTF-8, and no `NaN` or `Infinity` (Python's parser takes them,
JSON has no such numbers, and they would come back as `null`); anything else that does not
parse gets 422, like any other invalid request.

The check is middleware in front of every route, so it holds for the routes of every
router and does not lean on how FastAPI routes; the route's own parsing then reads the
bytes it is handed as usual. (Parsing twice costs microseconds for the bodies the API takes.)
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .api.workflows import refuse_oversized
from .errors import error_body

__all__ = ["JsonBodies", "is_json_media_type", "parse_strict"]


def is_json_media_type(content_type: str) -> bool:
    """`application/json`, or `application/<anything>+json`, with any parameters."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number: send a finite number, or null")


def parse_strict(body: bytes) -> Any:
    """The JSON value of `body`; `ValueError` saying what is wrong when it is not strict
    JSON."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"the body is not UTF-8 (byte {exc.start}): JSON must be UTF-8") from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"the body is not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise ValueError("the body is nested too deeply to be read") from None


class JsonBodies:
    """ASGI middleware: a body sent under `/api` is read whole (the request guard bounds
    it), checked, then handed to the app as the same bytes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or not (path == "/api" or path.startswith("/api/")):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body:
            refusal = _refusal(scope, body)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        handed = False

        async def replay() -> Message:
            nonlocal handed
            if not handed:
                handed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)


def _refusal(scope: Scope, body: bytes) -> Response | None:
    content_type = Headers(scope=scope).get("content-type")
    where = f"{scope['method']} {scope['path']}"
    if content_type is None or not is_json_media_type(content_type):
        sent = repr(content_type) if content_type is not None else "none"
        message = (
            f"{where}: the body must be JSON sent with Content-Type: application/json "
            f"(it came with {sent})"
        )
        return JSONResponse(error_body("UnsupportedMediaType", message), status_code=415)
    # A workflow with far more steps than allowed is refused by a count that stops at the
    # limit, before the full parse below builds every step of it in memory.
    oversized = refuse_oversized(scope, body)
    if oversized is not None:
        return oversized
    try:
        parse_strict(body)
    except ValueError as exc:
        problem = str(exc)
        return JSONResponse(
            error_body(
                "RequestValidationError",
                f"{where}: invalid request: 'body': {problem}",
                task=None,
                what="request",
                errors=[{"field": "body", "message": problem}],
            ),
            status_code=422,
        )
    return None
