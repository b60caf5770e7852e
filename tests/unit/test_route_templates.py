"""`RouteTemplates`: the label a request is counted under is its route's template, from a
bounded set whatever path was sent."""

from __future__ import annotations

import uuid

import pytest
from fastapi.routing import APIRoute

from taskloom.server.api import ROUTERS
from taskloom.server.metrics import DASHBOARD_ROUTE, UNMATCHED_ROUTE, RouteTemplates

ROUTES = RouteTemplates(ROUTERS, prefix="/api", paths=("/metrics",), dashboard=True)


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("/api/runs", "/api/runs"),
        (f"/api/runs/{uuid.uuid4()}", "/api/runs/{run_id}"),
        (f"/api/runs/{uuid.uuid4()}/wait", "/api/runs/{run_id}/wait"),
        ("/api/health", "/api/health"),
        ("/api/ready", "/api/ready"),
        ("/metrics", "/metrics"),
        ("/api/no-such-route", UNMATCHED_ROUTE),
        ("/api/runs/a/b/c/d", UNMATCHED_ROUTE),
        ("/api", UNMATCHED_ROUTE),
        ("/", DASHBOARD_ROUTE),
        ("/js/app.js", DASHBOARD_ROUTE),
        ("/no/such/file.css", DASHBOARD_ROUTE),
    ],
)
def test_a_path_is_labelled_by_its_template(path: str, label: str) -> None:
    assert ROUTES.label(path) == label


def test_without_a_dashboard_other_paths_are_unmatched() -> None:
    routes = RouteTemplates(ROUTERS, prefix="/api")
    assert routes.label("/index.html") == UNMATCHED_ROUTE
    assert routes.label("/api/tasks") == "/api/tasks"


def test_every_route_of_the_api_is_its_own_label() -> None:
    templates = {
        "/api" + route.path
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute)
    }
    for template in templates:
        sample = template.replace("{", "x").replace("}", "x").replace(":path", "")
        assert ROUTES.label(sample) == template
