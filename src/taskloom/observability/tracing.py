"""OpenTelemetry traces: the spans taskloom starts, and the SDK set up from `OTEL_*`.

Spans, with the attributes `taskloom.run_id`, `taskloom.task` and, on attempts,
`taskloom.attempt`:

- `taskloom.submit`: a run recorded (`submit`, each run of `submit_many`, a workflow run);
  a child of the span current where it was submitted (the HTTP request's, under
  `taskloom serve`). The run keeps the W3C trace context of this span (`traceparent`,
  `tracestate`) in its record, `Run.trace_context`.
- `taskloom.attempt`: one attempt, from its start to its outcome, a child of the run's
  submit span read back from that record, so it is one trace even when a worker in
  another process executes it. It is the current span while the task's code runs (its
  own spans nest under it); an attempt that fails records the exception, status ERROR.
- `taskloom.step`: one step of a workflow, from when it is ready to when it settles, a
  child of the workflow run's submit span; the step's runs are submitted under it.
- the HTTP requests (FastAPI's instrumentation), named by route template
  (`POST /api/runs`).

No cost without the SDK: when `opentelemetry-sdk` (the `taskloom[otel]` extra) is not
installed, `tracer()` is None, nothing here imports opentelemetry, and what the engine
does per run is a check of that. With it installed, the engine starts its spans with
whatever tracer provider is global, once one is set (`active_tracer()`, asked when the
engine starts and with each heartbeat): until then the spans would all be the API's no-op
ones, which record nothing and still cost a run's submit and attempt about 1.3 us (3 % of
a no-op run at 25,000 runs/s), so it starts none and checks one flag.

`tracing_from_environment()` is what `taskloom serve` and `taskloom worker` call: once
`OTEL_TRACES_EXPORTER` or an OTLP endpoint asks for traces, it sets up the SDK from the
standard variables (`OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER`,
`OTEL_EXPORTER_OTLP_*`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
`OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`), unless the served code set a tracer provider of its
own, which is left alone. The SDK's own configurator (`opentelemetry-instrument`) is
private API and sets up metrics and logs too; traces need a provider, a resource and an
exporter per name, found by the entry points exporters declare, as it finds them.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.context import Context as TraceContext
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

    from ..runs import ErrorInfo, Run

__all__ = [
    "ASKING",
    "ATTEMPT",
    "OUTCOME",
    "RUN_ID",
    "STEP",
    "TASK",
    "TracingSetupError",
    "active_tracer",
    "current_ids",
    "end",
    "enter",
    "in_span",
    "instrument_app",
    "leave",
    "sdk_installed",
    "start_attempt",
    "start_step",
    "start_submit",
    "tracer",
    "tracing_from_environment",
]

logger = logging.getLogger("taskloom.tracing")

T = TypeVar("T")

RUN_ID = "taskloom.run_id"
TASK = "taskloom.task"
ATTEMPT = "taskloom.attempt"
STEP = "taskloom.step"
#: How the span's attempt or step ended: `completed`, `failed`, `cancelled`, ...
OUTCOME = "taskloom.outcome"

#: The variables that ask a serving process for traces: without one of them it sets up
#: nothing (an exporter of its own choosing would send spans to a collector nobody runs).
ASKING = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)
#: The entry point group OpenTelemetry's exporters declare themselves in.
EXPORTERS_GROUP = "opentelemetry_traces_exporter"
_OTLP_BY_PROTOCOL = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}


class TracingSetupError(ValueError):
    """An `OTEL_*` variable names something the SDK cannot use; the message says which."""


@functools.cache
def sdk_installed() -> bool:
    """Whether OpenTelemetry's SDK can be imported (looked for once, not imported)."""
    try:
        return importlib.util.find_spec("opentelemetry.sdk") is not None
    except ImportError:  # `opentelemetry` itself is absent
        return False


class _Api:
    """The OpenTelemetry names the spans need, imported once (an import statement in a
    function costs more than a span of the no-op API)."""

    def __init__(self) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.context = context
        self.trace = trace
        self.root = context.Context()  # a new trace: no parent
        # The run's record holds W3C trace context whatever propagators a program set
        # for its own messages: the column says what it holds.
        self.propagator = TraceContextTextMapPropagator()
        self.producer = trace.SpanKind.PRODUCER
        self.consumer = trace.SpanKind.CONSUMER
        self.error = trace.StatusCode.ERROR


