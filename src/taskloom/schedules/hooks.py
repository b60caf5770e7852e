"""Webhooks: a named URL that starts a run of a task when called with a signed body.

`taskloom hook create NAME TASK` (or `HookBook.create`) makes a secret, shown once. A
caller sends `POST /api/hooks/NAME` with a JSON object of the task's inputs and the
header `X-Taskloom-Signature: sha256=<hex>`, the HMAC-SHA256 of the raw body under the
secret (as GitHub signs its webhooks). A missing or wrong signature starts nothing (401);
an `Idempotency-Key` header sent again returns the run the first call started.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterable

from ..store import HookRecord, ScheduleStore
from ..tasks.definition import TaskDefinition
from .book import NAME_PATTERN
from .errors import HookNotFoundError, ScheduleError, SignatureError

__all__ = ["SIGNATURE_HEADER", "HookBook", "check_signature", "hook_key", "sign"]

#: The header that carries a call's signature.
SIGNATURE_HEADER = "X-Taskloom-Signature"
_SCHEME = "sha256="


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for `body` under `secret`."""
    return _SCHEME + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check_signature(secret: str, body: bytes, signature: str | None) -> None:
    """Raise `SignatureError` unless `signature` is `body`'s under `secret`."""
    if not signature:
        raise SignatureError(
            f"the call has no {SIGNATURE_HEADER} header: sign the body with the hook's "
            f"secret (HMAC-SHA256, sent as {_SCHEME}<hex>)"
        )
    if not hmac.compare_digest(signature.strip().encode(), sign(secret, body).encode()):
        raise SignatureError(
            f"the {SIGNATURE_HEADER} header does not match the body: sign the exact bytes "
            f"sent, with the hook's secret (HMAC-SHA256, sent as {_SCHEME}<hex>)"
        )


def hook_key(name: str, idempotency_key: str) -> str:
    """The idempotency key of the run a call with this `Idempotency-Key` starts."""
    return f"hook:{name}@{idempotency_key}"


class HookBook:
    """Webhooks on a store; `tasks` are the tasks known here (to check a new hook's)."""

    def __init__(
        self,
        store: ScheduleStore,
        tasks: Iterable[TaskDefinition] = (),
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._tasks = {d.name for d in tasks}
        self._clock = clock

    def create(self, name: str, task: str, *, replace: bool = False) -> tuple[HookRecord, str]:
        """Record a webhook of `task`; returns it and its secret (kept, shown only now)."""
        if not isinstance(name, str) or NAME_PATTERN.fullmatch(name) is None:
            raise ScheduleError(
                f"name: {name!r} is not a webhook name (expected 1 to 200 letters, digits or ._-:)",
                field="name",
            )
        if self._tasks and task not in self._tasks:
            known = ", ".join(sorted(self._tasks))
            raise ScheduleError(f"task: unknown task {task!r} (known here: {known})", field="task")
        if not replace and self._store.get_hook(name) is not None:
            raise ScheduleError(
                f"name: a webhook named {name!r} exists (remove it first, or replace it)",
                field="name",
            )
        secret = secrets.token_hex(32)
        record = HookRecord(name=name, task=task, secret=secret, created_at=self._clock())
        self._store.save_hook(record)
        return record, secret

    def all(self) -> list[HookRecord]:
        return self._store.list_hooks()

    def get(self, name: str) -> HookRecord:
        record = self._store.get_hook(name)
        if record is None:
            raise HookNotFoundError(name)
        return record

    def remove(self, name: str) -> None:
        if not self._store.delete_hook(name):
            raise HookNotFoundError(name)
