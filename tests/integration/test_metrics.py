"""Prometheus metrics and the health probes, for real: `taskloom serve`'s HTTP server on a
socket in process (a SQLite file, and PostgreSQL for the run counters), `taskloom worker
--metrics-port` as a subprocess, the exposition read back with prometheus_client's parser
and checked by `promtool` (Debian's `prometheus` package)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psycopg
import pytest
import sqlalchemy
from alembic import command
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

import taskloom
from support import HELPERS, PACKAGE_ROOT, WAIT, load_helper, until, wait_until
from taskloom.observability.metrics import Metrics
from taskloom.runs import RunStatus
from taskloom.server.api.health import READY_RETRY_AFTER
from taskloom.server.app import create_app
from taskloom.server.http import HttpServer
from taskloom.server.settings import ServerSettings
from taskloom.server.tokens import create_token
from taskloom.store import Store, open_store
from taskloom.store.connect import create_store_engine, resolve_database_url
from taskloom.store.migrate import HEAD_REVISION, alembic_config, upgrade

pytestmark = pytest.mark.timeout(60)

tasks = load_helper("metrics_tasks")
TASKS_FILE = HELPERS / "metrics_tasks.py"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


# helpers ---------------------------------------------------------------------------------
def promtool() -> str:
    """The `promtool` binary; skipped when it is missing, a failure under `CI=true`."""
    found = shutil.which("promtool")
    if found is None:
        reason = "promtool is not installed (Debian's prometheus package)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI needs it: .ci/run installs it with apt-get")
        pytest.skip(f"{reason}; apt-get install prometheus to run this test")
    return found


def samples(text: str) -> Samples:
    """Every sample of an exposition, by name and labels (parsed by prometheus_client)."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = float(sample.value)
    return found


def by_labels(found: Samples, name: str, *keys: str) -> dict[tuple[str, ...], float]:
    """The samples of `name` by the values of `keys`, zeros left out."""
    values: dict[tuple[str, ...], float] = {}
    for (sample, labels), value in found.items():
        if sample == name and value:
            named = dict(labels)
            values[tuple(named[key] for key in keys)] = value
    return values


def _store(engine: taskloom.Engine) -> Store:
    assert engine.store is not None
    return engine.store


def _recorded(store: Store) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]:
    """What the database holds: finished runs by (task, status), attempts by (task,
    outcome)."""
    runs = store.list_runs(limit=1000)
    finished = Counter((run.task, run.status.value) for run in runs if run.is_finished)
    attempts = Counter(
        (run.task, attempt.status) for run in runs for attempt in store.get_attempts(run.id)
    )
    return finished, attempts


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[taskloom.Engine]:
    async with taskloom.Engine(
        database_url, tasks=[tasks], services=[tasks.idler], shutdown_grace=0.5
    ) as engine:
        yield engine


@pytest.fixture
async def server(engine: taskloom.Engine) -> AsyncIterator[HttpServer]:
    server = HttpServer(ServerSettings(port=0))
    await server.start(engine)
    yield server
    await server.stop()


