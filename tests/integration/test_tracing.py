"""OpenTelemetry traces: an HTTP submit, its attempt executed by a `taskloom worker` in
another process, and a workflow's steps form one trace with the right parents, on SQLite
and PostgreSQL; failed attempts record their error; the SDK is set up from `OTEL_*` (and
a provider the program set is left alone); without OpenTelemetry the engine imports none
of it.

This process's spans are recorded with the SDK's `InMemorySpanExporter`; the worker's
come over OTLP/HTTP, sent by the SDK's exporter, to a receiver in this process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import taskloom
from otlp_support import OtlpReceiver, SeenSpan, recording, seen
from support import HELPERS, load_helper
from taskloom.observability import tracing
from taskloom.server.http import HttpServer
from taskloom.server.settings import ServerSettings
from taskloom.store import open_store

pytestmark = pytest.mark.timeout(60)

traced_tasks = load_helper("traced_tasks")
TASKS = HELPERS / "traced_tasks.py"
PACKAGE_ROOT = str(Path(taskloom.__file__).resolve().parents[1])

WORKFLOW = {
    "name": "traced",
    "steps": {
        "first": {"task": "add", "inputs": {"a": 2, "b": 3}},
        "second": {"task": "double", "inputs": {"n": "${steps.first.result}"}},
    },
}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.pop("TASKLOOM_DATABASE_URL", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    env.update(NO_COLOR="1", **extra)
    return env


class TracedWorker:
    """A `taskloom worker` sending its spans to `endpoint` over OTLP/HTTP; stderr read by
    a thread of its own (JSON lines)."""

    def __init__(self, url: str, endpoint: str) -> None:
        env = _env(
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
            OTEL_SERVICE_NAME="traced-worker",
            OTEL_BSP_SCHEDULE_DELAY="50",
        )
        command = [sys.executable, "-m", "taskloom", "worker", str(TASKS), "--db", url]
        self.process = subprocess.Popen(
            [*command, "--log-format", "json"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        with self.process.stderr:
            for line in self.process.stderr:
                self.lines.append(line)
                if " ready: " in line:
                    self.ready.set()
        self.ready.set()

    def stop(self) -> int:
        """SIGTERM, then the exit code: by then its spans are exported."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        finally:
            self._reader.join(timeout=5)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    found = OtlpReceiver()
    yield found
    found.close()


@pytest.fixture
def worker(database_url: str, receiver: OtlpReceiver) -> Iterator[TracedWorker]:
    # The schema first: the worker and the engine must not both create it at once.
    open_store(database_url).close()
    started = TracedWorker(database_url, receiver.endpoint)
    try:
        assert started.ready.wait(30), "the worker did not start"
        assert started.process.poll() is None, "".join(started.lines)
        yield started
    finally:
        if started.process.poll() is None:
            started.process.kill()
            started.process.wait()


def _one(spans: list[SeenSpan], name: str, **attributes: object) -> SeenSpan:
    found = [
        s
        for s in spans
        if s.name == name and all(s.attributes.get(k) == v for k, v in attributes.items())
    ]
    assert len(found) == 1, f"{name} {attributes}: {found}"
    return found[0]


