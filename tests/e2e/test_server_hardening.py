"""`taskloom serve`'s hardening options as a user sets them: `--allowed-host`,
`TASKLOOM_ALLOWED_HOSTS`, `--max-body`, and an `--access-log` that never shows a token."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest
from test_server import Served

if TYPE_CHECKING:  # the conftest module of this folder, for its type only
    from conftest import Cli

pytestmark = pytest.mark.timeout(60)


def test_allowed_hosts_and_the_body_limit_come_from_flags_and_the_environment(cli: Cli) -> None:
    cli.env["TASKLOOM_ALLOWED_HOSTS"] = "from-env.test, *.lab.test"
    served = Served(
        cli.start("serve", "examples/basics.py", "--allowed-host", "flag.test", "--max-body", "1K")
    )
    with httpx.Client(base_url=served.url, timeout=10) as http:
        for host in ["flag.test", "from-env.test:80", "a.lab.test", "localhost"]:
            assert http.get("/api/health", headers={"Host": host}).status_code == 200, host
        refused = http.get("/api/health", headers={"Host": "evil.example"})
        assert refused.status_code == 421
        too_large = http.post("/api/runs", json={"task": "adder", "inputs": {"a": "x" * 2000}})
        assert too_large.status_code == 413
        assert "1 KiB" in too_large.json()["error"]["message"]
        fits = http.post("/api/runs", json={"task": "adder", "inputs": {"a": 1, "b": 2}})
        assert fits.status_code == 201
    code, err = served.stop()
    assert code == 0, err


def test_a_bad_max_body_is_a_usage_error(cli: Cli) -> None:
    result = cli("serve", "examples/basics.py", "--max-body", "lots")
    assert result.returncode == 2
    assert "--max-body: expected bytes or a size like 16M" in result.stderr


def test_the_access_log_shows_no_token(cli: Cli) -> None:
    made = cli.json("token", "create", "--role", "admin", "--json")
    secret = made["token"]
    served = Served(cli.start("serve", "examples/basics.py", "--access-log"))
    with httpx.Client(base_url=served.url, timeout=10) as http:
        bearer = {"Authorization": f"Bearer {secret}"}
        assert http.get("/api/runs", headers=bearer).status_code == 200
        # A token in the URL is not taken, and is not printed either.
        assert http.get("/api/runs", params={"token": secret}).status_code == 401
        assert http.get("/api/runs", params={"limit": 5, "Token": secret}).status_code == 401
    code, err = served.stop()
    assert code == 0, err
    # uvicorn prints its access lines on stdout.
    printed = [err]
    while (line := served.lines.get(timeout=10)) is not None:
        printed.append(line)
    log = "".join(printed)
    assert secret not in log
    assert secret[3:] not in log
    assert log.count("token=[redacted]") + log.count("Token=[redacted]") == 2, log
    assert '"GET /api/runs HTTP/1.1" 200' in log
