"""Prometheus metrics of one taskloom process, made with `prometheus_client`.

`Metrics` holds a registry of its own (never `prometheus_client`'s global one, so several
engines or apps in one process keep apart), with the process, platform and garbage
collector metrics, and what taskloom adds:

- counts of what this process did, from an `ends_only` listener of the engine: the runs
  it ended (`taskloom_runs_total{task,status}`, `taskloom_run_duration_seconds{task}`)
  and the attempts it executed (`taskloom_attempts_total{task,outcome}`). The ends of
  other processes' runs, which a server's engine reads back from the store for its
  event streams, are never told to such a listener: the process that ended them counts
  them;
- gauges read from the database at scrape time, at most once per `cache_seconds` however
  many scrapes come: the runs waiting by queue and executing by task
  (`active_counts()`), the workers by state. Every process tells the same cluster-wide
  figures;
- what the engine's supervisor and the in-process deployments know, read at scrape time by
  collectors of their own, so nothing is counted on their hot paths: the services by
  state and their restarts, the messages each stage took in and sent out.

A server adds its requests by route template and status, and exposes them all at
`/metrics` (`server/metrics.py`); a worker serves them on a port of its own
(`Metrics.serve`, `taskloom worker --metrics-port`).
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from ..exceptions import EngineClosedError, StoreError, TaskloomError
from ..services.status import ServiceState

if TYPE_CHECKING:
    from ..engine import Engine, RunEvent
    from ..store import Store
    from ..streams.deployment import Deployment

__all__ = [
    "DURATION_BUCKETS",
    "Metrics",
    "MetricsServer",
    "MetricsServerError",
]

logger = logging.getLogger("taskloom.metrics")

#: Run durations, in seconds: from a no-op to an hour.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
#: The `le` labels of the buckets, as prometheus_client writes them.
_BOUNDS = [repr(float(bound)) for bound in DURATION_BUCKETS] + ["+Inf"]
_WORKER_STATES = ("alive", "lost")


class MetricsServerError(TaskloomError, OSError):
    """The metrics port could not be listened on."""


class Metrics:
    """The metrics of one process's engine, in a registry of their own.

    Made first, then `watch(engine)` once the engine is started (a worker binds its
    metrics port before it starts its engine). `deployments` lists the deployments this
    process runs, asked at each scrape.
    """

    def __init__(self, *, cache_seconds: float = 1.0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self._counts = _RunCounts()
        self.registry.register(self._counts)
        self._detach: Callable[[], None] | None = None
        self._database = _DatabaseGauges(cache_seconds)
        self.registry.register(self._database)

    def watch(
        self, engine: Engine, *, deployments: Callable[[], Iterable[Deployment]] | None = None
    ) -> None:
        """Count `engine`'s runs from now on, and read its store, supervisor and
        `deployments` at each scrape."""
        assert engine.store is not None, "start the engine before watching it"
        self._detach = engine.add_listener(self._counts.heard, ends_only=True)
        self._database.store = engine.store
        self.registry.register(_ServiceCollector(engine))
        if deployments is not None:
            self.registry.register(_StageCollector(deployments))

    def close(self) -> None:
        """Stop listening to the engine (what was counted stays readable)."""
        detach, self._detach = self._detach, None
        if detach is not None:
            detach()

    def refresh(self) -> None:
        """Read the database's gauges now unless they were read within `cache_seconds`
        (blocking: call it in a thread; a scrape then reads nothing more)."""
        self._database.refresh()

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The metrics in the format the `Accept` header asks for (Prometheus text by
        default, OpenMetrics when asked), and its content type."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    def serve(self, host: str, port: int) -> MetricsServer:
        """Serve the metrics over HTTP on `host:port` (0: a free port), in a thread."""
        try:
            server, thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            reason = exc.strerror or exc
            raise MetricsServerError(
                f"cannot listen on {host}:{port} for metrics: {reason}"
            ) from exc
        return MetricsServer(server, thread)


class MetricsServer:
    """The metrics' own HTTP server (a thread); `close()` frees its port."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        host = str(self._server.server_address[0])
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)


class _RunCounts(Collector):
    """The runs and attempts this process ended, counted as the engine records their ends.

    Plain dictionaries of numbers, changed on the event loop only (a counter of
    prometheus_client takes a lock and finds its child at each count); a scrape, in
    another thread maybe, reads copies (a dictionary or a list is copied whole, the GIL
    held) and makes the families from them.
    """

    def __init__(self) -> None:
        self._runs: dict[tuple[str, str], int] = {}
        self._attempts: dict[tuple[str, str], int] = {}
        # Per task: the observations in each bucket (the last one +Inf), then their sum.
        self._durations: dict[str, list[float]] = {}

    def heard(self, event: RunEvent) -> None:
        # Called on every run's end: kept to a few dictionary operations.
        run = event.run
        if event.kind == "finished":
            key: tuple[str, str] = (run.task, run.status)  # a StrEnum: its text's key too
            runs = self._runs
            runs[key] = runs.get(key, 0) + 1
            if event.attempt_ended:
                attempts = self._attempts
                attempts[key] = attempts.get(key, 0) + 1
            started, finished = run.started_at, run.finished_at
            if started is not None and finished is not None:
                seconds = finished - started
                if seconds < 0.0:
                    seconds = 0.0
                row = self._durations.get(run.task)
                if row is None:
                    row = self._durations[run.task] = [0.0] * (len(DURATION_BUCKETS) + 2)
                row[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
                row[-1] += seconds
        elif event.attempt_ended:  # retrying: the attempt failed
            failed = (run.task, "failed")
            self._attempts[failed] = self._attempts.get(failed, 0) + 1

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        runs, durations, attempts = self._families()
        for (task, status), count in sorted(self._runs.copy().items()):
            runs.add_metric([task, str(status)], count)
        for (task, outcome), count in sorted(self._attempts.copy().items()):
            attempts.add_metric([task, str(outcome)], count)
        for task, row in sorted(self._durations.copy().items()):
            counts = list(row)
            cumulative = list(itertools.accumulate(counts[:-1]))
            buckets = list(zip(_BOUNDS, cumulative, strict=True))
            durations.add_metric([task], buckets, sum_value=counts[-1])
        return [runs, durations, attempts]

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, HistogramMetricFamily, CounterMetricFamily]:
        return (
            CounterMetricFamily(
                "taskloom_runs",
                "Runs this process ended (executed, or cancelled before they ran), by final "
                "status.",
                labels=("task", "status"),
            ),
            HistogramMetricFamily(
                "taskloom_run_duration_seconds",
                "From a run's first start to its end, of the runs this process ended.",
                labels=("task",),
            ),
            CounterMetricFamily(
                "taskloom_attempts",
                "Attempts this process executed, by how each ended.",
                labels=("task", "outcome"),
            ),
        )


