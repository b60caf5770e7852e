"""`GET /metrics`, and the count of the requests the server answers.

The process's metrics (`observability/metrics.py`) are served outside `/api`, where
scrapers look for them, and outside the OpenAPI document (the answer is the Prometheus
text format, not JSON). The route passes the request guard like every other, and needs a
viewer token when tokens are in force: Prometheus sends one with its scrape config's
`authorization` setting.

Requests are counted by route template (`/api/runs/{run_id}`), never by the path sent, so
the label sets stay bounded whatever paths clients try: the dashboard's files are one
label (`dashboard`), a path no route takes another (`unmatched`). The template is found
from the routers' own paths, not from what the router leaves in the request's scope
(which differs between FastAPI versions).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from prometheus_client.metrics import Counter, Histogram
from prometheus_client.registry import CollectorRegistry
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..observability.metrics import Metrics
from .api.deps import Viewer

__all__ = [
    "DASHBOARD_ROUTE",
    "HTTP_BUCKETS",
    "UNMATCHED_ROUTE",
    "MeasuredRequests",
    "RequestMetrics",
    "RouteTemplates",
    "router",
]

#: Request durations, in seconds (an event stream ends in the last bucket).
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
#: The route label of the dashboard's files, and of a path no route takes.
DASHBOARD_ROUTE = "dashboard"
UNMATCHED_ROUTE = "unmatched"

router = APIRouter()


@router.get("/metrics", dependencies=[Viewer], include_in_schema=False)
async def metrics(request: Request) -> Response:
    found: Metrics = request.app.state.metrics
    # The database's gauges are read in a thread (at most once a second); the rest is
    # what this process holds in memory, written out here.
    await asyncio.to_thread(found.refresh)
    body, content_type = found.exposition(request.headers.get("accept", ""))
    return Response(body, media_type=content_type)


class RouteTemplates:
    """The route template of a path: `/api/runs/{run_id}` for `/api/runs/0190...`.

    The templates are indexed by their first two segments when both are literal (every
    route of the API), so a path is matched against the few templates of its part only."""

    def __init__(
        self,
        routers: Iterable[APIRouter],
        *,
        prefix: str,
        paths: Sequence[str] = (),
        dashboard: bool = False,
    ) -> None:
        templates = [
            prefix + route.path
            for r in routers
            for route in r.routes
            if isinstance(route, APIRoute)
        ]
        self._by_head: dict[tuple[str, ...], list[tuple[re.Pattern[str], str]]] = {}
        self._anywhere: list[tuple[re.Pattern[str], str]] = []
        for template in [*templates, *paths]:
            pattern, shown, _convertors = compile_path(template)
            head = _head(template)
            if any("{" in part for part in head):
                self._anywhere.append((pattern, shown))
            else:
                self._by_head.setdefault(head, []).append((pattern, shown))
        self._prefix = prefix
        self._dashboard = dashboard

    def label(self, path: str) -> str:
        for pattern, template in self._by_head.get(_head(path), ()):
            if pattern.match(path):
                return template
        for pattern, template in self._anywhere:
            if pattern.match(path):
                return template
        under_api = path == self._prefix or path.startswith(self._prefix + "/")
        return DASHBOARD_ROUTE if self._dashboard and not under_api else UNMATCHED_ROUTE


def _head(path: str) -> tuple[str, ...]:
    return tuple(path.split("/", 3)[1:3])


class RequestMetrics:
    """Requests by route template and status, and their durations by route template."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._requests = Counter(
            "taskloom_http_requests",
            "HTTP requests this server answered, by route template and status code.",
            ("route", "status"),
            registry=registry,
        )
        self._durations = Histogram(
            "taskloom_http_request_duration_seconds",
            "From a request's arrival to the end of its answer, by route template.",
            ("route",),
            buckets=HTTP_BUCKETS,
            registry=registry,
        )
        # Children by label values: `labels()` takes a lock and builds a key each time.
        self._counted: dict[tuple[str, int], Any] = {}
        self._timed: dict[str, Any] = {}

    def observe(self, route: str, status: int, seconds: float) -> None:
        counter = self._counted.get((route, status))
        if counter is None:
            counter = self._counted[route, status] = self._requests.labels(route, str(status))
        counter.inc()
        histogram = self._timed.get(route)
        if histogram is None:
            histogram = self._timed[route] = self._durations.labels(route)
        histogram.observe(seconds)


class MeasuredRequests:
    """ASGI middleware: each HTTP request counted and timed by route template and status.

    Outermost, so the answers of the other middleware (the request guard's refusals) are
    counted with their status too."""

    def __init__(self, app: ASGIApp, *, metrics: RequestMetrics, routes: RouteTemplates) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless an answer starts: an exception becomes a 500 further out

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = self.routes.label(str(scope["path"]))
            self.metrics.observe(route, status, time.perf_counter() - started)
