"""Schemathesis with every check (`--checks all`) against a real `taskloom serve`, one
without tokens and one with: no failure of any check, not only no 5xx.

The schemathesis command runs as a subprocess, as a user runs it: every phase (coverage,
fuzzing, stateful, following the OpenAPI links), a fixed seed, a few examples per
operation so the run stays bounded (about 15 s a server on 2 cores).

What is left out, and why:

- `GET /api/events` and `GET /api/pipelines/{name}/topics/{topic}/tail`: event streams
  never end by themselves, so no check can read a whole response. They have tests of
  their own (tests/integration/test_server_http.py, test_server_security.py).
- `POST /api/packages` and `POST /api/packages/{name}/reinstall`: each runs pip (a venv,
  downloads: seconds to minutes per example, and network access for any name the fuzzer
  makes up). Their refusals are tested in process (test_server_security.py,
  test_server_workflows_api.py); reading and removing packages stay fuzzed here.
- On the server with tokens, `DELETE /api/tokens/{token_id}`: `GET /api/tokens` lists the
  fuzzer's own token, and revoking it would leave nothing but 401s to check. It is fuzzed
  on the server without tokens, where tokens can be made and revoked all the same.

One expectation is widened, for the operations whose bodies carry a free-form part that
is checked against something the document cannot describe: `inputs` against the named
task's schema (`POST /api/runs`), `config` against the service's config type
(`POST /api/services/{name}/start|restart`), new values of attributes against the service
class's (`PATCH /api/services/{name}/attributes`), a workflow or a pipeline definition
(`POST /api/workflows`, `POST /api/pipelines`), a schedule's cron expression, time zone
and inputs (`POST /api/schedules`), a webhook call's body against its task and its
signature against the hook's secret (`POST /api/hooks/{name}`, 401 without it). A body
valid by the document may still be refused there with 422 naming the field, so
`positive_data_acceptance` also accepts 422 for them (and only for them).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_server import Served

from taskloom.server.tokens import create_token
from taskloom.store import open_store

pytestmark = pytest.mark.timeout(180)

HELPERS = Path(__file__).resolve().parents[1] / "helpers"

#: Examples per operation and phase: enough to try every parameter's edges, small enough for CI.
EXAMPLES = 30
SEED = 11

#: Operations whose bodies hold a part checked at run time (see the module's docstring).
CHECKED_AT_RUN_TIME = [
    "POST /api/runs",
    "POST /api/workflows",
    "POST /api/pipelines",
    "POST /api/services/{name}/start",
    "POST /api/services/{name}/restart",
    "PATCH /api/services/{name}/attributes",
    "POST /api/schedules",
    "POST /api/hooks/{name}",
]

NEVER_ENDING = ["GET /api/events", "GET /api/pipelines/{name}/topics/{topic}/tail"]
RUNS_PIP = ["POST /api/packages", "POST /api/packages/{name}/reinstall"]
REVOKES_ITS_OWN_TOKEN = ["DELETE /api/tokens/{token_id}"]


def _config(folder: Path) -> Path:
    lines = []
    for name in CHECKED_AT_RUN_TIME:
        lines += [
            "[[operations]]",
            f"include-name = {json.dumps(name)}",
            "checks.positive_data_acceptance.expected-statuses = "
            '["2xx", "401", "403", "404", "409", "422"]',
            "",
        ]
    path = folder / "schemathesis.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.fixture(params=["without-tokens", "with-tokens"])
def served(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, str | None, list[str]]]:
    """A served folder: its URL, the admin token (None: no tokens) and the exclusions."""
    shutil.copy(HELPERS / "server_tasks.py", tmp_path / "server_tasks.py")
    database_url = f"sqlite:///{tmp_path / 'f.db'}"
    token = None
    excluded = NEVER_ENDING + RUNS_PIP
    if request.param == "with-tokens":
        store = open_store(database_url)
        try:
            token, _record = create_token(store, "admin", "fuzzer")
        finally:
            store.close()
        excluded = excluded + REVOKES_ITS_OWN_TOKEN
    process = subprocess.Popen(
        [sys.executable, "-m", "taskloom", "serve", "server_tasks.py", "--port", "0"],
        cwd=tmp_path,
        env={"PATH": os.environ.get("PATH", "/usr/bin"), "TASKLOOM_DATABASE_URL": database_url},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    server = Served(process)
    yield server.url, token, excluded
    process.send_signal(signal.SIGTERM)
    _out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert "Traceback" not in err, err


def test_every_check_passes(served: tuple[str, str | None, list[str]], tmp_path: Path) -> None:
    url, token, excluded = served
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(_config(tmp_path)),
        "run",
        f"{url}/api/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        str(SEED),
        # One worker: schemathesis' generators share caches that are not thread-safe.
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--no-color",
    ]
    for name in excluded:
        command += ["--exclude-name", name]
    if token is not None:
        command += ["--header", f"Authorization: Bearer {token}"]
    result = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=150, check=False
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-20000:]
    summary = report[report.rindex("SUMMARY") :]
    assert "0 failures" in summary or " failures" not in summary, summary
    assert "Error" not in summary, summary
    tested = int(summary.split("Tested:")[1].split()[0])
    assert tested >= 30, summary
    for phase in ("Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in summary, summary
