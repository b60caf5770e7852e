"""pydase's services under `taskloom serve`, each command a real subprocess on one SQLite
file: the guide's `SensorService` and `AdvancedTaskService` as written (import and base
class changed), and live attributes set from the CLI, the API and the client while the
loops run: the loop's pace, measured from the times of the lines it logs, changes within
one period, without a restart, and the value is kept across a restart of the server."""

from __future__ import annotations

import itertools
import json
import re
import signal
import statistics
import subprocess
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from test_server import Served

import taskloom
from support import load_helper, wait_until
from taskloom.store import ServiceLogLine, Store, open_store

if TYPE_CHECKING:  # the fixture's class; conftest modules are not imported by name
    from conftest import Cli

pytestmark = pytest.mark.timeout(90)

guide = load_helper("pydase_guide")

SENSOR = "SensorService.read_sensor_data"
#: How late past the old period the loop may read the new value on a busy machine.
SLACK = 0.25


def serving(process: subprocess.Popen[str]) -> Served:
    """A `taskloom serve` process and its URL, with the longer waits of a loaded machine."""
    return Served(process, timeout=30)


def readings(store: Store, since: float) -> list[ServiceLogLine]:
    """The readings the sensor loop logged from `since` on, oldest first."""
    lines = store.get_service_logs(SENSOR, limit=1000)
    while len(lines) % 1000 == 0 and lines:
        more = store.get_service_logs(SENSOR, after_id=lines[-1].id or 0, limit=1000)
        if not more:
            break
        lines += more
    return [line for line in lines if line.created_at >= since and "reading" in line.message]


def paced(
    store: Store, *, since: float, hz: float, old_period: float, done: float | None = None
) -> list[float]:
    """Wait until the loop logged six readings at `hz` after `since` (just before the
    change was asked for); check the first came within one old period of `done` (when the
    change was made: the command or the request returned); return the intervals."""
    mark = f"at {hz} Hz"

    def six() -> list[ServiceLogLine] | None:
        lines = [line for line in readings(store, since) if line.message.endswith(mark)]
        return lines[:6] if len(lines) >= 6 else None

    lines = wait_until(six, 20, what=f"six readings at {hz} Hz")
    if done is not None:
        late = lines[0].created_at - done
        assert late <= old_period + SLACK, (
            f"the loop read the new frequency {late:.3f} s after the change was made; "
            f"one period was {old_period} s"
        )
    intervals = [b.created_at - a.created_at for a, b in itertools.pairwise(lines)]
    # asyncio.sleep(1 / hz) per turn: never sooner, and late only by the machine's load.
    assert min(intervals) >= 0.9 / hz, intervals
    assert statistics.median(intervals) <= 1 / hz + 0.1, intervals
    return intervals


@pytest.fixture
def sensor_cli(cli: Cli) -> Cli:
    guide.write(cli.cwd, "sensor", guide.SENSOR_SERVICE)
    guide.write(cli.cwd, "advanced", guide.ADVANCED_TASK_SERVICE)
    guide.write(cli.cwd, "paced", guide.PACED_SENSOR_SERVICE)
    return cli


def test_the_guides_services_run_as_written_under_taskloom_serve(sensor_cli: Cli) -> None:
    cli = sensor_cli
    served = serving(cli.start("serve", "sensor.py", "advanced.py"))
    store = open_store(cli.database_url)
    try:

        def restarted_twice() -> Any:
            record = store.get_service("AdvancedTaskService.critical_task")
            return record if record is not None and record.restarts >= 2 else None

        record = wait_until(restarted_twice, 20, what="two restarts of critical_task")
        # restart_sec=2.0: the restarts are two seconds apart (pydase's options, as set).
        gap = record.restart_times[1] - record.restart_times[0]
        assert 1.9 <= gap <= 2.0 + SLACK, record.restart_times
        assert record.last_error is not None
        assert record.last_error.message == "Critical failure"
        sensor = store.get_service(SENSOR)
        assert sensor is not None
        assert sensor.state == "running"
        assert served.process.poll() is None  # restarting for ever, never exiting

        shown = cli.json("service", "get", "SensorService", "--json")
        assert shown == {
            "service": "SensorService",
            "values": {"readout_frequency": 1.0},
            "updated": {},
        }
        table = cli("service", "get", "SensorService")
        assert table.returncode == 0, table.stderr
        assert re.search(r"readout_frequency\s+1\.0\s+default", table.stdout), table.stdout
        listed = {r["name"]: r for r in cli.json("services", "--json")}
        assert set(listed) == {SENSOR, "AdvancedTaskService.critical_task"}

        # `get --watch` prints each change as it is saved, until Ctrl-C.
        watcher = cli.start("service", "get", "SensorService", "--watch")
        assert watcher.stdout is not None
        header = watcher.stdout.readline()  # the table, then one line a change
        assert header.split() == ["attribute", "value", "set", "by", "at"]
        assert "readout_frequency" in watcher.stdout.readline()
        changed = cli("service", "set", "SensorService", "readout_frequency=3")
        assert changed.returncode == 0, changed.stderr
        line = watcher.stdout.readline()
        assert re.fullmatch(r"\S+ \S+  readout_frequency = 3\.0  \(cli(:\S+)?\)\n", line), line
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(timeout=20) == 0
    finally:
        store.close()
    code, err = served.stop(timeout=30)
    assert code == 0, err


