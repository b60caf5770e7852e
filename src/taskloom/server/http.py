"""The HTTP server of `taskloom serve`: uvicorn in the engine's own event loop.

The serving process owns SIGINT and SIGTERM (see `processes.py`), so uvicorn's own signal
capture is turned off; the server is stopped by `stop()`, which lets requests in flight end
for `GRACEFUL_SECONDS` and then closes the remaining connections (event streams never end
by themselves).

With `--access-log`, uvicorn prints each request's path and query: any `token=` value in
them is replaced by `[redacted]` before the line is written (the API takes tokens only in
a header, but a client may still put one in a URL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import Iterator, Sequence
from typing import Any

import uvicorn

from ..engine import Engine
from ..exceptions import TaskloomError
from ..observability.logs import json_logging, uvicorn_to_root
from .app import create_app
from .guard import HostPolicy
from .settings import ServerSettings
from .tokens import auth_required

__all__ = ["GRACEFUL_SECONDS", "HttpServer", "ServerStartError"]

GRACEFUL_SECONDS = 2.0
_STARTUP_TIMEOUT = 10.0

logger = logging.getLogger("taskloom.server")


class ServerStartError(TaskloomError, OSError):
    """The HTTP server could not start."""


_TOKEN_VALUE = re.compile(r"(token=)[^&\s\"']*", re.IGNORECASE)


def redact_tokens(text: str) -> str:
    """`text` with the value of every `token=` replaced by `[redacted]`."""
    return _TOKEN_VALUE.sub(r"\1[redacted]", text)


class _RedactTokens(logging.Filter):
    """Keeps token values out of the access log (set on uvicorn's access logger)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_tokens(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact_tokens(a) if isinstance(a, str) else a for a in record.args)
        return True


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The serving process handles the signals and calls stop(); uvicorn must not.
        yield


class HttpServer:
    """Serves an engine's API on `settings.host:settings.port` (port 0: a free one)."""

    def __init__(
        self,
        settings: ServerSettings,
        *,
        auth: bool | None = None,
        database: str = "",
        pipelines: Sequence[Any] = (),
    ) -> None:
        self.settings = settings
        #: The pipelines of the served files, deployable by name.
        self.pipelines = list(pipelines)
        #: None decides from the address and the store (see `auth.auth_required`).
        self.auth = auth
        self.database = database
        self.port: int | None = None
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None
        self._redact: logging.Filter | None = None

    @property
    def url(self) -> str:
        host = self.settings.host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}"

    def _bind(self) -> socket.socket:
        host, port = self.settings.host, self.settings.port
        sock: socket.socket | None = None
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            family, kind, proto, _name, address = infos[0]
            sock = socket.socket(family, kind, proto)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(2048)
        except OSError as exc:
            if sock is not None:
                sock.close()
            reason = exc.strerror or exc
            raise ServerStartError(f"cannot listen on {host}:{port}: {reason}") from exc
        sock.setblocking(False)
        return sock

    async def start(self, engine: Engine) -> None:
        """Bind, then serve in the background; returns once the server accepts requests.

        Raises `AuthError` off loopback when the store holds no valid token."""
        store = engine.store
        assert store is not None
        if self.auth is None:
            loopback = self.settings.loopback
            self.auth = await asyncio.to_thread(auth_required, store, loopback=loopback)
        try:
            # The packages recorded in the database are served too, as `<package>/<task>`.
            await engine.register_packages()
        except TaskloomError as exc:  # a package that no longer loads must not stop serving
            logger.error("could not register the packages' tasks: %s", exc)
        self._socket = self._bind()
        self.port = int(self._socket.getsockname()[1])
        hosts = HostPolicy.for_server(
            bind=self.settings.host,
            loopback=self.settings.loopback,
            allowed=self.settings.allowed_hosts,
        )
        app = create_app(
            engine,
            auth_required=self.auth,
            database=self.database,
            venvs_dir=self.settings.venvs_dir,
            pipelines=self.pipelines,
            hosts=hosts,
            max_body=self.settings.max_body,
        )
        config = uvicorn.Config(
            app,
            lifespan="off",
            # Logging JSON lines, uvicorn's loggers keep no handlers of their own: their
            # records reach the process's JSON handler like every other.
            log_config=uvicorn_to_root() if json_logging() else uvicorn.config.LOGGING_CONFIG,
            log_level="info" if self.settings.access_log else "warning",
            access_log=self.settings.access_log,
            timeout_graceful_shutdown=int(GRACEFUL_SECONDS),
            server_header=False,
        )
        # uvicorn configures its loggers when the config is made: the filter comes after.
        self._redact = _RedactTokens()
        logging.getLogger("uvicorn.access").addFilter(self._redact)
        self._server = server = _Server(config)
        self._task = asyncio.create_task(server.serve(sockets=[self._socket]), name="taskloom-http")
        deadline = asyncio.get_running_loop().time() + _STARTUP_TIMEOUT
        while not server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise ServerStartError("the HTTP server stopped while starting")
            if asyncio.get_running_loop().time() > deadline:
                raise ServerStartError("the HTTP server did not start in time")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        server, task = self._server, self._task
        if server is None or task is None:
            return
        app = server.config.app
        server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), GRACEFUL_SECONDS + 3)
        except TimeoutError:
            server.force_exit = True
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, 1.0)
        finally:
            state = getattr(app, "state", None)
            events = getattr(state, "events", None)
            if events is not None:
                events.close()
            metrics = getattr(state, "metrics", None)
            if metrics is not None:
                metrics.close()
            streams = getattr(state, "token_streams", None)
            if streams is not None:
                streams.close()
            if self._redact is not None:
                logging.getLogger("uvicorn.access").removeFilter(self._redact)
            if self._socket is not None:
                self._socket.close()
            self._server = self._task = None
