"""Who may call the API: the check each request passes.

Tokens are required when the server is bound to an address other than loopback (it refuses
to start without a valid token), or when the store holds a valid token; a server on
loopback with no token in its store lets every local caller in as admin. A token comes in
`Authorization: Bearer <token>` and nowhere else: never in a URL, where it would be kept in
access logs, browser history and proxies (the dashboard reads its event stream with
`fetch`, which sends the header).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..store import ApiTokenRecord, TokenStore
from .tokens import (
    AuthError,
    Caller,
    ForbiddenError,
    Role,
    TokenNotFoundError,
    create_token,
    hash_token,
)

__all__ = ["AuthPolicy", "require"]


@dataclass(frozen=True, slots=True)
class AuthPolicy:
    """Whether requests need a token, the store the tokens are looked up in, and the
    operations on them the API offers (each off the event loop)."""

    required: bool
    store: TokenStore

    async def list_tokens(self) -> list[ApiTokenRecord]:
        """Every token, revoked ones included."""
        return await asyncio.to_thread(self.store.list_api_tokens)

    async def create_token(self, role: str, name: str | None) -> tuple[str, ApiTokenRecord]:
        """A new token: its secret (shown once) and its record."""
        return await asyncio.to_thread(create_token, self.store, role, name)

    async def revoke_token(self, token_id: str) -> None:
        """Revoke a valid token; `TokenNotFoundError` when there is none with that id."""
        if not await asyncio.to_thread(self.store.revoke_api_token, token_id):
            raise TokenNotFoundError(f"no valid token with id {token_id!r}")


_bearer = HTTPBearer(auto_error=False, description="A token from `taskloom token create`.")


async def _caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    policy: AuthPolicy = request.app.state.auth
    if not policy.required:
        return Caller(Role.ADMIN)
    secret = credentials.credentials if credentials is not None else None
    if not secret:
        raise AuthError()
    record = await asyncio.to_thread(policy.store.find_api_token, hash_token(secret))
    if record is None or record.revoked_at is not None:
        raise AuthError("the token is unknown or revoked")
    return Caller(Role(record.role), record.id, record.name)


def require(role: Role) -> Any:
    """A FastAPI dependency: the caller, who must have at least `role`."""

    async def check(caller: Annotated[Caller, Depends(_caller)]) -> Caller:
        if not caller.role.allows(role):
            raise ForbiddenError(
                f"this needs the {role.value} role; the token {caller.name!r} is "
                f"{caller.role.value}"
            )
        return caller

    return Depends(check)