async def test_an_http_submit_its_attempt_elsewhere_and_a_workflows_steps_are_one_trace(
    database_url: str, receiver: OtlpReceiver, worker: TracedWorker
) -> None:
    with recording() as exporter:
        # This engine executes nothing: every attempt is the worker's, in its process.
        async with taskloom.Engine(database_url, tasks=[traced_tasks], worker=False) as engine:
            server = HttpServer(ServerSettings(port=0))
            await server.start(engine)
            try:
                async with httpx.AsyncClient(base_url=f"{server.url}/api", timeout=30) as http:
                    answer = await http.post(
                        "/runs", json={"task": "add", "inputs": {"a": 1, "b": 2}}
                    )
                    assert answer.status_code == 201, answer.text
                    run_id = answer.json()["id"]
                    failing = await http.post(
                        "/runs", json={"task": "fails", "inputs": {"message": "no"}}
                    )
                    failed_id = failing.json()["id"]
                    answer = await http.post("/workflows", json={"workflow": WORKFLOW})
                    assert answer.status_code == 201, answer.text
                    workflow_id = answer.json()["id"]
                    for waited in (run_id, failed_id, workflow_id):
                        done = await http.get(f"/runs/{waited}/wait", params={"timeout": 30})
                        assert done.json()["status"] in ("completed", "failed"), done.text
                    shown = (await http.get(f"/workflows/{workflow_id}")).json()["steps"]
                    steps = {step["name"]: step["run_ids"] for step in shown}
            finally:
                await server.stop()
            stored = await engine.get_run(run_id)
        local = [seen(span) for span in exporter.get_finished_spans()]
    assert worker.stop() == 0, "".join(worker.lines)
    remote = receiver.spans()
    assert {s.service for s in remote} == {"traced-worker"}

    # The run: HTTP request -> submit (here) -> attempt (in the worker).
    posts = [s for s in local if s.name == "POST /api/runs"]
    assert len(posts) == 2
    submit = _one(local, "taskloom.submit", **{tracing.RUN_ID: run_id})
    request = next(s for s in posts if s.span_id == submit.parent_id)
    assert request.parent_id is None
    assert submit.trace_id == request.trace_id
    assert submit.attributes[tracing.TASK] == "add"
    assert stored.trace_context is not None
    traceparent = stored.trace_context["traceparent"]
    assert traceparent.startswith(f"00-{submit.trace_id}-{submit.span_id}-")
    attempt = _one(remote, "taskloom.attempt", **{tracing.RUN_ID: run_id})
    assert (attempt.trace_id, attempt.parent_id) == (submit.trace_id, submit.span_id)
    assert attempt.attributes[tracing.TASK] == "add"
    assert attempt.attributes[tracing.ATTEMPT] == 1
    assert attempt.attributes[tracing.OUTCOME] == "completed"
    assert not attempt.error

    # A failing run: both attempts children of its submit, each with its error.
    failed_submit = _one(local, "taskloom.submit", **{tracing.RUN_ID: failed_id})
    tries = sorted(
        (s for s in remote if s.attributes.get(tracing.RUN_ID) == failed_id),
        key=lambda s: int(s.attributes[tracing.ATTEMPT]),
    )
    assert [s.attributes[tracing.ATTEMPT] for s in tries] == [1, 2]
    for attempt_span in tries:
        assert attempt_span.parent_id == failed_submit.span_id
        assert attempt_span.error
        assert attempt_span.exception_types == ("ValueError",)

    # The workflow: HTTP request -> its submit -> a span per step (here) -> the step run's
    # attempt (in the worker) -> the task's own span.
    workflow_submit = _one(local, "taskloom.submit", **{tracing.RUN_ID: workflow_id})
    workflow_request = _one(local, "POST /api/workflows")
    assert workflow_submit.parent_id == workflow_request.span_id
    trace_id = workflow_request.trace_id
    for name in ("first", "second"):
        step = _one(local, "taskloom.step", **{tracing.STEP: name})
        assert (step.trace_id, step.parent_id) == (trace_id, workflow_submit.span_id)
        assert step.attributes[tracing.RUN_ID] == workflow_id
        assert step.attributes[tracing.OUTCOME] == "completed"
        (step_run,) = steps[name]
        step_attempt = _one(remote, "taskloom.attempt", **{tracing.RUN_ID: step_run})
        assert (step_attempt.trace_id, step_attempt.parent_id) == (trace_id, step.span_id)
    own = _one(remote, "double.work")
    second_attempt = next(
        s for s in remote if s.span_id == own.parent_id and s.name == "taskloom.attempt"
    )
    assert second_attempt.attributes[tracing.TASK] == "double"

    # The worker's log lines are JSON, and the one logged inside the run carries its ids.
    records = [json.loads(line) for line in worker.lines]
    logged = [r for r in records if r.get("message") == "adding 1 and 2"]
    assert [(r["run_id"], r["trace_id"], r["span_id"]) for r in logged] == [
        (run_id, attempt.trace_id, attempt.span_id)
    ]


async def test_submit_many_gives_each_run_its_submit_and_attempt_spans(database_url: str) -> None:
    with recording() as exporter:
        async with taskloom.Engine(database_url, tasks=[traced_tasks]) as engine:
            runs = await engine.submit_many("double", [{"n": n} for n in range(3)])
            finished = await engine.wait_many([run.id for run in runs], timeout=20)
        spans = [seen(span) for span in exporter.get_finished_spans()]
    assert [run.result for run in finished] == [0, 2, 4]
    for run in runs:
        submit = _one(spans, "taskloom.submit", **{tracing.RUN_ID: run.id})
        attempt = _one(spans, "taskloom.attempt", **{tracing.RUN_ID: run.id})
        assert (attempt.trace_id, attempt.parent_id) == (submit.trace_id, submit.span_id)
        own = [s for s in spans if s.name == "double.work" and s.parent_id == attempt.span_id]
        assert len(own) == 1
    # Submitted outside any span: each run is a trace of its own.
    assert len({s.trace_id for s in spans if s.name == "taskloom.submit"}) == 3


async def test_a_submit_inside_a_span_is_its_child_and_the_context_is_stored(
    database_url: str,
) -> None:
    from opentelemetry import trace

    with recording() as exporter:
        async with taskloom.Engine(database_url, tasks=[traced_tasks]) as engine:
            with trace.get_tracer("test").start_as_current_span("caller"):
                run = await engine.submit("add", {"a": 2, "b": 2})
            await engine.wait(run.id, timeout=20)
            store = engine.store
            assert store is not None
            stored = store.get_run(run.id)
        spans = [seen(span) for span in exporter.get_finished_spans()]
    caller = _one(spans, "caller")
    submit = _one(spans, "taskloom.submit", **{tracing.RUN_ID: run.id})
    assert (submit.trace_id, submit.parent_id) == (caller.trace_id, caller.span_id)
    assert stored is not None
    assert stored.trace_context == run.trace_context
    assert stored.trace_context is not None
    assert stored.trace_context["traceparent"].split("-")[1:3] == [
        submit.trace_id,
        submit.span_id,
    ]


