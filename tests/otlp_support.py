"""Spans for the tracing tests, from both sides of a process boundary.

`OtlpReceiver` is an OTLP/HTTP endpoint on a loopback port: a child process configured
with `OTEL_EXPORTER_OTLP_ENDPOINT` sends its spans there, through the SDK's real OTLP
exporter, and they are decoded with the protocol's own protobuf messages. `recording()`
records this process's spans with the SDK's `InMemorySpanExporter`.

A process has one global tracer provider, set once. The one `recording()` installs hands
out tracers that start SDK spans only while a `recording()` block is open, and the API's
no-op spans otherwise, so the tests that run after these see tracing as if no provider
were set.
"""

from __future__ import annotations

import contextlib
import gzip
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, NoOpTracer, Span, SpanKind, Tracer
from opentelemetry.util.types import Attributes

__all__ = ["OtlpReceiver", "SeenSpan", "recording", "seen"]


@dataclass(frozen=True)
class SeenSpan:
    """A finished span as either side saw it: ids in hex, as tracing tools show them."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    attributes: dict[str, Any]
    error: bool
    events: tuple[str, ...] = ()
    service: str = ""
    exception_types: tuple[str, ...] = field(default=())


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return None if kind is None else getattr(value, kind)


class _Receiver(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path != "/v1/traces":
            self.send_error(404)
            return
        self.server.add(ExportTraceServiceRequest.FromString(body))
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the test's output is the spans, not a line per request


class _Server(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Receiver)
        self.lock = threading.Lock()
        self.spans: list[SeenSpan] = []

    def add(self, request: ExportTraceServiceRequest) -> None:
        found: list[SeenSpan] = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append(
                        SeenSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex() or None,
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            error=span.status.code == span.status.STATUS_CODE_ERROR,
                            events=tuple(e.name for e in span.events),
                            service=str(resource.get("service.name", "")),
                            exception_types=tuple(
                                str(_value(a.value))
                                for e in span.events
                                for a in e.attributes
                                if a.key == "exception.type"
                            ),
                        )
                    )
        with self.lock:
            self.spans.extend(found)


class OtlpReceiver:
    """Receives OTLP/HTTP trace exports on `endpoint` until closed."""

    def __init__(self) -> None:
        self._server = _Server()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def spans(self) -> list[SeenSpan]:
        with self._server.lock:
            return list(self._server.spans)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def seen(span: ReadableSpan) -> SeenSpan:
    """An SDK span of this process, as `SeenSpan`."""
    context = span.context
    assert context is not None
    return SeenSpan(
        name=span.name,
        trace_id=format(context.trace_id, "032x"),
        span_id=format(context.span_id, "016x"),
        parent_id=None if span.parent is None else format(span.parent.span_id, "016x"),
        attributes=dict(span.attributes or {}),
        error=span.status.status_code is trace.StatusCode.ERROR,
        events=tuple(e.name for e in span.events),
        service=str(span.resource.attributes.get("service.name", "")),
        exception_types=tuple(str((e.attributes or {}).get("exception.type")) for e in span.events),
    )


class _Switched(Tracer):
    """The SDK's tracer while a recording is open, the API's no-op one otherwise."""

    def __init__(self, recording: Tracer, switch: _Switch) -> None:
        self._recording = recording
        self._switch = switch
        self._off = NoOpTracer()

    def _now(self) -> Tracer:
        return self._recording if self._switch.on else self._off

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        return self._now().start_span(
            name, context, kind, attributes, links, start_time, record_exception,
            set_status_on_exception,
        )  # fmt: skip

    def start_as_current_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Any:  # the API's own context manager type is private
        return self._now().start_as_current_span(
            name, context, kind, attributes, links, start_time, record_exception,
            set_status_on_exception, end_on_exit,
        )  # fmt: skip


class _Switch(trace.TracerProvider):
    def __init__(self) -> None:
        self.on = False
        self.exporter = InMemorySpanExporter()
        self.sdk = TracerProvider()
        self.sdk.add_span_processor(SimpleSpanProcessor(self.exporter))

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> Tracer:
        sdk = self.sdk.get_tracer(
            instrumenting_module_name, instrumenting_library_version, schema_url, attributes
        )
        return _Switched(sdk, self)


_lock = threading.Lock()
_switch: _Switch | None = None


@contextlib.contextmanager
def recording() -> Iterator[InMemorySpanExporter]:
    """This process's spans, recorded by the SDK into the exporter yielded."""
    global _switch
    with _lock:
        if _switch is None:
            _switch = _Switch()
            trace.set_tracer_provider(_switch)
        switch = _switch
    assert trace.get_tracer_provider() is switch, "another tracer provider is set"
    switch.exporter.clear()
    switch.on = True
    try:
        yield switch.exporter
    finally:
        switch.on = False
        switch.exporter.clear()
