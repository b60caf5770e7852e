"""The cost of OpenTelemetry tracing on the engine's hot paths, against no OpenTelemetry.

    python benchmarks/bench_tracing.py [--runs 20000] [--latency-runs 2000] [--rounds 3]

The workloads of `bench_observability.py` (those of `bench_throughput.py`: N concurrent
`submit` calls of an `async def` no-op, one `submit_many` of a sync no-op; and of
`bench_latency.py`: submit-then-wait, one run at a time), each on a fresh SQLite file,
under each configuration of `CONFIGURATIONS`:

- `off`: OpenTelemetry cannot be imported, as without the `otel` extra (the engine's
  tracer is None: one check per run);
- `sdk installed, no exporter`: the SDK importable, no tracer provider set, no exporter,
  as `taskloom worker` runs when no `OTEL_*` variable asks for traces (the engine starts
  no span until a provider is set);
- `no-op spans`: the API's `NoOpTracerProvider` set: every span is started and ended as
  the API's no-op one, what the engine would pay if it started spans before any provider
  is set (why it does not);
- `sdk provider, spans dropped`: an SDK `TracerProvider` set, with no span processor: every
  span is made and recorded as a real one, then dropped (what traces cost before any
  export).

A process has one global tracer provider and imports a module once, so each configuration
runs in a process of its own (this script again, with `--child`), and configurations take
turns round by round, so a machine that slows down meanwhile slows all of them; each
figure is the median of its rounds, and the cost is against `off` (target: <= 5 % for the
SDK installed without an exporter). On a shared machine those rates move by tens of
percent from round to round; the spans of one run are also timed alone (the fastest of 5
repeats), against the time of one run with tracing off.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

CONFIGURATIONS = (
    "off",
    "sdk installed, no exporter",
    "no-op spans",
    "sdk provider, spans dropped",
)
#: (name, unit, whether more is better)
WORKLOADS = (
    ("async def, concurrent submit", "runs/s", True),
    ("sync def, submit_many", "runs/s", True),
    ("submit -> result p50", "ms", False),
)


def child(configuration: str, runs: int, latency_runs: int) -> None:
    """Measure every workload under `configuration`, in this process; print them as JSON."""
    if configuration == "off":
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]  # as if not installed
    elif configuration == "no-op spans":
        from opentelemetry import trace

        trace.set_tracer_provider(trace.NoOpTracerProvider())
    elif configuration == "sdk provider, spans dropped":
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider

        trace.set_tracer_provider(TracerProvider())
    import asyncio
    import time

    from _common import database_file
    from bench_latency import noop, percentiles
    from bench_throughput import batched_submit, concurrent_submits, noop_async, noop_sync

    import taskloom
    from taskloom.observability import tracing

    traced = configuration in ("no-op spans", "sdk provider, spans dropped")
    assert (tracing.active_tracer() is not None) == traced, configuration

    async def latency_p50(engine: taskloom.Engine) -> float:
        samples = []
        for _ in range(latency_runs):
            start = time.perf_counter()
            run = await engine.submit(noop)
            await engine.wait(run.id)
            samples.append(time.perf_counter() - start)
        return percentiles(samples)[0] * 1e3

    async def measure() -> dict[str, float]:
        measures = {
            "async def, concurrent submit": lambda e: concurrent_submits(e, noop_async, runs),
            "sync def, submit_many": lambda e: batched_submit(e, noop_sync, runs),
            "submit -> result p50": latency_p50,
        }
        figures: dict[str, float] = {}
        for name, run_it in measures.items():
            with database_file() as path:
                async with taskloom.Engine(path) as engine:
                    await engine.run(noop)  # warm up: schema, first statements
                    figures[name] = await run_it(engine)
        return figures

    print(json.dumps(asyncio.run(measure())))


def spans_per_run() -> None:
    """The spans of one run alone (its submit and its attempt, started, made current and
    ended), timed apart from the engine: microseconds a run, the fastest of 5 repeats."""
    import timeit

    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    from taskloom.observability import tracing
    from taskloom.runs import Run

    tracing.tracer()  # the API's names, imported once
    run = Run(id="01a233e1-923c-75b4-af88-a3b54634c550", task="noop_async", inputs={})

    def one_run(tracer: trace.Tracer) -> None:
        submit = tracing.start_submit(tracer, run)
        tracing.end(submit, "recorded")
        attempt = tracing.start_attempt(tracer, run)
        tracing.leave(tracing.enter(attempt))
        tracing.end(attempt, "completed")

    figures = {}
    for name, tracer, number in (
        ("no-op spans", trace.NoOpTracerProvider().get_tracer("taskloom"), 20_000),
        ("sdk provider, spans dropped", TracerProvider().get_tracer("taskloom"), 5_000),
    ):
        best = min(timeit.repeat(lambda t=tracer: one_run(t), number=number, repeat=5))
        figures[name] = best / number * 1e6
    print(json.dumps(figures))


def main(runs: int, latency_runs: int, rounds: int) -> None:
    from _common import machine, report

    here = Path(__file__).resolve()
    results: dict[str, dict[str, list[float]]] = {
        c: {w: [] for w, _u, _h in WORKLOADS} for c in CONFIGURATIONS
    }
    for _ in range(rounds):
        for configuration in CONFIGURATIONS:
            command = [sys.executable, str(here), "--child", configuration]
            done = subprocess.run(
                [*command, "--runs", str(runs), "--latency-runs", str(latency_runs)],
                capture_output=True,
                text=True,
                check=True,
            )
            for name, value in json.loads(done.stdout.splitlines()[-1]).items():
                results[configuration][name].append(value)
    done = subprocess.run(
        [sys.executable, str(here), "--spans"], capture_output=True, text=True, check=True
    )
    alone = json.loads(done.stdout.splitlines()[-1])
    figures = {"machine": machine()}
    for name, unit, higher_is_better in WORKLOADS:
        baseline = statistics.median(results["off"][name])
        for configuration in CONFIGURATIONS:
            value = statistics.median(results[configuration][name])
            shown = f"{value:,.3f}" if unit == "ms" else f"{value:,.0f}"
            if configuration == "off":
                figures[f"{name}, off"] = f"{shown} {unit}"
                continue
            cost = baseline / value - 1 if higher_is_better else value / baseline - 1
            figures[f"{name}, {configuration}"] = (
                f"{shown} {unit}  (ratio to off {value / baseline:.3f}, cost {cost * 100:+.1f} %)"
            )
    off_run = 1e6 / statistics.median(results["off"]["async def, concurrent submit"])
    for configuration, micros in alone.items():
        figures[f"spans of one run alone, {configuration}"] = (
            f"{micros:.2f} us  ({micros / off_run * 100:.1f} % of an async concurrent-submit "
            f"run off, {off_run:.1f} us)"
        )
    report(
        f"tracing on the engine: {runs:,} runs a throughput round, {latency_runs:,} a "
        f"latency round, median of {rounds} rounds (target cost <= 5 % for the SDK "
        "installed without an exporter)",
        figures,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--latency-runs", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=CONFIGURATIONS, help=argparse.SUPPRESS)
    parser.add_argument("--spans", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.spans:
        spans_per_run()
    elif args.child:
        child(args.child, args.runs, args.latency_runs)
    else:
        main(args.runs, args.latency_runs, args.rounds)