async def test_a_run_submitted_without_a_recording_provider_carries_no_context(
    database_url: str,
) -> None:
    # The SDK is installed here, but outside `recording()` the spans are the API's no-op
    # ones: nothing is recorded, no context is stored.
    async with taskloom.Engine(database_url, tasks=[traced_tasks]) as engine:
        run = await engine.run("add", {"a": 1, "b": 1})
    assert run.status == "completed"
    assert run.trace_context is None


def test_a_tracer_provider_already_set_is_left_alone() -> None:
    from opentelemetry import trace

    with recording():
        before = trace.get_tracer_provider()
        with tracing.tracing_from_environment({"OTEL_TRACES_EXPORTER": "console"}):
            assert trace.get_tracer_provider() is before


SETUP_SCRIPT = """
import json, sys
from opentelemetry import trace
from taskloom.observability.tracing import TracingSetupError, tracing_from_environment

def provider(env):
    try:
        with tracing_from_environment(env):
            return type(trace.get_tracer_provider()).__name__
    except TracingSetupError as exc:
        return f"error: {exc}"

print(json.dumps([
    provider({}),
    provider({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}),
    provider({"OTEL_TRACES_EXPORTER": "zipkin-nope"}),
    provider({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"}),
    provider({"OTEL_TRACES_EXPORTER": "none"}),
]))
"""


def test_the_sdk_is_set_up_only_when_the_environment_asks_for_traces() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SETUP_SCRIPT],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    nothing, disabled, unknown, protocol, none = json.loads(done.stdout)
    assert nothing == disabled == "ProxyTracerProvider"
    assert unknown.startswith("error: OTEL_TRACES_EXPORTER: no trace exporter 'zipkin-nope'")
    assert "console" in unknown
    assert "otlp_proto_http" in unknown
    assert protocol == (
        "error: OTEL_EXPORTER_OTLP_PROTOCOL: 'carrier-pigeon' is not one of grpc, http/protobuf"
    )
    assert none == "TracerProvider"


def test_a_worker_given_an_unknown_exporter_exits_2_naming_the_variable(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "taskloom", "worker", str(TASKS), "--db", str(tmp_path / "t.db")],
        env=_env(OTEL_TRACES_EXPORTER="jaeger-nope"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: OTEL_TRACES_EXPORTER: no trace exporter 'jaeger-nope'")


WITHOUT_OPENTELEMETRY = """
import asyncio, sys
sys.modules["opentelemetry"] = None  # as if not installed: importing it fails
import taskloom
from taskloom.observability import tracing

@taskloom.task
def add(a: int, b: int) -> int:
    return a + b

async def main():
    async with taskloom.Engine(sys.argv[1], tasks=[add]) as engine:
        run = await engine.run(add, {"a": 1, "b": 2})
        workflow = taskloom.Workflow.from_dict(
            {"name": "w", "steps": {"x": {"task": "add", "inputs": {"a": 1, "b": 1}}}}
        )
        done = await engine.wait((await engine.submit(workflow)).id, timeout=20)
    loaded = sorted(m for m, v in sys.modules.items() if m.startswith("opentelemetry") and v)
    print(run.result, done.status, run.trace_context, tracing.tracer(), loaded)

asyncio.run(main())
"""


def test_without_opentelemetry_the_engine_runs_and_imports_none_of_it(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_OPENTELEMETRY, str(tmp_path / "t.db")],
        env=_env(OTEL_TRACES_EXPORTER="console"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "completed", "None", "None", "[]"]


LATE_PROVIDER = """
import asyncio, sys, time
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import taskloom

@taskloom.task
def add(a: int, b: int) -> int:
    return a + b

async def main():
    async with taskloom.Engine(sys.argv[1], tasks=[add], heartbeat_interval=0.05) as engine:
        before = await engine.run(add, {"a": 1, "b": 1})
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        deadline = time.monotonic() + 10
        while True:  # the engine looks for a provider with each heartbeat
            after = await engine.run(add, {"a": 2, "b": 2})
            if after.trace_context is not None or time.monotonic() > deadline:
                break
    names = sorted({s.name for s in exporter.get_finished_spans()})
    print(before.trace_context, after.trace_context is not None, names)

asyncio.run(main())
"""


def test_a_provider_set_after_the_engine_started_is_traced_from_then_on(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", LATE_PROVIDER, str(tmp_path / "t.db")],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None True ['taskloom.attempt', 'taskloom.submit']"
