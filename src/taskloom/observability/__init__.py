"""What an operator watches a running taskloom by: metrics in the Prometheus format,
OpenTelemetry traces, structured logs and retention of finished runs.

Each module here is read by the surfaces that serve a process (the server, `taskloom
worker`); the engine itself knows nothing of them but `tracing`, whose spans it starts
(none, and nothing of OpenTelemetry imported, without OpenTelemetry's SDK).
"""
