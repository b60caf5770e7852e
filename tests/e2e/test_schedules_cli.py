"""`taskloom schedules`, `taskloom schedule ...` and `taskloom run --at/--in --no-wait` as
real subprocesses on a SQLite file."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import Cli

from taskloom.store import open_store

pytestmark = pytest.mark.timeout(120)

TASKS = """
import taskloom


NIGHTLY = taskloom.Cron("30 2 * * *", timezone="Europe/Zurich", inputs={"full": True})


@taskloom.task(schedule=NIGHTLY)
def nightly_backup(full: bool = False) -> str:
    return "backed up"


@taskloom.task
def report(region: str, depth: int = 1) -> str:
    return f"{region}:{depth}"
"""


@pytest.fixture
def tasks(cli: Cli) -> Path:
    path = cli.cwd / "tasks.py"
    path.write_text(TASKS, encoding="utf-8")
    return path


def _iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_task_option_schedule_is_listed_before_anything_serves_it(cli: Cli, tasks: Path) -> None:
    listed = cli.json("schedules", "tasks.py", "--json")
    assert [(s["name"], s["source"], s["recorded"]) for s in listed] == [
        ("nightly_backup", "task", False)
    ]
    assert listed[0]["timezone"] == "Europe/Zurich"
    table = cli("schedules", "tasks.py")
    assert table.returncode == 0, table.stderr
    assert "nightly_backup" in table.stdout
    assert "not recorded" in table.stdout
    fires = cli("schedule", "next", "nightly_backup", "tasks.py", "--count", "5")
    assert fires.returncode == 0, fires.stderr
    lines = fires.stdout.splitlines()
    assert len(lines) == 5
    for line in lines:  # 02:30 in Zurich: 01:30 or 00:30 UTC, a day apart
        assert line.endswith("Z")
        assert _iso(line).minute == 30


def test_a_schedule_is_added_paused_resumed_triggered_and_removed(cli: Cli, tasks: Path) -> None:
    added = cli.json(
        "schedule", "add", "hourly-report", "report", "tasks.py", "--cron", "0 * * * *",
        "--timezone", "America/New_York", "--input", "region=us", "--json",
    )  # fmt: skip
    assert (added["task"], added["inputs"], added["source"]) == (
        "report",
        {"region": "us"},
        "stored",
    )
    assert _iso(added["next_fire"]).minute == 0
    listed = cli.json("schedules", "--json")
    assert [s["name"] for s in listed] == ["hourly-report"]

    paused = cli("schedule", "pause", "hourly-report")
    assert paused.returncode == 0, paused.stderr
    assert cli("schedule", "next", "hourly-report").stdout == ""  # none while paused
    assert cli.json("schedules", "--json")[0]["paused"] is True
    assert cli("schedule", "resume", "hourly-report").returncode == 0
    assert cli.json("schedules", "--json")[0]["paused"] is False

    triggered = cli("schedule", "trigger", "hourly-report")
    assert triggered.returncode == 0, triggered.stderr
    assert triggered.stdout.strip().startswith("schedule:hourly-report@manual:")
    store = open_store(cli.database_url)
    try:
        record = store.get_schedule("hourly-report")
        assert record is not None
        assert record.trigger_requested_at is not None
    finally:
        store.close()
    removed = cli("schedule", "remove", "hourly-report")
    assert removed.returncode == 0, removed.stderr
    assert cli.json("schedules", "--json") == []
    gone = cli("schedule", "pause", "hourly-report")
    assert gone.returncode == 2
    assert "no schedule is named 'hourly-report'" in gone.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--cron", "0 25 * * *"], "cron: '0 25 * * *' is not a valid cron expression"),
        (["--cron", "0 * * * *", "--timezone", "Mars/Olympus"], "timezone: unknown time zone"),
        (["--interval", "0"], "interval: 0 s is not a period"),
        (["--interval", "soon"], "interval: 'soon' is not a duration"),
        (["--cron", "0 * * * *", "--catch-up", "most"], "catch_up: 'most' is not one of"),
        (["--cron", "0 * * * *", "--start", "tomorrow"], "start: 'tomorrow' is not an ISO 8601"),
    ],
)
def test_a_bad_schedule_exits_2_naming_the_field_and_records_nothing(
    cli: Cli, tasks: Path, args: list[str], words: str
) -> None:
    result = cli("schedule", "add", "bad", "report", "tasks.py", "--input", "region=us", *args)
    assert result.returncode == 2, result.stderr
    assert words in result.stderr
    assert cli.json("schedules", "--json") == []


def test_a_schedule_with_bad_inputs_exits_2_naming_the_task_and_field(
    cli: Cli, tasks: Path
) -> None:
    result = cli(
        "schedule", "add", "r", "report", "tasks.py", "--interval", "1m", "--input", "depth=deep"
    )
    assert result.returncode == 2
    assert "'report'" in result.stderr
    assert "region" in result.stderr


def test_run_in_no_wait_records_a_pending_run_due_later(cli: Cli, tasks: Path) -> None:
    before = datetime.now(UTC).timestamp()
    result = cli("run", "tasks.py:report", "region=eu", "--in", "10m", "--no-wait", "--json")
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["status"] == "pending"
    assert run["worker_id"] is None  # for any worker
    assert run["scheduled_at"] - before == pytest.approx(600, abs=5)
    at = cli(
        "run", "tasks.py:report", "region=eu", "--at", "2030-01-31T02:30:00+01:00", "--no-wait"
    )
    assert at.returncode == 0, at.stderr
    store = open_store(cli.database_url)
    try:
        recorded = store.get_run(at.stdout.strip())
        assert recorded is not None
        assert recorded.scheduled_at == datetime(2030, 1, 31, 1, 30, tzinfo=UTC).timestamp()
    finally:
        store.close()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--in", "soon"], "--in: 'soon' is not a duration"),
        (["--at", "next tuesday"], "run_at"),
        (["--at", "2030-01-01T00:00:00Z", "--in", "5m"], "give --at or --in, not both"),
    ],
)
def test_a_bad_due_time_exits_2_and_records_nothing(
    cli: Cli, tasks: Path, args: list[str], words: str
) -> None:
    result = cli("run", "tasks.py:report", "region=eu", "--no-wait", *args)
    assert result.returncode == 2, result.stderr
    assert words in result.stderr
    assert "'report'" in result.stderr
    assert not (cli.cwd / "taskloom.db").exists()


def test_a_webhook_is_created_with_a_secret_listed_and_removed(cli: Cli, tasks: Path) -> None:
    created = cli("hook", "create", "ship", "report", "tasks.py")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert len(secret) == 64
    int(secret, 16)  # hex
    assert "POST /api/hooks/ship" in created.stderr
    listed = cli.json("hooks", "--json")
    assert [(h["name"], h["task"]) for h in listed] == [("ship", "report")]
    assert secret not in cli("hooks").stdout
    again = cli("hook", "create", "ship", "report", "tasks.py")
    assert again.returncode == 2
    assert "a webhook named 'ship' exists" in again.stderr
    assert cli("hook", "remove", "ship").returncode == 0
    assert cli.json("hooks", "--json") == []
    gone = cli("hook", "remove", "ship")
    assert gone.returncode == 2
    assert "no webhook is named 'ship'" in gone.stderr