_api: _Api | None = None


@functools.cache
def tracer() -> Tracer | None:
    """taskloom's tracer, from the global provider; None without the SDK."""
    global _api
    if not sdk_installed():
        return None
    from opentelemetry import trace

    from .. import __version__

    _api = _Api()
    return trace.get_tracer("taskloom", __version__)


def active_tracer() -> Tracer | None:
    """taskloom's tracer once a tracer provider is set (by the program, or by
    `tracing_from_environment`); None without the SDK, and while none is set.

    Until a provider is set every span would be one of the API's no-op ones, which record
    nothing and still cost about a microsecond a run, so the engine starts none: it asks
    this when it starts and with each heartbeat, and traces from then on."""
    found = tracer()
    if found is None:
        return None
    trace = _otel().trace
    return None if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider) else found


def _otel() -> _Api:
    assert _api is not None, "tracer() first"
    return _api


def _carrier(span: Span) -> dict[str, str] | None:
    """The W3C headers of `span`'s context; None for a span without one (a no-op span
    outside any trace)."""
    if not span.get_span_context().is_valid:
        return None
    api = _otel()
    carrier: dict[str, str] = {}
    api.propagator.inject(carrier, context=api.trace.set_span_in_context(span, api.root))
    return carrier


def _parent(carrier: Mapping[str, str] | None) -> TraceContext:
    """The context a span recorded in `carrier` makes; an empty one (a new trace) without
    it, never whatever context happens to be current where the engine starts the span."""
    api = _otel()
    if not carrier:
        return api.root
    return api.propagator.extract(carrier, context=api.root)


# spans ---------------------------------------------------------------------------------------
def start_submit(tracer: Tracer, run: Run) -> Span:
    """The span of `run`'s submit, a child of the current span; `run.trace_context` is set
    to it. End it with `end` once the run is committed (or refused)."""
    span = tracer.start_span(
        "taskloom.submit", kind=_otel().producer, attributes={RUN_ID: run.id, TASK: run.task}
    )
    run.trace_context = _carrier(span)
    return span


def start_attempt(tracer: Tracer, run: Run) -> Span:
    """The span of `run`'s current attempt (`run.attempts`), a child of its submit's."""
    return tracer.start_span(
        "taskloom.attempt",
        context=_parent(run.trace_context),
        kind=_otel().consumer,
        attributes={RUN_ID: run.id, TASK: run.task, ATTEMPT: run.attempts},
    )


def start_step(tracer: Tracer, workflow_run: Run, step: str) -> tuple[Span, dict[str, str] | None]:
    """The span of one step of a workflow run, a child of the workflow's submit span, and
    the trace context its step runs are recorded with (so their attempts are its children)."""
    span = tracer.start_span(
        "taskloom.step",
        context=_parent(workflow_run.trace_context),
        attributes={RUN_ID: workflow_run.id, TASK: workflow_run.task, STEP: step},
    )
    return span, _carrier(span)


def end(span: Span, outcome: str, *, error: BaseException | ErrorInfo | None = None) -> None:
    """End `span` with its outcome; with an `error`, the exception recorded, status ERROR."""
    if span.is_recording():  # (a no-op span takes nothing)
        span.set_attribute(OUTCOME, outcome)
        if error is not None:
            if isinstance(error, BaseException):
                span.record_exception(error)
                description = f"{type(error).__name__}: {error}"
            else:
                event = {"exception.type": error.type, "exception.message": error.message}
                span.add_event("exception", event)
                description = f"{error.type}: {error.message}"
            span.set_status(_otel().error, description)
    span.end()


def enter(span: Span) -> object:
    """Make `span` the current one in this thread or asyncio task; `leave` undoes it.
    A no-op span outside any trace is not made current: there is nothing to hand on."""
    if not span.get_span_context().is_valid:
        return None
    api = _otel()
    return api.context.attach(api.trace.set_span_in_context(span))


def leave(token: object) -> None:
    if token is not None:
        _otel().context.detach(token)


