"""The checks every request passes before it reaches a route: the `Host` it was sent to,
the `Origin` of a request that changes state, and the size of its body.

A server on loopback with no token lets every local caller in as admin, and a web page the
user opens is a local caller too. Two checks keep pages out:

- DNS rebinding: a page on `evil.example` makes its name resolve to 127.0.0.1, and its
  scripts then reach the server as if they were same-origin, with `Host: evil.example`.
  Bound to loopback, the server answers only to loopback names and addresses (and to the
  names the operator allows): anything else gets 421 (Misdirected Request).
- Cross-site requests: a page may POST to the server (a form, `fetch` in no-cors mode)
  without reading the answer; body-less ones (stop a service, cancel a run) need nothing
  more. A state-changing request whose `Origin` (or `Sec-Fetch-Site`) says it comes from
  another site gets 403. The CLI, the client and curl send no `Origin` and pass.

Bound to another address, tokens are required (the server refuses to start without one),
and a token travels in a header no page can make a browser send: any `Host` is accepted
there, unless allowed hosts are given, and then only those (with loopback names and the
bound address). The `Origin` check applies everywhere.

Bodies are bounded while they are read: a `Content-Length` above the limit gets 413 before
anything is read, and a chunked body is counted as it arrives and refused once it passes
the limit, so no more than the limit is ever held.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_body

__all__ = [
    "STATE_CHANGING",
    "BodyTooLargeError",
    "HostPolicy",
    "RequestGuard",
    "split_authority",
]

#: The methods a page must not send from another site.
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_DEFAULT_PORTS = {"http": 80, "https": 443}
_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")


def split_authority(authority: str) -> tuple[str, int | None] | None:
    """`("localhost", 8321)` from `localhost:8321`, `("::1", None)` from `[::1]`; None
    when it is no host (a path, a user part, spaces, a port out of range)."""
    authority = authority.strip().lower()
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            return None
        host, rest = authority[1:end], authority[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return None
    else:
        host, _, port_text = authority.partition(":")
        rest = f":{port_text}" if _ else ""
        if not _NAME.fullmatch(host):
            return None
    if not rest:
        return host.rstrip("."), None
    if not re.fullmatch(r":\d{1,5}", rest) or int(rest[1:]) > 65535:
        return None
    return host.rstrip("."), int(rest[1:])


def _is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """Which names the `Host` header may carry (case-insensitive, any port).

    `names` are exact; `suffixes` come from `*.example.org` (any name under it);
    `any_host` accepts every name (a server off loopback, with none given)."""

    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()
    any_host: bool = False

    @classmethod
    def for_server(cls, *, bind: str, loopback: bool, allowed: Sequence[str] = ()) -> HostPolicy:
        """The policy of a server bound to `bind`: loopback names and addresses, `allowed`
        and the bound address itself; any name off loopback when `allowed` is empty."""
        names = {"localhost"}
        suffixes = []
        for entry in allowed:
            entry = entry.strip().lower().strip("[]").rstrip(".")
            if entry.startswith("*."):
                suffixes.append(entry[1:])
            elif entry:
                names.add(entry)
        if bind not in {"0.0.0.0", "::", ""}:
            names.add(bind.lower().strip("[]"))
        return cls(frozenset(names), tuple(suffixes), any_host=not loopback and not allowed)

    def allows(self, host: str) -> bool:
        """Whether `host` (no port, no brackets) is one this server answers to."""
        host = host.lower().rstrip(".")
        if self.any_host or host in self.names or _is_loopback_host(host):
            return True
        return any(host.endswith(suffix) for suffix in self.suffixes)


class BodyTooLargeError(HTTPException):
    """Raised while a body is read, once it passes the limit; the app answers 413.

    An `HTTPException`, so that FastAPI's body reading lets it through as it is (any other
    exception there becomes a 400), and the app's handler gives it the JSON error shape."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large(limit))
        self.limit = limit


def _too_large(limit: int) -> str:
    return (
        f"the request body is larger than the server's limit of {_size(limit)}: send less, "
        "or start the server with a larger --max-body"
    )


def _size(count: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= factor and count % factor == 0:
            return f"{count // factor} {unit}"
    return f"{count} bytes"


class RequestGuard:
    """ASGI middleware: refuses a request with a foreign `Host` (421), a state-changing
    one from another site (403), and a body above `max_body` bytes (413)."""

    def __init__(self, app: ASGIApp, *, hosts: HostPolicy, max_body: int) -> None:
        self.app = app
        self.hosts = hosts
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await _refuse(refusal, scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, self._bounded(receive), watched)
        except BodyTooLargeError as exc:
            # Raised where no route's handler sees it (middleware reading the body).
            if started:
                raise
            await _refuse((413, "BodyTooLarge", str(exc.detail)), scope, receive, send)

    def _refusal(self, scope: Scope, headers: Headers) -> tuple[int, str, str] | None:
        host_header = headers.get("host", "")
        authority = split_authority(host_header)
        if authority is None or not self.hosts.allows(authority[0]):
            return (
                421,
                "MisdirectedRequest",
                f"this server does not answer to the Host {host_header!r}: call it by a "
                "loopback name (localhost, 127.0.0.1, [::1]), or start it with "
                "--allowed-host NAME to answer to that name too",
            )
        method = str(scope["method"]).upper()
        if method in STATE_CHANGING:
            problem = _foreign_origin(headers, authority)
            if problem is not None:
                return 403, "ForbiddenError", f"{method} {scope['path']}: {problem}"
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return 413, "BodyTooLarge", _too_large(self.max_body)
        return None

    def _bounded(self, receive: Receive) -> Receive:
        limit = self.max_body
        read = 0

        async def bounded() -> Message:
            nonlocal read
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > limit:
                    # Raised before this chunk is handed on: the app never holds more
                    # than the limit.
                    raise BodyTooLargeError(limit)
            return message

        return bounded


async def _refuse(
    refusal: tuple[int, str, str], scope: Scope, receive: Receive, send: Send
) -> None:
    status, kind, message = refusal
    await JSONResponse(error_body(kind, message), status_code=status)(scope, receive, send)


def _foreign_origin(headers: Headers, authority: tuple[str, int | None]) -> str | None:
    """Why a state-changing request comes from another site, or None when it does not.

    The server's own origin is the host and port the request was sent to (its `Host`,
    already checked), over `http` or `https` (a proxy in front may terminate TLS)."""
    site = headers.get("sec-fetch-site")
    if site in {"cross-site", "same-site"}:
        return (
            f"refused a request a page of another site sent (Sec-Fetch-Site: {site}); "
            "use the dashboard this server serves, the CLI or the client"
        )
    origin = headers.get("origin")
    if origin is None:
        return None  # not sent by a browser (CLI, client, curl), or a same-origin GET
    parts = urlsplit(origin) if origin != "null" else None
    if parts is not None and parts.scheme in _DEFAULT_PORTS and not parts.path:
        theirs = split_authority(parts.netloc)
        if theirs is not None:
            # A port left out is the default one of the scheme the page was loaded over.
            default = _DEFAULT_PORTS[parts.scheme]
            host, port = authority
            if (theirs[0], theirs[1] or default) == (host, port or default):
                return None
    return (
        f"refused a request from the page of another origin ({origin}); this server accepts "
        "changes only from its own pages, the CLI and the client"
    )
