"""Publishing to a pipeline and tailing its output through the HTTP API of a real
`taskloom serve` process.

    python benchmarks/bench_api_pipelines.py [--messages 2000]

- publish: N `POST /api/pipelines/{name}/topics/numbers` one after another (each value
  checked against the stage input it feeds): messages per second, p50 and p95 latency.
- through: from the first publish until a `GET .../topics/doubled/tail` reader (Server-
  Sent Events, another connection) has received all N outputs of the stage.
- status: p50 and p95 of `GET /api/pipelines/{name}` (what the dashboard reads each second).

The baseline is bare asyncio in this process: no-op coroutines gathered as tasks.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
from _common import bare_asyncio_rate, machine, report, start_serve

SERVED = """import taskloom


@taskloom.task
def double(value: int) -> int:
    return value * 2


flow = taskloom.Pipeline("flow")
flow.stage(double, inputs={"value": "numbers"}, outputs=["doubled"], queue_size=100_000)
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--reads", type=int, default=200)
    args = parser.parse_args()
    n = args.messages
    baseline = asyncio.run(bare_asyncio_rate(100_000))
    with tempfile.TemporaryDirectory(prefix="taskloom-bench-") as name:
        folder = Path(name)
        (folder / "served.py").write_text(SERVED, encoding="utf-8")
        process, url = start_serve(folder, folder / "api.db")
        try:
            with httpx.Client(base_url=url + "/api", timeout=30) as api:
                api.post("/pipelines", json={"pipeline": "flow"}).raise_for_status()
                received = 0
                subscribed = threading.Event()
                done = threading.Event()

                def tail() -> None:
                    nonlocal received
                    timeout = httpx.Timeout(30, read=None)
                    with (
                        httpx.Client(base_url=url + "/api", timeout=timeout) as reader,
                        reader.stream("GET", "/pipelines/flow/topics/doubled/tail") as stream,
                    ):
                        for line in stream.iter_lines():
                            if line.startswith(": subscribed"):
                                subscribed.set()
                            elif line == "event: message":
                                received += 1
                                if received == n:
                                    done.set()
                                    return

                threading.Thread(target=tail, daemon=True).start()
                assert subscribed.wait(10), "the tail did not open"
                latencies = []
                start = time.perf_counter()
                for i in range(n):
                    sent = time.perf_counter()
                    response = api.post("/pipelines/flow/topics/numbers", json={"value": i})
                    latencies.append(time.perf_counter() - sent)
                    response.raise_for_status()
                published = time.perf_counter() - start
                assert done.wait(60), f"the tail got {received} of {n}"
                through = time.perf_counter() - start
                reads = []
                for _ in range(args.reads):
                    sent = time.perf_counter()
                    api.get("/pipelines/flow").raise_for_status()
                    reads.append(time.perf_counter() - sent)
                status = api.get("/pipelines/flow").json()["stages"][0]
                assert status["messages_out"] == n, status
                api.post("/pipelines/flow/stop").raise_for_status()
        finally:
            process.terminate()
            process.wait(timeout=20)
    rate = n / published
    report(
        f"pipelines over HTTP, {n} messages ({machine()})",
        {
            "publish": f"{rate:,.0f} msgs/s (p50 {statistics.median(latencies) * 1e3:.2f} ms, "
            f"p95 {percentile(latencies, 0.95) * 1e3:.2f} ms)",
            "publish to tail": f"{through:.2f} s for {n} messages ({n / through:,.0f} msgs/s)",
            "status read": f"p50 {statistics.median(reads) * 1e3:.2f} ms, "
            f"p95 {percentile(reads, 0.95) * 1e3:.2f} ms",
            "bare asyncio": f"{baseline:,.0f} no-op tasks/s",
            "ratio": f"publish is {baseline / rate:,.0f}x slower than a bare asyncio task",
        },
    )


if __name__ == "__main__":
    main()
