"""API tokens and roles, without the web stack (the CLI uses them too).

A token is a random secret shown once when it is made; the store keeps only its SHA-256
digest (the secrets are long and random, so a plain fast hash is enough: there is nothing
to guess). Roles are ordered: a `viewer` reads, an `operator` also submits and cancels runs
and starts, stops and restarts services, an `admin` also manages tokens.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum

from ..exceptions import TaskloomError
from ..store import ApiTokenRecord, TokenStore

__all__ = [
    "TOKEN_PREFIX",
    "AuthError",
    "Caller",
    "ForbiddenError",
    "Role",
    "TokenNotFoundError",
    "auth_required",
    "create_token",
    "hash_token",
]

TOKEN_PREFIX = "tl_"


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


_RANKS = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


class AuthError(TaskloomError):
    """The request carries no valid token: send `Authorization: Bearer <token>`."""


class ForbiddenError(TaskloomError, PermissionError):
    """The token's role does not allow this operation."""


class TokenNotFoundError(TaskloomError, LookupError):
    """No valid token has this id."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the token's id and name (None without auth), and its role."""

    role: Role
    token_id: str | None = None
    name: str | None = None


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_token(
    store: TokenStore, role: str, name: str | None = None
) -> tuple[str, ApiTokenRecord]:
    """Make a token, record its hash; return the secret (shown once) and the record."""
    try:
        checked = Role(role)
    except ValueError:
        raise TaskloomError(
            f"role: expected one of viewer, operator, admin, got {role!r}"
        ) from None
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token_id = uuid.uuid4().hex[:12]
    record = ApiTokenRecord(
        id=token_id,
        name=name or f"{checked.value}-{token_id[:4]}",
        role=checked.value,
        token_hash=hash_token(secret),
        created_at=time.time(),
    )
    store.add_api_token(record)
    return secret, record


def auth_required(store: TokenStore, *, loopback: bool) -> bool:
    """Whether a server bound so needs tokens: yes off loopback (and then a valid token
    must exist, or `AuthError` says how to make one), yes when the store holds a valid
    token, else no."""
    valid = any(t.revoked_at is None for t in store.list_api_tokens())
    if not loopback and not valid:
        raise AuthError(
            "refusing to listen on an address other than loopback without a token: "
            "create one with `taskloom token create --role admin` (same --db), "
            "or listen on 127.0.0.1"
        )
    return valid or not loopback
