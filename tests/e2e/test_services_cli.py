"""`taskloom serve` and the service commands, each a real subprocess on one SQLite file."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from support import wait_until
from taskloom.store import ServiceRecord, open_store

REPO = Path(__file__).resolve().parents[2]

if TYPE_CHECKING:  # the fixture's class; conftest modules are not imported by name
    from conftest import Cli

pytestmark = pytest.mark.timeout(60)

SERVICES = "examples/services.py"

#: A service that fails at once, with small restart numbers, and one that runs until stopped.
FAILING = """
import taskloom


@taskloom.service(autostart=True, restart_sec=0.05, start_limit_interval_sec=30.0,
                  start_limit_burst=2, exit_on_failure=True)
async def broken() -> None:
    raise RuntimeError("sensor unplugged")


@taskloom.service(autostart=True)
async def steady(context: taskloom.Context) -> None:
    while True:
        await context.sleep(0.05)
"""


#: A service that never ends when stopped: serving must end anyway, in bounded time.
STUCK = """
import asyncio

import taskloom


@taskloom.service(autostart=True, stop_timeout=0.3)
async def stubborn() -> None:
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            continue  # ignores every stop
"""


@pytest.fixture
def services_cli(cli: Cli) -> Cli:
    shutil.copy(REPO / SERVICES, cli.cwd / SERVICES)
    (cli.cwd / "failing.py").write_text(FAILING, encoding="utf-8")
    (cli.cwd / "stuck.py").write_text(STUCK, encoding="utf-8")
    return cli


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def wait_for_service(
    cli: Cli, name: str, state: str, *, starts: int = 0, timeout: float = 20
) -> dict[str, Any]:
    """Wait until the service is committed with `state` (and at least `starts` starts)."""
    deadline = time.monotonic() + timeout
    database = cli.cwd / "taskloom.db"
    wait_until(database.exists, timeout, what="the database")
    store = open_store(cli.database_url)
    seen: list[ServiceRecord | None] = [None]

    def reached() -> ServiceRecord | None:
        record = seen[0] = store.get_service(name)
        if record is not None and record.state == state and record.starts >= starts:
            return record
        return None

    def still() -> str:
        return f"{name} {state} (last seen: {'nothing' if seen[0] is None else seen[0].state})"

    try:
        record = wait_until(reached, max(0.0, deadline - time.monotonic()), what=still)
        return {"state": record.state, "starts": record.starts}
    finally:
        store.close()


def services_by_name(cli: Cli) -> dict[str, dict[str, Any]]:
    return {record["name"]: record for record in cli.json("services", "--json")}


def stop_serving(process: subprocess.Popen[str]) -> tuple[str, str]:
    process.send_signal(signal.SIGTERM)
    return process.communicate(timeout=20)


def test_serve_runs_the_autostart_service_and_the_cli_controls_it(services_cli: Cli) -> None:
    cli = services_cli
    serving = cli.start("serve", SERVICES)
    wait_for_service(cli, "read_sensor", "running", starts=1)

    listed = cli("services")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split()[1] for line in listed.stdout.splitlines()[1:]}
    assert rows == {"read_sensor": "running", "heartbeat": "stopped"}

    stopped = cli("service", "stop", "read_sensor")
    assert (stopped.returncode, stopped.stdout) == (0, "service 'read_sensor' is stopped\n")
    assert services_by_name(cli)["read_sensor"]["state"] == "stopped"

    started = cli("service", "start", "read_sensor", "--config", "period=0.05")
    assert (started.returncode, started.stdout) == (0, "service 'read_sensor' is running\n")
    restarted = cli(
        "service", "restart", "read_sensor", "--config", '{"channel": "b", "period": 0.05}'
    )
    assert restarted.returncode == 0, restarted.stderr
    assert restarted.stdout == "service 'read_sensor' is running\n"

    again = cli("service", "start", "read_sensor")
    assert again.returncode == 1
    assert error_lines(again.stderr) == [
        "error: service 'read_sensor' is running: stop it first, or use restart"
    ]

    sync = cli("service", "start", "heartbeat")
    assert (sync.returncode, sync.stdout) == (0, "service 'heartbeat' is running\n")

    status = cli.json("service", "status", "read_sensor", "--json")
    assert status["service"]["state"] == "running"
    assert status["service"]["starts"] == 3
    assert status["service"]["config"] == {"period": 0.05, "channel": "b"}
    assert [s["exit_reason"] for s in status["starts"]] == [None, "stopped", "stopped"]

    printed = [""]

    def third_start_logged() -> subprocess.CompletedProcess[str] | None:
        logs = cli("service", "logs", "read_sensor")
        assert logs.returncode == 0, logs.stderr
        printed[0] = logs.stdout
        return logs if "#3 " in logs.stdout and "channel b:" in logs.stdout else None

    # The service logs every 0.05 s; its lines reach the store in batches.
    logs = wait_until(
        third_start_logged, 20, interval=0, what=lambda: f"the third start's lines in {printed[0]}"
    )
    assert "#1 " in logs.stdout
    assert "channel a:" in logs.stdout

    out, err = stop_serving(serving)
    assert serving.returncode == 0, err
    assert "serving 2 service(s)" in out
    assert "taskloom.db" in out
    assert "Traceback" not in err

    # The history outlives the serving process.
    after = services_by_name(cli)
    assert {name: r["state"] for name, r in after.items()} == {
        "read_sensor": "stopped",
        "heartbeat": "stopped",
    }
    assert (after["read_sensor"]["starts"], after["heartbeat"]["starts"]) == (3, 1)
    text = cli("service", "status", "read_sensor")
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("read_sensor stopped\n")
    final = cli.json("service", "status", "read_sensor", "--json")
    assert [s["exit_reason"] for s in final["starts"]] == ["stopped"] * 3


def test_invalid_config_and_unknown_service_exit_2(services_cli: Cli) -> None:
    cli = services_cli
    serving = cli.start("serve", SERVICES)
    wait_for_service(cli, "read_sensor", "running", starts=1)
    assert cli("service", "stop", "read_sensor").returncode == 0

    invalid = cli("service", "start", "read_sensor", "--config", "period=soon")
    assert invalid.returncode == 2
    assert error_lines(invalid.stderr) == [
        "error: service 'read_sensor': config 'period': expected a number, got 'soon'"
    ]
    record = services_by_name(cli)["read_sensor"]
    assert (record["state"], record["starts"]) == ("stopped", 1)

    unknown = cli("service", "start", "nope")
    assert unknown.returncode == 2
    assert error_lines(unknown.stderr)[0].startswith("error: unknown service 'nope'")
    assert cli("service", "status", "nope").returncode == 2
    assert cli("service", "logs", "nope").returncode == 2

    _out, err = stop_serving(serving)
    assert serving.returncode == 0, err


def test_a_request_nobody_handles_is_withdrawn(services_cli: Cli) -> None:
    cli = services_cli
    missing = cli("service", "start", "read_sensor")
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr

    # A database with services, but no serving process on it now.
    serving = cli.start("serve", SERVICES)
    wait_for_service(cli, "read_sensor", "running", starts=1)
    stop_serving(serving)
    result = cli("service", "start", "read_sensor", "--wait-timeout", "0.3")
    assert result.returncode == 1
    (line,) = error_lines(result.stderr)
    assert "no serving process handled the start of service 'read_sensor'" in line
    assert "withdrawn" in line
    store = open_store(cli.database_url)
    try:
        assert store.pending_service_requests() == []
    finally:
        store.close()


def test_serve_exits_non_zero_when_an_exit_on_failure_service_fails(services_cli: Cli) -> None:
    cli = services_cli
    serving = cli.start("serve", "failing.py")
    _out, err = serving.communicate(timeout=30)
    assert serving.returncode == 1, err
    assert error_lines(err) == [
        "error: service 'broken' failed for good and has exit_on_failure set: "
        "the other services were stopped"
    ]
    after = services_by_name(cli)
    assert after["broken"]["state"] == "failed"
    assert (after["broken"]["starts"], after["broken"]["restarts"]) == (3, 2)
    assert after["broken"]["last_error"]["message"] == "sensor unplugged"
    assert after["steady"]["state"] == "stopped"


def test_serve_needs_a_target_that_defines_something(services_cli: Cli) -> None:
    cli = services_cli
    (cli.cwd / "empty.py").write_text("VALUE = 1\n", encoding="utf-8")
    empty = cli("serve", "empty.py")
    assert empty.returncode == 2
    assert error_lines(empty.stderr) == [
        "error: 'empty.py' defines no tasks, services or pipelines"
    ]


def test_sigterm_ends_serving_in_bounded_time_even_when_a_loop_ignores_the_stop(
    services_cli: Cli,
) -> None:
    cli = services_cli
    serving = cli.start("serve", "stuck.py")
    wait_for_service(cli, "stubborn", "running", starts=1)
    began = time.monotonic()
    _out, err = stop_serving(serving)
    elapsed = time.monotonic() - began
    assert serving.returncode == 0, err
    assert elapsed < 10, f"serving took {elapsed:.1f} s to end"
    assert "service 'stubborn' ignored the stop for 0.3s; giving up on it" in err
    assert "Task was destroyed" not in err
    status = cli.json("service", "status", "stubborn", "--json")
    assert status["service"]["state"] == "stopped"
    assert status["service"]["stop_timed_out"] is True
    assert [s["exit_reason"] for s in status["starts"]] == ["stopped"]


def test_logs_follow_prints_new_lines_until_ctrl_c(services_cli: Cli) -> None:
    cli = services_cli
    serving = cli.start("serve", SERVICES)
    wait_for_service(cli, "read_sensor", "running", starts=1)
    assert cli("service", "restart", "read_sensor", "--config", "period=0.05").returncode == 0

    follower = cli.start("service", "logs", "read_sensor", "--follow")
    assert follower.stdout is not None
    seen: list[str] = []
    while len([line for line in seen if line.startswith("#2 ")]) < 5:
        line = follower.stdout.readline()  # the test's timeout bounds a follower that stalls
        assert line, f"the follower ended early: {follower.stderr and follower.stderr.read()}"
        seen.append(line)
    assert all("channel a:" in line for line in seen)
    follower.send_signal(signal.SIGINT)
    _rest, err = follower.communicate(timeout=20)
    assert follower.returncode == 0, err

    _out, err = stop_serving(serving)
    assert serving.returncode == 0, err
