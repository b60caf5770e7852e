"""`taskloom worker`: execute runs from the database's queue until SIGINT or SIGTERM."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from ..engine import Engine
from ..exceptions import ExecutorUnavailableError, StoreError
from ..observability.logs import DEFAULT_LOG_FORMAT, announce, logging_to_stderr
from ..observability.tracing import tracing_from_environment
from ..processes import load_served, run_to_end, work
from ..store.base import LEASE_TTL
from ..tasks.options import check_queue_name
from .db import retention_policy
from .errors import EXIT_FAILED, EXIT_USAGE, CliError, reporting_errors
from .options import (
    DaskOption,
    DbOption,
    LogFormatOption,
    RetentionOption,
    VerboseOption,
    database_url,
    display_url,
    examples,
)

if TYPE_CHECKING:
    from ..observability.metrics import Metrics, MetricsServer

__all__ = ["WORKER_EPILOG", "worker_command"]

WORKER_EPILOG = examples(
    (
        "taskloom worker tasks.py --db postgresql://db.internal/taskloom --concurrency 16",
        "execute runs of the tasks in tasks.py, 16 at a time, from any host",
    ),
    ("taskloom worker tasks.py --queue gpu --queue default", "only runs of these queues"),
    ("taskloom workers", "who is alive and what each holds"),
    (
        "taskloom worker tasks.py --metrics-port 9464",
        "also serve Prometheus metrics at http://127.0.0.1:9464/metrics",
    ),
)


def worker_command(
    targets: Annotated[
        list[str],
        typer.Argument(
            metavar="TARGETS...",
            help="Files (path/file.py), folders or modules whose tasks to execute.",
            show_default=False,
        ),
    ],
    db: DbOption = None,
    queues: Annotated[
        list[str] | None,
        typer.Option(
            "--queue",
            metavar="NAME",
            show_default=False,
            help=(
                "A queue to take runs from (repeat for several). Default: the queues of "
                "the tasks served (each task's option `queue`, `default` unless set)."
            ),
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, help="Runs executing at once.")
    ] = 1000,
    name: Annotated[
        str | None,
        typer.Option(
            "--name", show_default=False, help="A name for this worker in `taskloom workers`."
        ),
    ] = None,
    shutdown_grace: Annotated[
        float,
        typer.Option(
            "--shutdown-grace",
            min=0.0,
            metavar="SECONDS",
            help=(
                "On SIGINT or SIGTERM, how long executing runs may take to finish; those "
                "still executing then, and those not started, are given back to the queue "
                "without using a retry."
            ),
        ),
    ] = 30.0,
    log_format: LogFormatOption = DEFAULT_LOG_FORMAT,
    lease_ttl: Annotated[
        float,
        typer.Option(
            "--lease-ttl",
            min=1.5,
            metavar="SECONDS",
            help=(
                "How long this worker's lease lasts without a heartbeat (one a second): "
                "paused or cut off for longer, it is dead to the others."
            ),
        ),
    ] = LEASE_TTL,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=0,
            max=65535,
            metavar="PORT",
            show_default=False,
            help=(
                "Serve this worker's Prometheus metrics over HTTP on this port (0: any "
                "free port; the address is printed), until the worker stops."
            ),
        ),
    ] = None,
    metrics_host: Annotated[
        str,
        typer.Option(
            "--metrics-host",
            metavar="ADDRESS",
            help="The address the metrics port listens on (0.0.0.0 for every interface).",
        ),
    ] = "127.0.0.1",
    retention: RetentionOption = None,
    dask: DaskOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Execute runs of the given tasks from the database's queue, until Ctrl-C or SIGTERM.

    Start as many workers as you like, on any host that reaches the database: each claims
    runs as it has free slots, in priority order. A worker that dies (killed, its host
    gone) or stops answering for longer than its lease (10 s) is found by the others: the
    runs it held are given back, an attempt it was executing fails as `WorkerLostError`
    and is retried when the task allows it. Exits 0 after a stop.

    With `--dask`, the calls of tasks with `executor="dask"` are made on that Dask
    cluster; this worker records them as for any run.
    """
    with logging_to_stderr(log_format, verbose=verbose), reporting_errors(verbose=verbose):
        try:
            chosen = [check_queue_name(q, "--queue") for q in queues or ()]
        except Exception as exc:
            raise CliError(str(exc)) from None
        policy = retention_policy(retention)
        served = load_served(targets)
        if not served.tasks:
            raise CliError(f"{', '.join(targets)} defines no tasks to execute")
        url = database_url(db)
        metrics, exporter = _metrics(metrics_host, metrics_port)

        def ready(engine: Engine) -> None:
            queue_text = ", ".join(sorted(engine.served_queues()))
            announce(
                f"worker {engine.worker_id} ready: {len(served.tasks)} tasks, queues "
                f"{queue_text}, concurrency {concurrency}, on {display_url(url)}"
            )
            if exporter is not None:
                announce(f"metrics at {exporter.url}")
            if engine.dask is not None:
                link = engine.dask.dashboard_link
                board = f" (dashboard {link})" if link else ""
                announce(f"calls of dask tasks go to {engine.dask.where}{board}")

        def stopped(engine: Engine) -> None:
            announce(
                f"worker {engine.worker_id} stopped; {engine.rejected_writes} late changes "
                "were refused by their fence"
            )

        with (
            tracing_from_environment(),
            _unreachable_is_usage(url),
            _closing(exporter),
        ):
            run_to_end(
                work(
                    served,
                    url,
                    queues=chosen or None,
                    concurrency=concurrency,
                    name=name,
                    shutdown_grace=shutdown_grace,
                    lease_ttl=lease_ttl,
                    on_ready=ready,
                    on_stopped=stopped,
                    retention=policy,
                    metrics=metrics,
                    dask=dask or None,
                ),
                grace=shutdown_grace + 5.0,
            )


def _metrics(host: str, port: int | None) -> tuple[Metrics | None, MetricsServer | None]:
    """With a port, the worker's metrics and their server, listening already: a port in
    use stops the worker before its engine starts (exit 1)."""
    if port is None:
        return None, None
    from ..observability.metrics import Metrics, MetricsServerError

    metrics = Metrics()
    try:
        return metrics, metrics.serve(host, port)
    except MetricsServerError as exc:
        raise CliError(exc.message, exit_code=EXIT_FAILED) from exc


@contextlib.contextmanager
def _closing(exporter: MetricsServer | None) -> Iterator[None]:
    """The metrics' server stopped, its port freed, whatever ends the worker."""
    try:
        yield
    finally:
        if exporter is not None:
            exporter.close()


@contextlib.contextmanager
def _unreachable_is_usage(url: str) -> Iterator[None]:
    """A database the worker cannot open is a usage error (exit 2), said in one line."""
    try:
        yield
    except StoreError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        message = f"cannot use the database {display_url(url)}: {first}"
        raise CliError(message, exit_code=EXIT_USAGE) from exc
    except ExecutorUnavailableError as exc:  # the Dask scheduler of --dask
        raise CliError(exc.message, exit_code=EXIT_USAGE) from exc
