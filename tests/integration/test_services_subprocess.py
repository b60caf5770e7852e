"""A serving process whose `exit_on_failure` service fails for good exits non-zero."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import taskloom
from support import WAIT
from taskloom.services import EXIT_SERVICE_FAILED

#: The folder that holds the `taskloom` package, for the Python of the child process.
PACKAGE_ROOT = str(Path(taskloom.__file__).resolve().parents[1])

SCRIPT = textwrap.dedent(
    """
    import asyncio
    import sys

    from taskloom.services import Supervisor, service


    @service(
        autostart=True,
        restart_sec=0.01,
        start_limit_interval_sec=5.0,
        start_limit_burst=3,
        exit_on_failure=True,
    )
    async def crashes() -> None:
        raise RuntimeError("device gone")


    async def serve() -> int:
        async with Supervisor([crashes]) as supervisor:
            await supervisor.start_autostart()
            code = await supervisor.wait_exit()
            status = supervisor.status("crashes")
            print(status.state, status.starts, status.restarts)
            return code


    sys.exit(asyncio.run(serve()))
    """
)


def test_the_serving_process_exits_non_zero_when_a_service_fails_for_good(
    tmp_path: Path,
) -> None:
    script = tmp_path / "serve.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=WAIT * 3,
        env={**os.environ, "PYTHONPATH": PACKAGE_ROOT},
        check=False,
    )
    assert done.returncode == EXIT_SERVICE_FAILED != 0, done.stderr
    assert done.stdout.split() == ["failed", "4", "3"]
