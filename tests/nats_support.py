"""NATS for the tests: its URL, after checking the server answers (skip locally, fail in CI)."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

import pytest

NATS_URL = os.environ.get("TASKLOOM_TEST_NATS_URL", "nats://127.0.0.1:4222")


def require_nats() -> str:
    """The NATS URL; skips the test when the server is unreachable (fails under CI=true)."""
    parsed = urlparse(NATS_URL)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 4222), 3):
            pass
    except OSError as exc:
        reason = f"NATS is not reachable at {NATS_URL} ({exc})"
        if os.environ.get("CI") == "true":
            pytest.fail(
                f"{reason}; CI needs it: start nats-server -js or set TASKLOOM_TEST_NATS_URL"
            )
        pytest.skip(f"{reason}; set TASKLOOM_TEST_NATS_URL to run these tests")
    return NATS_URL
