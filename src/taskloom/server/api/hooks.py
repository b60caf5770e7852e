"""Webhooks: `POST /api/hooks/{name}` starts a run of the hook's task with the JSON body as
its inputs, when the body is signed with the hook's secret.

The signature is the caller's credential: the route needs no token (a server with
tokens takes hook calls from services that hold none), and nothing is recorded for a
call whose signature is missing or wrong (401).
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request

from ...exceptions import FieldError, InputValidationError
from ...runs import new_run_id
from ...schedules.hooks import SIGNATURE_HEADER, check_signature, hook_key
from ..encoding import jsonable
from .deps import EngineDep, responses
from .models import RunOut

__all__ = ["router"]

router = APIRouter(prefix="/hooks", tags=["hooks"])


@router.post(
    "/{name}",
    status_code=201,
    response_model=RunOut,
    responses={
        **responses(404, 422),
        401: {"description": "the signature is missing or does not match the body"},
    },
    # The body is read as bytes (its signature is over them), so FastAPI does not see it.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "description": "The inputs of the hook's task.",
                        "additionalProperties": True,
                    }
                }
            },
        }
    },
)
async def call_hook(
    name: str,
    request: Request,
    engine: EngineDep,
    signature: Annotated[str | None, Header(alias=SIGNATURE_HEADER, max_length=200)] = None,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)
    ] = None,
) -> dict[str, Any]:
    """Start a run of the hook's task with the body (a JSON object) as its inputs.

    401 (`SignatureError`) when `X-Taskloom-Signature` is not `sha256=` and the
    HMAC-SHA256 of the body under the hook's secret; 422 naming the field for invalid
    inputs. A call with an `Idempotency-Key` already seen returns the run it started.
    """
    hook = await asyncio.to_thread(engine.hooks.get, name)
    body = await request.body()
    check_signature(hook.secret, body, signature)
    try:
        inputs = json.loads(body) if body.strip() else {}
    except ValueError:
        inputs = None
    if not isinstance(inputs, dict):
        raise InputValidationError(
            hook.task, [FieldError("body", "expected a JSON object of the task's inputs")]
        )
    key = hook_key(name, idempotency_key or new_run_id())
    run = await engine.submit(hook.task, inputs, idempotency_key=key)
    data: dict[str, Any] = jsonable(run.as_dict())
    return data
