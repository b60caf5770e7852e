"""`taskloom serve` on a SQLite file when the disk is full.

The serving process gets a file-size limit (RLIMIT_FSIZE, set from outside with
`prlimit`), so every write that would grow a file fails with EFBIG, as on a full disk;
lifting the limit frees the space. Meanwhile runs are executing and submits keep coming
over HTTP: a submit is refused with 503, a `Retry-After` and a clear error (or accepted
if its change could be stored); nothing refused is run later; every accepted run completes
once there is space again, none is left `running`, none runs twice.
"""

from __future__ import annotations

import resource
import tempfile
from pathlib import Path

import httpx
import pytest
from fault_processes import Server
from invariants import check_runs
from submitting import Submitter, ledger_has, wait_until_done

TASKS = Path(__file__).with_name("fault_tasks.py")


@pytest.mark.timeout(90)
async def test_a_full_disk_refuses_submits_and_loses_nothing() -> None:
    with tempfile.TemporaryDirectory(prefix="taskloom-full-") as name:
        await full_disk(Path(name))


async def full_disk(folder: Path) -> None:
    url = f"sqlite:///{folder / 'taskloom.db'}"
    ledger = str(folder / "ledger")
    server = Server(TASKS, url, folder)
    await server.start()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            submitter = Submitter(client, ledger)
            for index in range(5):
                assert await submitter.submit(f"before-{index}") == 201
            # These execute while the disk is full: their ends cannot be committed then.
            executing = {f"executing-{index}" for index in range(5)}
            for key in sorted(executing):
                assert await submitter.submit(key, seconds=0.5) == 201
            await ledger_has(ledger, "start", executing)

            # Disk full: no file of the server may grow past its first byte.
            resource.prlimit(server.pid, resource.RLIMIT_FSIZE, (1, hard))
            answers = [
                await submitter.submit(f"full-{index}", task)
                for index, task in enumerate(
                    ["recorded", "recorded_in_thread", "recorded_once", "recorded"]
                )
            ]
            await ledger_has(ledger, "end", executing)  # their ends are waiting to be stored
            answers.append(await submitter.submit("full-last"))
            assert 503 in answers, f"every submit was accepted with the disk full: {answers}"
            assert max(submitter.latencies) < 30, submitter.latencies

            # Space again.
            resource.prlimit(server.pid, resource.RLIMIT_FSIZE, (soft, hard))
            for index in range(5):
                await submitter.submit_retrying(f"after-{index}")
            await wait_until_done(url)
    finally:
        code = await server.stop()
    assert code == 0, server.stderr()
    checked = check_runs(url, ledger, submitter.accepted)
    submitter.check_refused_never_ran(ledger, checked.runs)