class _DatabaseGauges(Collector):
    """The gauges read from the store, cached for `ttl` seconds: a burst of scrapes (or
    several Prometheus servers) costs one read."""

    def __init__(self, ttl: float) -> None:
        self.store: Store | None = None  # set by `Metrics.watch`
        self._ttl = ttl
        self._lock = threading.Lock()
        self._read_at = -math.inf
        self._last: list[Metric] = []
        # Label values seen once stay, at 0 when nothing is left: a queue that empties
        # shows 0, not a series that vanishes.
        self._queues: set[str] = set()
        self._tasks: set[str] = set()

    def describe(self) -> Iterable[Metric]:
        # Without it, registering would collect, and so read the database, at once.
        return self._families()

    def collect(self) -> Iterable[Metric]:
        self.refresh()
        return list(self._last)

    def refresh(self) -> None:
        with self._lock:
            if time.monotonic() - self._read_at < self._ttl:
                return
            self._last = self._read()
            self._read_at = time.monotonic()

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, ...]:
        return (
            GaugeMetricFamily(
                "taskloom_runs_pending",
                "Runs waiting in the database, by queue (all processes).",
                labels=("queue",),
            ),
            GaugeMetricFamily(
                "taskloom_runs_running",
                "Runs executing, by task, as the database records them (all processes).",
                labels=("task",),
            ),
            GaugeMetricFamily(
                "taskloom_workers",
                "Workers the database records, by state (all processes).",
                labels=("state",),
            ),
            GaugeMetricFamily(
                "taskloom_database_up",
                "1 when the last read of the database's gauges succeeded, else 0.",
                labels=(),
            ),
        )

    def _read(self) -> list[Metric]:
        store = self.store
        if store is None:
            return []
        pending, running, workers, up = self._families()
        try:
            counts = store.active_counts()
            recorded = store.list_workers()
        except StoreError as exc:
            logger.warning("taskloom: metrics could not read the database: %s", exc)
            up.add_metric([], 0.0)
            return [up]
        up.add_metric([], 1.0)
        self._queues.update(counts.pending)
        self._tasks.update(counts.running)
        for queue in sorted(self._queues):
            pending.add_metric([queue], counts.pending.get(queue, 0))
        for task in sorted(self._tasks):
            running.add_metric([task], counts.running.get(task, 0))
        by_state = dict.fromkeys(_WORKER_STATES, 0)
        for worker in recorded:
            by_state[worker.state] = by_state.get(worker.state, 0) + 1
        for state, count in by_state.items():
            workers.add_metric([state], count)
        return [pending, running, workers, up]


class _ServiceCollector(Collector):
    """The services of the engine's supervisor, read at scrape time."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        states, restarts = self._families()
        try:
            statuses = self._engine.supervisor.statuses()
        except EngineClosedError:
            statuses = []
        for status in statuses:
            for state in ServiceState:
                states.add_metric([status.name, state.value], float(status.state is state))
            restarts.add_metric([status.name], status.restarts)
        return [states, restarts]

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, CounterMetricFamily]:
        return (
            GaugeMetricFamily(
                "taskloom_services",
                "Services of this process: 1 for the state each is in, 0 for the others.",
                labels=("service", "state"),
            ),
            CounterMetricFamily(
                "taskloom_service_restarts",
                "Restarts each service's restart policy made (kept in the database).",
                labels=("service",),
            ),
        )


class _StageCollector(Collector):
    """The stages of the deployments this process runs, read at scrape time."""

    def __init__(self, deployments: Callable[[], Iterable[Deployment]]) -> None:
        self._deployments = deployments

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        for deployment in list(self._deployments()):
            for stage in deployment.stage_statuses():
                labels = [deployment.name, stage.stage]
                family.add_metric([*labels, "in"], stage.messages_in)
                family.add_metric([*labels, "out"], stage.messages_out)
        return [family]

    @staticmethod
    def _family() -> CounterMetricFamily:
        return CounterMetricFamily(
            "taskloom_stage_messages",
            "Messages each stage of this process's deployments took in and sent out "
            "since its deployment started.",
            labels=("deployment", "stage", "direction"),
        )
