"""API tokens (admins only): list, create (the secret is shown once), revoke."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Request, Response

from ...store import ApiTokenRecord
from ..auth import AuthPolicy
from ..revocation import TokenStreams
from .deps import Admin, responses
from .models import TokenCreatedOut, TokenCreateIn, TokenOut

__all__ = ["router"]

router = APIRouter(prefix="/tokens", tags=["tokens"], dependencies=[Admin])


def _policy(request: Request) -> AuthPolicy:
    policy: AuthPolicy = request.app.state.auth
    return policy


def _out(record: ApiTokenRecord) -> dict[str, Any]:
    data = dataclasses.asdict(record)
    del data["token_hash"]
    return data


@router.get("", response_model=list[TokenOut], responses=responses(401, 403))
async def list_tokens(request: Request) -> list[dict[str, Any]]:
    """Every token, revoked ones included (never their secrets)."""
    return [_out(t) for t in await _policy(request).list_tokens()]


@router.post(
    "", status_code=201, response_model=TokenCreatedOut, responses=responses(401, 403, 422)
)
async def create(body: TokenCreateIn, request: Request) -> dict[str, Any]:
    """Make a token; its secret is in this response only."""
    secret, record = await _policy(request).create_token(body.role, body.name)
    return {**_out(record), "token": secret}


@router.delete("/{token_id}", status_code=204, responses=responses(401, 403, 404))
async def revoke(token_id: str, request: Request) -> Response:
    """Revoke a token: requests with it get 401 from now on, and the event streams open
    with it end."""
    await _policy(request).revoke_token(token_id)
    streams: TokenStreams | None = request.app.state.token_streams
    if streams is not None:
        streams.check_now()
    return Response(status_code=204)
