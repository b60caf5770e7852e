"""The FastAPI application: the engine's operations under `/api`, the dashboard at `/`.

The app holds no logic of its own: each route calls one engine operation. It does not own
the engine either: whoever makes the app starts the engine before serving and closes it
after (`taskloom serve` does both, in the same event loop as the server).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from .. import __version__
from ..engine import Engine
from ..streams import Pipeline
from .api import ROUTERS
from .api.packages import PackageInstalls
from .api.pipelines import DeploymentsHere
from .auth import AuthPolicy
from .errors import install_error_handlers
from .events import EventHub

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
) -> FastAPI:
    """An app serving `engine` (which must be started before the first request).

    With `auth_required`, every route but `/api/health` needs a valid token from the
    engine's store. `database` is what `/api/health` shows as the database (passwords
    hidden by the caller). The dashboard folder is served at `/` when it has an
    `index.html`. Packages added through the API get their venvs in `venvs_dir`
    (default: `.taskloom/venvs` under the working folder, as for `taskloom package add`).
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
    app.state.pipelines = DeploymentsHere(list(pipelines))
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router, prefix="/api")
    if dashboard is not None and (dashboard / "index.html").is_file():
        app.mount("/", StaticFiles(directory=dashboard, html=True), name="dashboard")
    return app