def test_the_frequency_set_from_the_cli_the_api_and_the_client_paces_the_running_loop(
    sensor_cli: Cli,
) -> None:
    cli = sensor_cli
    served = serving(cli.start("serve", "paced.py"))
    store = open_store(cli.database_url)
    try:
        paced(store, since=0.0, hz=5.0, old_period=0.0)

        # From the CLI: the command returns once the serving process set the value.
        before = time.time()
        changed = cli("service", "set", "SensorService", "readout_frequency=20")
        assert changed.returncode == 0, changed.stderr
        assert changed.stdout == "SensorService.readout_frequency = 20.0\n"
        paced(store, since=before, hz=20.0, old_period=0.2, done=time.time())

        # From the API.
        before = time.time()
        answer = httpx.patch(
            f"{served.url}/api/services/SensorService/attributes",
            json={"readout_frequency": 10.0},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        paced(store, since=before, hz=10.0, old_period=0.05, done=time.time())

        # From the Python client, as pydase's client sets an attribute.
        before = time.time()
        with taskloom.Client(served.url) as client:
            client.service("SensorService").readout_frequency = 40.0
            made = time.time()
        paced(store, since=before, hz=40.0, old_period=0.1, done=made)

        # The other loop shares the instance: it saw every value.
        report = [line.message for line in store.get_service_logs("SensorService.report")]
        assert report == [f"frequency now {hz}" for hz in (5.0, 20.0, 10.0, 40.0)]
        record = store.get_service(SENSOR)
        assert record is not None
        assert record.starts == 1  # never restarted

        shown = cli.json("service", "get", "SensorService", "--json")
        assert shown["values"]["readout_frequency"] == 40.0
        assert shown["updated"]["readout_frequency"]["by"] == "http"
        by = [c.changed_by for c in store.get_service_attribute_changes("SensorService")]
        assert by[0] == "http"
        assert by[1] == "http"
        assert by[2].startswith("cli")
        # The loop's own counter is saved as the class's own change, not in the history.
        assert shown["updated"]["readings"]["by"] == "service"
    finally:
        store.close()
    code, err = served.stop(timeout=30)
    assert code == 0, err


def test_an_invalid_value_is_refused_naming_the_attribute_and_the_value_survives_a_restart(
    sensor_cli: Cli,
) -> None:
    cli = sensor_cli
    served = serving(cli.start("serve", "paced.py"))
    store = open_store(cli.database_url)
    try:
        wait_until(lambda: readings(store, 0.0), 20, what="a first reading")
        refused = cli("service", "set", "SensorService", "readout_frequency=fast")
        assert refused.returncode == 2
        assert refused.stderr == (
            "error: service 'SensorService': attribute 'readout_frequency': "
            "expected a number, got 'fast'\n"
        )
        unknown = cli("service", "set", "SensorService", "speed=3", "readout_frequency=8")
        assert unknown.returncode == 2
        assert "attribute 'speed': unknown attribute; attributes: readout_frequency, readings" in (
            unknown.stderr
        )
        nobody = cli("service", "set", "Boiler", "target=3")
        assert nobody.returncode == 2
        assert "unknown service class 'Boiler'" in nobody.stderr
        assert (
            cli.json("service", "get", "SensorService", "--json")["values"]["readout_frequency"]
            == 5.0
        )  # nothing was set
        missing = cli("service", "get", "Boiler")
        assert (missing.returncode, missing.stderr) == (
            2,
            "error: unknown service class 'Boiler'; service classes on this database: "
            "SensorService\n",
        )

        done = cli("service", "set", "SensorService", '{"readout_frequency": 25}', "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["values"]["readout_frequency"] == 25.0
    finally:
        store.close()
    code, err = served.stop(timeout=30)
    assert code == 0, err

    # A new serving process starts the instance with the values kept in the database: the
    # frequency set from the CLI, and the count of readings the loop itself kept.
    kept = cli.json("service", "get", "SensorService", "--json")["values"]
    assert kept["readout_frequency"] == 25.0
    assert kept["readings"] > 0
    started = time.time()
    again = serving(cli.start("serve", "paced.py"))
    store = open_store(cli.database_url)
    try:
        paced(store, since=started, hz=25.0, old_period=0.0)
        first = readings(store, started)[0]
        assert first.message == f"reading {kept['readings']} at 25.0 Hz"
    finally:
        store.close()
    code, err = again.stop(timeout=30)
    assert code == 0, err


def test_no_serving_process_means_exit_1_and_the_request_withdrawn(sensor_cli: Cli) -> None:
    cli = sensor_cli
    served = serving(cli.start("serve", "sensor.py"))
    code, err = served.stop(timeout=30)
    assert code == 0, err
    result = cli("service", "set", "SensorService", "readout_frequency=2", "--wait-timeout", "0.3")
    assert result.returncode == 1
    assert "no serving process handled the set of service 'SensorService'" in result.stderr
    store = open_store(cli.database_url)
    try:
        assert store.pending_service_requests() == []
        [record] = store.get_service_attributes("SensorService")
        assert (record.value, record.updated_by) == (1.0, None)
    finally:
        store.close()
