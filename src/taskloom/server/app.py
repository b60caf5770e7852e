"""The FastAPI application: the engine's operations under `/api`, the dashboard at `/`.

The app holds no logic of its own: each route calls one engine operation. It does not own
the engine either: whoever makes the app starts the engine before serving and closes it
after (`taskloom serve` does both, in the same event loop as the server).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fastapi import FastAPI
from starlette.routing import Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from .. import __version__
from ..engine import Engine
from ..observability import tracing
from ..observability.metrics import Metrics
from ..packages.installs import PackageInstalls
from ..streams import Pipeline
from .api import ROUTERS
from .auth import AuthPolicy
from .bodies import JsonBodies
from .errors import RouteMethods, install_error_handlers
from .events import EventHub
from .guard import HostPolicy, RequestGuard
from .metrics import MeasuredRequests, RequestMetrics, RouteTemplates
from .metrics import router as metrics_router
from .openapi import truthful_openapi
from .revocation import TokenStreams
from .settings import DEFAULT_MAX_BODY

__all__ = ["DASHBOARD_DIR", "create_app"]

#: The dashboard's built assets, shipped inside the package.
DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboard"


def create_app(
    engine: Engine,
    *,
    auth_required: bool = False,
    database: str = "",
    dashboard: Path | None = DASHBOARD_DIR,
    venvs_dir: Path | None = None,
    pipelines: Sequence[Pipeline] = (),
    hosts: HostPolicy | None = None,
    max_body: int = DEFAULT_MAX_BODY,
) -> FastAPI:
    """An app serving `engine` (which must be started before the first request).

    With `auth_required`, every route but `/api/health` and `/api/ready` needs a valid
    token from the engine's store (`/metrics` too, a viewer's). `database` is what
    `/api/health` shows as the database (passwords hidden by the caller). The dashboard
    folder is served at `/` when it has an `index.html`. Packages added through the API
    get their venvs in `venvs_dir` (default: `.taskloom/venvs` under the working folder,
    as for `taskloom package add`).
    `hosts` are the names the `Host` header may carry (default: loopback ones only) and
    `max_body` the largest body read, in bytes (see `guard.py`).
    """
    assert engine.store is not None, "start the engine before making its app"
    app = FastAPI(
        title="taskloom",
        version=__version__,
        description="Submit, watch and control taskloom runs and services.",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.engine = engine
    app.state.auth = AuthPolicy(required=auth_required, store=engine.store)
    app.state.database = database
    hub = EventHub(engine)
    hub.start()
    app.state.events = hub
    folder = venvs_dir if venvs_dir is not None else Path.cwd() / ".taskloom" / "venvs"
    app.state.packages = PackageInstalls(engine, folder.resolve())
    app.state.pipelines = {p.name: p for p in pipelines}
    metrics = app.state.metrics = Metrics()
    metrics.watch(engine, deployments=lambda: engine.deployments)
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router, prefix="/api")
    app.state.methods = RouteMethods(ROUTERS, prefix="/api")
    app.include_router(metrics_router)
    app.openapi = truthful_openapi(app, auth_required=auth_required)  # type: ignore[method-assign]
    if auth_required:
        streams = TokenStreams(engine.store)
        app.state.token_streams = streams
        app.add_middleware(streams.middleware)
    else:
        app.state.token_streams = None
    app.add_middleware(JsonBodies)
    policy = hosts if hosts is not None else HostPolicy.for_server(bind="127.0.0.1", loopback=True)
    # Added last but one, so it runs first but for the count of requests: a refused
    # request reaches nothing else.
    app.add_middleware(RequestGuard, hosts=policy, max_body=max_body)
    served = dashboard is not None and (dashboard / "index.html").is_file()
    routes = RouteTemplates(
        ROUTERS,
        prefix="/api",
        paths=("/api/openapi.json", "/api/docs", "/metrics"),
        dashboard=served,
    )
    app.add_middleware(MeasuredRequests, metrics=RequestMetrics(metrics.registry), routes=routes)
    if served:
        assert dashboard is not None
        app.router.routes.append(
            _Dashboard("/", StaticFiles(directory=dashboard, html=True), name="dashboard")
        )
    tracing.instrument_app(app)  # a span per request, with OpenTelemetry's SDK
    return app


class _Dashboard(Mount):
    """The dashboard's files at `/`, but never for a path under `/api`: there the API's
    own answers hold (404 for no such route, 405 with `Allow` for a method a route does
    not take), not the files' ones."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        path = str(scope.get("path", ""))
        if path == "/api" or path.startswith("/api/"):
            return Match.NONE, {}
        return super().matches(scope)