def in_span(span_of: Callable[[], Span | None], call: Callable[[], T]) -> Callable[[], T]:
    """`call`, made to run with the span `span_of()` gives at call time as the current one
    (a sync task's thread learns its attempt's span only when the attempt begins)."""

    def traced() -> T:
        span = span_of()
        if span is None:
            return call()
        token = enter(span)
        try:
            return call()
        finally:
            leave(token)

    return traced


def current_ids() -> tuple[str, str] | None:
    """The trace and span ids of the current span (hex, as tracing tools show them), for
    log lines; None without the SDK or outside any span."""
    if tracer() is None:
        return None
    from opentelemetry import trace

    found = trace.get_current_span().get_span_context()
    if not found.is_valid:
        return None
    return format(found.trace_id, "032x"), format(found.span_id, "016x")


def instrument_app(app: FastAPI) -> None:
    """A span per HTTP request to `app` (FastAPI's instrumentation, when installed)."""
    if tracer() is None:
        return
    try:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    except ImportError:  # the SDK without the instrumentation: no request spans
        return
    # The ASGI `receive` and `send` of each body chunk would be spans of their own.
    FastAPIInstrumentor.instrument_app(app, exclude_spans=["receive", "send"])


# the SDK of a serving process --------------------------------------------------------------
@contextlib.contextmanager
def tracing_from_environment(environ: Mapping[str, str] | None = None) -> Iterator[None]:
    """Set up OpenTelemetry's SDK from the `OTEL_*` variables for the time of the block,
    and flush the spans at its end.

    Traces are asked for by `OTEL_TRACES_EXPORTER` or an OTLP endpoint
    (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); without one,
    nothing is set up. Nor is it with `OTEL_SDK_DISABLED=true`, without the SDK (a
    warning says so), or when a tracer provider is set already (by the served code: it
    is left as it is). Raises `TracingSetupError` for an exporter or protocol the
    variables name that is not installed or not known.
    """
    env = os.environ if environ is None else environ
    provider = _provider_from(env)
    try:
        yield
    finally:
        if provider is not None:
            provider.shutdown()  # exports what the batch processors still hold


def _provider_from(env: Mapping[str, str]) -> TracerProvider | None:
    asked = [name for name in ASKING if name in env]
    if not asked or env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if not sdk_installed():
        logger.warning(
            "taskloom: %s set but OpenTelemetry's SDK is not installed: no traces are sent "
            "(pip install 'taskloom[otel]')",
            " and ".join(asked),
        )
        return None
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return None  # the program's own provider
    exporters = [factory() for factory in _exporter_classes(env)]
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "taskloom"}))
    provider = TracerProvider(resource=resource)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider


def _exporter_classes(env: Mapping[str, str]) -> list[Callable[[], SpanExporter]]:
    """The exporters `OTEL_TRACES_EXPORTER` names (default `otlp`; `none`: none), found by
    their entry points; `otlp` is gRPC or HTTP by `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`."""
    from importlib.metadata import entry_points

    names = [n.strip() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if n.strip()]
    if names == ["none"]:
        return []
    found = {point.name: point for point in entry_points(group=EXPORTERS_GROUP)}
    classes: list[Callable[[], SpanExporter]] = []
    for name in names:
        if name == "otlp":
            variable = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
            protocol = env.get(variable) or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            if protocol is None:
                protocol = "grpc"  # the Python SDK's default
            elif variable not in env:
                variable = "OTEL_EXPORTER_OTLP_PROTOCOL"
            name = _OTLP_BY_PROTOCOL.get(protocol.strip(), "")
            if not name:
                known = ", ".join(_OTLP_BY_PROTOCOL)
                raise TracingSetupError(f"{variable}: {protocol!r} is not one of {known}")
        point = found.get(name)
        if point is None:
            known = ", ".join(sorted(found)) or "none installed"
            raise TracingSetupError(
                f"OTEL_TRACES_EXPORTER: no trace exporter {name!r} is installed "
                f"(installed: {known})"
            )
        classes.append(_loaded(point.name, point.load))
    return classes


def _loaded(name: str, load: Callable[[], Any]) -> Callable[[], SpanExporter]:
    try:
        factory: Callable[[], SpanExporter] = load()
    except ImportError as exc:
        raise TracingSetupError(
            f"OTEL_TRACES_EXPORTER: the exporter {name!r} cannot be imported: {exc}"
        ) from exc
    return factory