@pytest.fixture
async def http(server: HttpServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as client:
        yield client


async def _run_all(http: httpx.AsyncClient, task: str, inputs: list[dict[str, int]]) -> None:
    made = [await http.post("/api/runs", json={"task": task, "inputs": i}) for i in inputs]
    assert all(response.status_code == 201 for response in made), made[0].text
    # Waited for all at once: a server that executes nothing learns of ends elsewhere on
    # its next look at the store, and one look answers every wait then pending.
    waits = (http.get(f"/api/runs/{response.json()['id']}/wait") for response in made)
    for ended in await asyncio.gather(*waits):
        assert ended.status_code == 200, ended.text


# the server's /metrics ---------------------------------------------------------------------
@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
async def test_the_counters_equal_the_database_and_promtool_accepts_the_exposition(
    http: httpx.AsyncClient, engine: taskloom.Engine
) -> None:
    await _run_all(http, "add", [{"a": n, "b": 1} for n in range(40)])
    await _run_all(http, "fail_twice", [{"n": n} for n in range(10)])

    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = samples(response.text)
    finished, attempts = await asyncio.to_thread(_recorded, _store(engine))
    assert sum(finished.values()) == 50
    assert by_labels(found, "taskloom_runs_total", "task", "status") == finished
    assert by_labels(found, "taskloom_attempts_total", "task", "outcome") == attempts
    assert attempts["fail_twice", "failed"] == 20  # two attempts a run: the retry counted
    durations = by_labels(found, "taskloom_run_duration_seconds_count", "task")
    assert durations == {("add",): 40, ("fail_twice",): 10}
    assert by_labels(found, "taskloom_workers", "state") == {("alive",): 1}
    assert found["taskloom_database_up", ()] == 1
    assert ("process_cpu_seconds_total", ()) in found  # the process collectors are there
    assert by_labels(found, "taskloom_http_requests_total", "route", "status") == {
        ("/api/runs", "201"): 50,
        ("/api/runs/{run_id}/wait", "200"): 50,
    }

    checked = await asyncio.to_thread(
        subprocess.run,
        [promtool(), "check", "metrics"],
        input=response.text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "", checked.stdout  # no lint problem either


@pytest.mark.timeout(120)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_label_sets_stay_bounded_whatever_paths_are_asked(
    http: httpx.AsyncClient,
) -> None:
    await _run_all(http, "add", [{"a": 1, "b": 2}])
    before = samples((await http.get("/metrics")).text)
    paths = [f"/api/runs/{uuid.uuid4()}" for _ in range(300)]
    paths += [f"/api/no-such-{n}" if n % 2 else f"/no/such/file-{n}.js" for n in range(300)]
    for start in range(0, len(paths), 50):
        answers = await asyncio.gather(*(http.get(path) for path in paths[start : start + 50]))
        assert {answer.status_code for answer in answers} == {404}
    after = samples((await http.get("/metrics")).text)

    routes = {
        dict(labels)["route"] for name, labels in after if name == "taskloom_http_requests_total"
    }
    assert routes == {
        "/api/runs",
        "/api/runs/{run_id}/wait",
        "/api/runs/{run_id}",
        "/metrics",
        "unmatched",
        "dashboard",
    }
    requests = by_labels(after, "taskloom_http_requests_total", "route", "status")
    assert requests["/api/runs/{run_id}", "404"] == 300
    assert requests["unmatched", "404"] == 150
    assert requests["dashboard", "404"] == 150
    # 600 distinct paths later, only the series of the three routes they reached are new.
    taskloom_series = {key for key in after if key[0].startswith("taskloom_")}
    old_series = {key for key in before if key[0].startswith("taskloom_")}
    new_routes = {dict(labels).get("route") for _name, labels in taskloom_series - old_series}
    assert new_routes <= {"/api/runs/{run_id}", "unmatched", "dashboard", "/metrics"}
    # Each new route has the series of one route with one status: its counter and histogram.
    per_route = sum(1 for _name, labels in old_series if ("route", "/api/runs") in labels)
    assert len(taskloom_series - old_series) == len(new_routes) * per_route


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_metrics_need_a_viewer_token_and_pass_the_host_check(
    engine: taskloom.Engine,
) -> None:
    secret, _record = create_token(_store(engine), "viewer")
    server = HttpServer(ServerSettings(port=0))
    await server.start(engine)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
            assert (await http.get("/metrics")).status_code == 401
            wrong = {"Authorization": "Bearer not-a-token"}
            assert (await http.get("/metrics", headers=wrong)).status_code == 401
            bearer = {"Authorization": f"Bearer {secret}"}
            answered = await http.get("/metrics", headers=bearer)
            assert answered.status_code == 200
            assert "taskloom_workers" in answered.text
            foreign = {**bearer, "Host": "evil.example"}
            assert (await http.get("/metrics", headers=foreign)).status_code == 421
            # The probes need no token.
            assert (await http.get("/api/health")).status_code == 200
            assert (await http.get("/api/ready")).status_code == 200
    finally:
        await server.stop()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_gauges_read_the_database_services_and_stages(
    http: httpx.AsyncClient, engine: taskloom.Engine
) -> None:
    napping = await http.post("/api/runs", json={"task": "nap", "inputs": {"seconds": 30}})
    run_id = napping.json()["id"]

    async def running() -> bool:
        return (await engine.get_run(run_id)).status is RunStatus.RUNNING

    await until(running)
    assert (await http.post("/api/services/idler/start", json={})).status_code == 200
    stage = {"task": "double", "inputs": {"value": "numbers"}, "outputs": ["doubled"]}
    pipeline = {"name": "copy", "stages": [stage]}
    deployed = await http.post("/api/pipelines", json={"pipeline": pipeline})
    assert deployed.status_code == 201, deployed.text
    for value in (1, 2, 3):
        published = await http.post("/api/pipelines/copy/topics/numbers", json={"value": value})
        assert published.status_code == 202, published.text

    async def scraped() -> Samples:
        return samples((await http.get("/metrics")).text)

    async def stage_done() -> bool:
        found = await scraped()
        out = by_labels(found, "taskloom_stage_messages_total", "deployment", "stage", "direction")
        return out.get(("copy", "double", "out")) == 3

    await until(stage_done)
    found = await scraped()
    assert by_labels(found, "taskloom_runs_running", "task") == {("nap",): 1}
    states = by_labels(found, "taskloom_services", "service", "state")
    assert states == {("idler", "running"): 1}
    assert ("taskloom_services", (("service", "idler"), ("state", "stopped"))) in found
    assert found["taskloom_service_restarts_total", (("service", "idler"),)] == 0
    stages = by_labels(found, "taskloom_stage_messages_total", "deployment", "stage", "direction")
    assert stages[("copy", "double", "in")] == 3
    await http.post(f"/api/runs/{run_id}/cancel")
    await http.post("/api/pipelines/copy/stop")


async def test_the_pending_gauge_is_cached_and_one_read_serves_a_burst(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gauges.db'}"
    async with taskloom.Engine(url, tasks=[tasks], worker=False) as engine:
        cached = Metrics(cache_seconds=3600)
        cached.watch(engine)
        fresh = Metrics(cache_seconds=0)
        fresh.watch(engine)
        for n in range(5):
            await engine.submit("add", {"a": n, "b": 0})

        def pending(metrics: Metrics) -> dict[tuple[str, ...], float]:
            text = metrics.exposition()[0].decode()
            return by_labels(samples(text), "taskloom_runs_pending", "queue")

        statements: list[str] = []
        database = _store(engine)._engine  # type: ignore[attr-defined]

        def counted(_conn: object, _cursor: object, statement: str, *_: object) -> None:
            if "count(*)" in statement:
                statements.append(statement)

        sqlalchemy.event.listen(database, "before_cursor_execute", counted)
        try:
            fresh.refresh()
            one_read = len(statements)
            assert one_read > 0
            statements.clear()
            threads = [threading.Thread(target=cached.refresh) for _ in range(20)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=WAIT)
            # The 20 refreshes of the burst made the queries of one read, and the scrape
            # after them none.
            assert len(statements) == one_read
            assert pending(cached) == {("default",): 5}
            assert len(statements) == one_read
        finally:
            sqlalchemy.event.remove(database, "before_cursor_execute", counted)
        await engine.submit("add", {"a": 9, "b": 0})
        assert pending(cached) == {("default",): 5}  # within its cache time
        assert pending(fresh) == {("default",): 6}
        cached.close()
        fresh.close()


async def test_a_run_cancelled_before_it_ran_ends_no_attempt(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cancel.db'}"
    async with taskloom.Engine(url, tasks=[tasks], concurrency=1, cancel_grace=0.5) as engine:
        metrics = Metrics()
        metrics.watch(engine)
        executing = await engine.submit("nap", {"seconds": 30})
        waiting = await engine.submit("nap", {"seconds": 30})

        async def running() -> bool:
            return (await engine.get_run(executing.id)).status is RunStatus.RUNNING

        await until(running)
        assert (await engine.get_run(waiting.id)).status is RunStatus.PENDING
        await engine.cancel(waiting.id)
        await engine.cancel(executing.id)
        for run_id in (executing.id, waiting.id):
            assert (await engine.wait(run_id)).status is RunStatus.CANCELLED
        found = samples(metrics.exposition()[0].decode())
        finished, attempts = await asyncio.to_thread(_recorded, _store(engine))
        metrics.close()
    assert finished == {("nap", "cancelled"): 2}
    assert by_labels(found, "taskloom_runs_total", "task", "status") == finished
    assert attempts == {("nap", "cancelled"): 1}
    assert by_labels(found, "taskloom_attempts_total", "task", "outcome") == attempts
    # Only the run that started has a duration.
    assert by_labels(found, "taskloom_run_duration_seconds_count", "task") == {("nap",): 1}


# readiness -----------------------------------------------------------------------------------
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_ready_is_503_while_the_schema_is_behind(
    http: httpx.AsyncClient, database_url: str
) -> None:
    ready = await http.get("/api/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "schema_revision": HEAD_REVISION}

    previous = f"{int(HEAD_REVISION) - 1:04d}"
    database = create_store_engine(resolve_database_url(database_url))
    try:
        with database.begin() as conn:
            await asyncio.to_thread(command.downgrade, alembic_config(conn), previous)
    finally:
        database.dispose()
    behind = await http.get("/api/ready")
    assert behind.status_code == 503
    assert behind.headers["retry-after"] == str(READY_RETRY_AFTER)
    error = behind.json()["error"]
    assert (error["type"], error["reason"]) == ("NotReady", "schema")
    assert f"revision {previous}" in error["message"]
    assert "taskloom db upgrade" in error["message"]
    # Liveness is another question: the process still serves.
    assert (await http.get("/api/health")).status_code == 200

    await asyncio.to_thread(upgrade, database_url)
    assert (await http.get("/api/ready")).status_code == 200


def _allow_connections(url: str, *, allow: bool) -> None:
    """The database takes connections again, or stops taking them and ends every session
    on it (as when its server restarts)."""
    parsed = make_url(url)
    admin = parsed.set(drivername="postgresql", database="postgres")
    name = str(parsed.database)
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allow).lower()}')
        if not allow:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_ready_is_503_while_the_database_is_unreachable(
    http: httpx.AsyncClient, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert (await http.get("/api/ready")).status_code == 200
    await asyncio.to_thread(_allow_connections, database_url, allow=False)
    try:
        cut = await http.get("/api/ready")
        assert cut.status_code == 503
        assert cut.headers["retry-after"] == str(READY_RETRY_AFTER)
        error = cut.json()["error"]
        assert (error["type"], error["reason"]) == ("NotReady", "database")
        assert "127.0.0.1" not in error["message"]  # the driver's words go to the log only
        assert (await http.get("/api/health")).status_code == 200
        scraped = samples((await http.get("/metrics")).text)
        assert scraped["taskloom_database_up", ()] == 0
    finally:
        await asyncio.to_thread(_allow_connections, database_url, allow=True)

    async def ready_again() -> bool:
        return (await http.get("/api/ready")).status_code == 200

    await until(ready_again)


async def test_ready_is_503_once_the_engine_stops(tmp_path: Path) -> None:
    async with taskloom.Engine(f"sqlite:///{tmp_path / 'stop.db'}") as engine:
        app = create_app(engine)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
        stopped = await http.get("/api/ready")
    app.state.events.close()
    assert stopped.status_code == 503
    assert stopped.json()["error"]["reason"] == "engine"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_document_describes_ready_and_leaves_metrics_out(
    http: httpx.AsyncClient,
) -> None:
    document = (await http.get("/api/openapi.json")).json()
    assert "/metrics" not in document["paths"]
    ready = document["paths"]["/api/ready"]["get"]
    assert "security" not in ready
    refused = ready["responses"]["503"]
    assert refused["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorOut"
    }
    assert "Retry-After" in refused["headers"]
    answer = ready["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/ReadyOut"}


# taskloom worker --metrics-port --------------------------------------------------------------
def _start_worker(database: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "taskloom",
            "worker",
            str(TASKS_FILE),
            "--db",
            database,
            "--metrics-port",
            "0",
            "--shutdown-grace",
            "0.5",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": PACKAGE_ROOT},
    )


def _metrics_url(worker: subprocess.Popen[str]) -> str:
    """The URL the worker prints once it serves its metrics (its stderr read up to it)."""
    assert worker.stderr is not None
    for line in worker.stderr:
        found = re.search(r"metrics at (http://\S+)", line)
        if found:
            return found.group(1)
    raise AssertionError(f"the worker ended ({worker.wait()}) before serving its metrics")


def _port_is_free(url: str) -> bool:
    """Nothing listens on the port of `url`, and a new server may bind it (as a worker
    started again would, with SO_REUSEADDR like every HTTP server)."""
    port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _end(worker: subprocess.Popen[str]) -> None:
    if worker.poll() is None:
        worker.kill()
        worker.wait()
    if worker.stderr is not None:
        worker.stderr.close()


@pytest.fixture
def worker_database(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'worker.db'}"


@pytest.mark.timeout(120)
async def test_a_worker_serves_the_metrics_of_the_runs_it_executed(
    worker_database: str,
) -> None:
    worker = _start_worker(worker_database)
    try:
        url = await asyncio.to_thread(_metrics_url, worker)
        # A server that executes nothing hears of the worker's runs through the store:
        # its own counters must not count them as well.
        async with taskloom.Engine(worker_database, tasks=[tasks], worker=False) as engine:
            app = create_app(engine)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as api:
                await _run_all(api, "add", [{"a": n, "b": n} for n in range(12)])
                await _run_all(api, "fail_twice", [{"n": 1}, {"n": 2}])
                server_side = samples((await api.get("/metrics")).text)
            app.state.events.close()
            finished, attempts = await asyncio.to_thread(_recorded, _store(engine))
        async with httpx.AsyncClient(timeout=WAIT) as http:
            worker_side = samples((await http.get(url)).text)
        assert by_labels(worker_side, "taskloom_runs_total", "task", "status") == finished
        assert by_labels(worker_side, "taskloom_attempts_total", "task", "outcome") == attempts
        assert by_labels(server_side, "taskloom_runs_total", "task", "status") == {}
        assert by_labels(server_side, "taskloom_attempts_total", "task", "outcome") == {}
        assert ("process_resident_memory_bytes", ()) in worker_side

        worker.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, WAIT) == 0
        assert _port_is_free(url)
    finally:
        _end(worker)


@pytest.mark.timeout(120)
def test_a_killed_worker_frees_its_metrics_port(worker_database: str) -> None:
    worker = _start_worker(worker_database)
    try:
        url = _metrics_url(worker)
        assert httpx.get(url, timeout=WAIT).status_code == 200
        assert not _port_is_free(url)
        worker.kill()
        worker.wait(timeout=WAIT)
        wait_until(lambda: _port_is_free(url), what="the metrics port freed")
    finally:
        _end(worker)


@pytest.mark.timeout(120)
def test_a_metrics_port_in_use_stops_the_worker_before_it_starts(
    worker_database: str,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "taskloom",
                "worker",
                str(TASKS_FILE),
                "--db",
                worker_database,
                "--metrics-port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=90,
            env={**os.environ, "PYTHONPATH": PACKAGE_ROOT},
            check=False,
        )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"error: cannot listen on 127.0.0.1:{port} for metrics: Address already in use"
    ]
    store = open_store(worker_database)
    try:
        assert store.list_workers() == []  # its engine never started
    finally:
        store.close()
