"""Submitting over HTTP while a fault lasts, and waiting for the runs once it is over."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import httpx
from fault_processes import unfinished
from fault_tasks import read_ledger

from support import until


class Submitter:
    """Submits over HTTP and sorts the answers: accepted (201) or refused (503)."""

    def __init__(self, client: httpx.AsyncClient, ledger: str) -> None:
        self.client = client
        self.ledger = ledger
        self.accepted: dict[str, str] = {}  # run id -> key
        self.refused: dict[str, dict[str, Any]] = {}  # key -> the 503's error body
        self.latencies: list[float] = []

    async def submit(self, key: str, task: str = "recorded", seconds: float = 0.0) -> int:
        inputs = {"key": key, "ledger": self.ledger, "seconds": seconds}
        began = time.monotonic()
        response = await self.client.post("/api/runs", json={"task": task, "inputs": inputs})
        self.latencies.append(time.monotonic() - began)
        if response.status_code == 201:
            self.accepted[response.json()["id"]] = key
        else:
            assert response.status_code == 503, response.text
            retry_after = response.headers.get("retry-after")
            assert retry_after is not None, f"503 without Retry-After: {response.text}"
            assert int(retry_after) >= 1, retry_after
            error = response.json()["error"]
            assert error["type"] == "StoreUnavailableError", error
            assert error["message"], error
            self.refused[key] = error
        return response.status_code

    async def submit_retrying(self, key: str, task: str = "recorded", timeout: float = 30) -> str:
        """Submit as a client told to come back after `Retry-After` does, until it is accepted;
        the key of the accepted try (each try has a key of its own)."""
        deadline = time.monotonic() + timeout
        for attempt in itertools.count():
            try_key = f"{key}-try{attempt}"
            if await self.submit(try_key, task) == 201:
                return try_key
            wait = float(self.refused[try_key]["retry_after"])
            assert time.monotonic() + wait < deadline, f"{key}: still refused after {timeout} s"
            await asyncio.sleep(wait)  # what Retry-After asks of a client
        raise AssertionError("unreachable")

    def check_refused_never_ran(self, ledger: str, runs: dict[str, Any]) -> None:
        """What was refused was not accepted: it is not in the store and its code never ran."""
        keys = {run.inputs["key"] for run in runs.values()}
        assert not set(self.refused) & keys, "a refused submit was recorded later"
        ran = {key for _, key, _ in read_ledger(ledger)}
        assert not set(self.refused) & ran, "a refused submit was run later"
        assert set(runs) == set(self.accepted), "runs no submit was told about"


async def wait_until_done(url: str) -> None:
    async def all_finished() -> bool:
        return await asyncio.to_thread(unfinished, url) == 0

    await until(all_finished, timeout=30)


async def ledger_has(ledger: str, event: str, keys: set[str]) -> None:
    async def seen() -> bool:
        entries = await asyncio.to_thread(read_ledger, ledger)
        return keys <= {key for e, key, _ in entries if e == event}

    await until(seen, timeout=20)
