"""The OpenAPI document, made to say what the server really answers.

FastAPI describes what each route declares. Some answers come from outside the routes,
and these are added here to every operation they can reach:

- 403 on every state-changing operation (a request from another site, see `guard.py`);
- 413, 415 and 422 on every operation with a body (too large, not JSON, not valid);
- 421 on every operation (a `Host` the server does not answer to);
- 401 and 403 on every operation that needs a token, when tokens are in force; when they
  are not, no operation declares a security scheme or a 401, but for a webhook call,
  whose signature is its credential whatever the server's tokens (401 without it);
- 503 (with `Retry-After` when the store cannot commit now) on every operation but
  health, which touches no store.

Every error response is described by the one error shape (`ErrorOut`), never by FastAPI's
own validation shape, which this server does not send. And each operation that creates
something links to the operations on what it created (`POST /api/runs` to
`GET /api/runs/{run_id}` and the rest), so clients and fuzzers know where its id goes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from .api.deps import ERRORS
from .guard import STATE_CHANGING

__all__ = ["SIGNED", "truthful_openapi"]

_ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}
_DESCRIPTIONS = {
    **ERRORS,
    403: "refused: a request sent by a page of another site, or a role that does not allow this",
    413: "the body is larger than the server's --max-body",
    415: "the body is not sent as Content-Type: application/json",
    421: "the Host header names no host this server answers to",
    422: "invalid input: a body that is not strict JSON, or fields that are not valid",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again (the store cannot commit now).",
        "schema": {"type": "integer", "minimum": 1},
    }
}
_NO_TOKEN = {"/api/health"}
#: Operations that need no token but a signature of their body: 401 without it, always.
SIGNED = {"/api/hooks/{name}"}


def _error(code: int) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "description": _DESCRIPTIONS[code],
        "content": {"application/json": {"schema": dict(_ERROR_REF)}},
    }
    if code == 503:
        entry["headers"] = dict(_RETRY_AFTER)
    return entry


def _complete(path: str, method: str, operation: dict[str, Any], *, auth: bool) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    wanted = {421}
    if method.upper() in STATE_CHANGING:
        wanted.add(403)
    if "requestBody" in operation:
        wanted |= {413, 415, 422}
    if path not in _NO_TOKEN:
        wanted.add(503)
    if auth and operation.get("security"):
        wanted |= {401, 403}
    if not auth:
        operation.pop("security", None)
        if path not in SIGNED:
            responses.pop("401", None)
    for wanted_code in sorted(wanted):
        responses.setdefault(str(wanted_code), _error(wanted_code))
    for code, response in responses.items():
        if code.startswith(("4", "5")):
            # FastAPI's own 422 shape (`HTTPValidationError`) is never sent: ours is.
            response["content"] = {"application/json": {"schema": dict(_ERROR_REF)}}
            if code == "503":
                response["headers"] = dict(_RETRY_AFTER)


def _link_created(document: dict[str, Any]) -> None:
    # `POST /api/runs` answers a run whose `id` is the `{run_id}` of `/api/runs/{run_id}...`;
    # a deployment's `name` is the `{name}` of `/api/pipelines/{name}...`.
    paths: dict[str, Any] = document.get("paths", {})
    schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})
    for path, item in paths.items():
        created = item.get("post", {}).get("responses", {}).get("201")
        if created is None:
            continue
        ref = created.get("content", {}).get("application/json", {}).get("schema", {})
        fields = schemas.get(str(ref.get("$ref", "")).rsplit("/", 1)[-1], {}).get("properties", {})
        links: dict[str, Any] = {}
        for target, target_item in paths.items():
            found = re.match(re.escape(path) + r"/\{(\w+)\}", target)
            if found is None:
                continue
            parameter = found.group(1)
            field = "id" if parameter.endswith("_id") else parameter
            if field not in fields:
                continue
            for operation in target_item.values():
                if isinstance(operation, dict) and "operationId" in operation:
                    links[operation["operationId"]] = {
                        "operationId": operation["operationId"],
                        "parameters": {parameter: f"$response.body#/{field}"},
                    }
        if links:
            created["links"] = links


def truthful_openapi(app: FastAPI, *, auth_required: bool) -> Callable[[], dict[str, Any]]:
    """A replacement for `app.openapi`: FastAPI's document, completed once."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        for path, item in document.get("paths", {}).items():
            for method, operation in item.items():
                if isinstance(operation, dict) and "responses" in operation:
                    _complete(path, method, operation, auth=auth_required)
        components = document.setdefault("components", {})
        schemas = components.get("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        if not auth_required:
            components.pop("securitySchemes", None)
        _link_created(document)
        app.openapi_schema = document
        return document

    return openapi
