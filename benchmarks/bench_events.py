"""Live events of a server that executes nothing, while workers in other processes do.

    python benchmarks/bench_events.py [--rate 3000] [--seconds 20] [--concurrency 200]
        [--server postgresql://postgres@127.0.0.1:5432/test]

Two `taskloom worker` processes (concurrency 200 each) and a `taskloom serve --no-worker`
process on 127.0.0.1 (no token: the fresh database holds none) share a fresh PostgreSQL
database. This process follows the server's `GET /api/events?type=run` stream in a thread
(httpx), noting each `finished` event's run id and when it was read (`time.time()`). A
submitter process (`bench_queue_steady.py --submitter`: every 10 ms one `submit_many` of
the runs due by the clock) offers RATE no-op runs a second for SECONDS.

Once every run is finished in the database and no `finished` event came for 2 s (at most
60 s after that), each run's `finished_at` is read from the database: the share of
finished runs whose `finished` event arrived, the runs missed, the events told twice, and
the lag, receive time minus `finished_at` (the same machine's clock), p50, p99 and max.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from _common import machine, report
from bench_queue_steady import (
    DRAIN_TIMEOUT,
    UNFINISHED,
    create_schema,
    percentiles,
    rows,
    steady_state,
)
from queue_tasks import HERE, WorkerProcess, as_url, fresh_database, scalar

SCRIPT = Path(__file__).resolve()
QUIET = 2.0  # settled: no `finished` event for this long after the database said all ended
SETTLE_MAX = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`taskloom serve queue_tasks.py --no-worker` on a free port of 127.0.0.1."""

    def __init__(self, url: str) -> None:
        port = free_port()
        argv = [sys.executable, "-m", "taskloom", "serve", str(HERE / "queue_tasks.py")]
        argv += ["--db", url, "--no-worker", "--host", "127.0.0.1", "--port", str(port)]
        # A WorkerProcess for its stderr and its stop; its banner (stdout) is not read.
        self.worker = WorkerProcess(argv, ready=re.compile(r"serving http://"))
        self.process = self.worker.process
        self.url = f"http://127.0.0.1:{port}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        # The banner goes to stdout, which WorkerProcess discards: poll the health route.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"taskloom serve ended:\n{self.worker.output()}")
            try:
                if httpx.get(f"{self.url}/api/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.worker.stop()
        raise SystemExit(f"taskloom serve did not answer:\n{self.worker.output()}")

    def stop(self) -> int:
        return self.worker.stop()


class Follower:
    """Reads `GET /api/events?type=run` in a thread: each `finished` event's run id and
    receive time, the other kinds counted, `lagged` events summed."""

    def __init__(self, url: str) -> None:
        self._url = f"{url}/api/events"
        self.finished: list[tuple[str, float]] = []
        self.kinds: dict[str, int] = {}
        self.lagged = 0  # `lagged` events
        self.dropped = 0  # events the server said it dropped for this stream
        self.error: str | None = None
        self.subscribed = threading.Event()
        self._stop = threading.Event()
        self._client = httpx.Client(timeout=httpx.Timeout(10.0, read=None))
        self._thread = threading.Thread(target=self._main, name="events", daemon=True)

    def start(self) -> Follower:
        self._thread.start()
        if not self.subscribed.wait(30):
            raise SystemExit(f"the event stream did not open: {self.error}")
        return self

    @property
    def last_finished(self) -> float:
        return self.finished[-1][1] if self.finished else 0.0

    def _main(self) -> None:
        finished = self.finished
        kind_of = re.compile(r'"kind":"([a-z_]+)"')
        event = ""
        try:
            with self._client.stream("GET", self._url, params={"type": "run"}) as response:
                response.raise_for_status()
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith("data:"):
                        data = line[5:].strip()
                        if event == "run":
                            match = kind_of.search(data)
                            kind = match.group(1) if match else "?"
                            if kind == "finished":
                                finished.append((json.loads(data)["run"]["id"], time.time()))
                            self.kinds[kind] = self.kinds.get(kind, 0) + 1
                        elif event == "lagged":
                            self.lagged += 1
                            self.dropped += int(json.loads(data).get("dropped", 0))
                    elif line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith(":") and "subscribed" in line:
                        self.subscribed.set()
                    elif not line:
                        event = ""
        except Exception as exc:
            if not self._stop.is_set():
                self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.subscribed.set()

    def stop(self) -> None:
        self._stop.set()
        self._client.close()
        self._thread.join(timeout=5)


def wait_finished(conninfo: str, total: int, processes: list[WorkerProcess]) -> int:
    """Poll until `total` runs exist and none is unfinished; how many are left after
    DRAIN_TIMEOUT."""
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while time.monotonic() < deadline:
        if any(p.process.poll() is not None for p in processes):
            outputs = "\n".join(p.output() for p in processes)
            raise SystemExit(f"a worker or the server ended:\n{outputs}")
        left = int(scalar(conninfo, UNFINISHED))
        if left == 0 and int(scalar(conninfo, "SELECT count(*) FROM runs")) >= total:
            return 0
        time.sleep(0.05)
    return int(scalar(conninfo, UNFINISHED))


def settle(follower: Follower) -> float:
    """Wait until no `finished` event came for QUIET s (at most SETTLE_MAX); how long."""
    start = time.time()
    while time.time() - start < SETTLE_MAX:
        if time.time() - max(follower.last_finished, start) >= QUIET:
            break
        time.sleep(0.1)
    return time.time() - start


def main(server: str, rate: float, seconds: float, concurrency: int) -> None:
    figures = {
        "machine": machine(),
        "load average": "{:.2f} {:.2f} {:.2f} (1, 5, 15 min) at the start".format(*os.getloadavg()),
        "processes": f"2 workers (concurrency {concurrency} each), 1 server --no-worker,"
        " 1 submitter",
    }
    with fresh_database(server, "taskloom_events") as conninfo:
        url = as_url(conninfo)
        asyncio.run(create_schema(url))
        workers: list[WorkerProcess] = []
        served: Server | None = None
        follower: Follower | None = None
        try:
            workers = [
                WorkerProcess.taskloom(url, concurrency=concurrency, name=f"events-{i}")
                for i in range(2)
            ]
            served = Server(url)
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(lambda w: w.wait_ready(), workers))
            served.wait_ready()
            follower = Follower(served.url).start()
            if follower.error:
                raise SystemExit(f"the event stream failed: {follower.error}")
            offered = asyncio.run(steady_state(url, rate, seconds))
            backlog = int(scalar(conninfo, UNFINISHED))
            left = wait_finished(conninfo, int(offered["submitted"]), [*workers, served.worker])
            settled = settle(follower)
        finally:
            if follower is not None:
                follower.stop()
            server_exit = served.stop() if served is not None else None
            exits = [w.stop() for w in workers]
        ended = {
            str(run_id): (str(status), float(finished_at))
            for run_id, status, finished_at in rows(
                conninfo,
                "SELECT id, status, finished_at FROM runs WHERE finished_at IS NOT NULL",
            )
        }

    received: dict[str, float] = {}
    duplicates = unknown = 0
    for run_id, at in follower.finished:
        if run_id in received:
            duplicates += 1
        elif run_id not in ended:
            unknown += 1
        else:
            received[run_id] = at
    missing = [run_id for run_id in ended if run_id not in received]
    lags = [received[run_id] - ended[run_id][1] for run_id in received]
    share = 100.0 * len(received) / len(ended) if ended else 0.0
    statuses: dict[str, int] = {}
    for status, _ in ended.values():
        statuses[status] = statuses.get(status, 0) + 1

    n = int(offered["submitted"])
    figures["offered"] = (
        f"{n:,} runs in {offered['seconds']:.2f} s ({n / offered['seconds']:,.0f} runs/s,"
        f" asked {rate:,.0f}), {int(offered['batches']):,} submit_many"
    )
    figures["finished in the database"] = (
        f"{len(ended):,} ({', '.join(f'{k} {v:,}' for k, v in sorted(statuses.items()))});"
        f" {backlog:,} unfinished when the submitter stopped, {left:,} at the end"
    )
    figures["finished events received"] = (
        f"{share:.3f} % ({len(received):,} of {len(ended):,})  (target >= 99.9 %)"
    )
    figures["missing"] = f"{len(missing):,} runs finished without a `finished` event"
    figures["duplicates"] = f"{duplicates:,} `finished` events told again" + (
        f"; {unknown:,} for runs not finished in the database" if unknown else ""
    )
    if lags:
        figures["lag (receive - finished_at)"] = f"{percentiles(lags)}  (target p99 < 250 ms)"
    else:
        figures["lag (receive - finished_at)"] = "not measured: no `finished` event arrived"
    figures["other run events"] = ", ".join(
        f"{k} {v:,}" for k, v in sorted(follower.kinds.items()) if k != "finished"
    )
    figures["lagged"] = f"{follower.lagged:,} `lagged` events, {follower.dropped:,} dropped"
    if follower.error:
        figures["stream error"] = follower.error
    figures["settle"] = f"{settled:.1f} s after the database said all finished"
    figures["exit codes"] = (
        f"server {server_exit}, workers {', '.join(str(code) for code in exits)}"
    )
    report(
        f"events of a --no-worker server on PostgreSQL: {rate:,.0f} runs/s offered for"
        f" {seconds:g} s to 2 workers",
        figures,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=3_000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    main(args.server, args.rate, args.seconds, args.concurrency)
