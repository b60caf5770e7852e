"""Open event streams end when the token they were opened with is revoked.

A token is checked when a request comes in; an event stream then lasts as long as the
client keeps it. So that a revoke takes effect on those too, every event stream opened with
a token is remembered by the token's digest, and while any is open a watcher looks at the
store's tokens every `CHECK_INTERVAL` seconds (a revoke through this server's API asks it
to look at once). A stream whose token is revoked or gone is cancelled and its response
ended cleanly: the client sees the stream close.

The store is the source of truth: a token revoked by `taskloom token revoke` in another
process, or through another server on the same database, ends the streams here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import anyio
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..exceptions import StoreError
from ..store import TokenStore
from .tokens import hash_token

__all__ = ["CHECK_INTERVAL", "TokenStreams"]

#: Seconds between two looks at the store's tokens while token streams are open.
CHECK_INTERVAL = 0.25

logger = logging.getLogger("taskloom.server")


@dataclass(eq=False, slots=True)
class _Stream:
    scope: anyio.CancelScope
    revoked: bool = False


@dataclass(slots=True)
class TokenStreams:
    """The event streams opened with a token, and the watcher that ends revoked ones."""

    store: TokenStore
    interval: float = CHECK_INTERVAL
    _open: dict[str, set[_Stream]] = field(default_factory=dict)
    _watcher: asyncio.Task[None] | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def open(self) -> int:
        """Event streams open with a token now."""
        return sum(len(streams) for streams in self._open.values())

    def check_now(self) -> None:
        """Look at the store's tokens at once (a token was just revoked here)."""
        self._wake.set()

    def middleware(self, app: ASGIApp) -> ASGIApp:
        async def tracked(scope: Scope, receive: Receive, send: Send) -> None:
            digest = _token_digest(scope) if scope["type"] == "http" else None
            if digest is None:
                await app(scope, receive, send)
                return
            await self._serve(digest, app, scope, receive, send)

        return tracked

    async def _serve(
        self, digest: str, app: ASGIApp, scope: Scope, receive: Receive, send: Send
    ) -> None:
        stream: _Stream | None = None
        started = ended = False

        async def watched(message: Message) -> None:
            nonlocal stream, started, ended
            if message["type"] == "http.response.start":
                started = True
                content_type = Headers(raw=message.get("headers", [])).get("content-type", "")
                if content_type.startswith("text/event-stream"):
                    stream = _Stream(cancel)
                    self._open.setdefault(digest, set()).add(stream)
                    self._start_watcher()
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                ended = True
            await send(message)

        with anyio.CancelScope() as cancel:
            try:
                await app(scope, receive, watched)
            finally:
                if stream is not None:
                    self._forget(digest, stream)
        if stream is not None and stream.revoked and started and not ended:
            # The last chunk of the response: the client reads the stream's end.
            with contextlib.suppress(OSError):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _forget(self, digest: str, stream: _Stream) -> None:
        streams = self._open.get(digest)
        if streams is not None:
            streams.discard(stream)
            if not streams:
                del self._open[digest]

    def _start_watcher(self) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch(), name="taskloom-token-streams")

    async def _watch(self) -> None:
        while self._open:
            try:
                records = await asyncio.to_thread(self.store.list_api_tokens)
            except StoreError as exc:  # a store away for a moment: look again later
                logger.warning("could not read the tokens to check open streams: %s", exc)
            else:
                valid = {r.token_hash for r in records if r.revoked_at is None}
                for digest in [d for d in self._open if d not in valid]:
                    for stream in self._open.pop(digest):
                        stream.revoked = True
                        stream.scope.cancel()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None


def _token_digest(scope: Scope) -> str | None:
    authorization = Headers(scope=scope).get("authorization", "")
    kind, _, secret = authorization.partition(" ")
    if kind.lower() != "bearer" or not secret.strip():
        return None
    return hash_token(secret.strip())
