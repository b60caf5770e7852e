"""Schemathesis against a real `taskloom serve`: nothing generated from the OpenAPI
document (valid or not) may get a 5xx. Bounded: a few examples per operation."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from test_server import Served

pytestmark = pytest.mark.timeout(120)

HELPERS = Path(__file__).resolve().parents[1] / "helpers"

#: Examples per operation: enough to try every parameter's edges, small enough for CI.
EXAMPLES = 25


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("fuzz")
    shutil.copy(HELPERS / "server_tasks.py", folder / "server_tasks.py")
    process = subprocess.Popen(
        [sys.executable, "-m", "taskloom", "serve", "server_tasks.py", "--port", "0"],
        cwd=folder,
        env={"PATH": "/usr/bin:/bin", "TASKLOOM_DATABASE_URL": f"sqlite:///{folder / 'f.db'}"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    served = Served(process)
    yield served.url
    process.send_signal(signal.SIGTERM)
    _out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert "Traceback" not in err, err


def test_no_request_gets_a_server_error(server_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{server_url}/api/openapi.json")
    # An event stream never ends by itself: it has its own tests.
    schema = schema.exclude(path="/api/events")
    # Adding or reinstalling a package runs pip (a venv, downloads: seconds to minutes per
    # example, and network access for any name the fuzzer makes up). Their 4xx answers are
    # checked in process (tests/integration/test_server_workflows_api.py); the reads and
    # the removal of packages stay fuzzed here.
    schema = schema.exclude(method="POST", path="/api/packages")
    schema = schema.exclude(method="POST", path="/api/packages/{name}/reinstall")
    tried = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=server_url, checks=[not_a_server_error])

        call()
        tried.append(operation.label)
    assert "POST /api/runs" in tried
    assert {
        "POST /api/workflows",
        "GET /api/workflows/{run_id}",
        "POST /api/workflows/{run_id}/rerun",
        "GET /api/packages",
        "DELETE /api/packages/{name}",
    } <= set(tried)
    assert "POST /api/packages" not in tried
    assert len(tried) >= 20
