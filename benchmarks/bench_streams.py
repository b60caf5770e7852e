"""Stream pipelines: `adder(a, b)` with two synchronized inputs, in-process and over NATS.

    python benchmarks/bench_streams.py [--messages 300000]
    python benchmarks/bench_streams.py --nats nats://127.0.0.1:4222 [--messages 30000]
    python benchmarks/bench_streams.py --nats nats://127.0.0.1:4222 --one-process

In-process: a source stage yields `(a, b)` pairs (published on `numbers.a` and
`numbers.b` with one timestamp), `adder` adds them, a sink stage counts the sums; the
figure is sums per second. The baseline, measured in the same run, is the same work on
bare asyncio queues (two bounded input queues merged by timestamp, an output queue, a
counting consumer): what the loop can do with no framework.

Over NATS: the source runs in a child process (`--role source`), adder and sink in this
one; the figure is messages per second crossing NATS into `adder`, from the first to the
last. The baseline is raw nats-py: the same number of messages, published by a child
process and counted by a subscription here.

Over NATS in one process (`--one-process`): every stage here, on the NATS bus, nobody
else listening; the figure is sums per second, against the same pipeline on the
in-process bus in the same run. What it costs that every message is also encoded and
published to the server (which drops it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from _common import machine, report

import taskloom
from taskloom.streams import Message

N = int(os.environ.get("BENCH_STREAM_MESSAGES", "300000"))


@taskloom.task
async def numbers() -> AsyncIterator[tuple[int, int]]:
    for i in range(N):
        yield Message(i, (i, i))


@taskloom.task
def adder(a: int, b: int) -> int:
    return a + b


class Counter:
    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.first = 0.0
        self.done: asyncio.Event | None = None


counter = Counter()


@taskloom.task
def count(value: int) -> None:
    counter.count += 1
    if counter.count == 1:
        counter.first = time.perf_counter()
    if counter.count == counter.target and counter.done is not None:
        counter.done.set()


def pipeline() -> taskloom.Pipeline:
    p = taskloom.Pipeline("bench")
    p.stage(numbers, outputs=["numbers.a", "numbers.b"])
    p.stage(adder, inputs={"a": "numbers.a", "b": "numbers.b"}, outputs=["sums"])
    p.stage(count, inputs={"value": "sums"})
    return p


# the baseline: bare asyncio queues -----------------------------------------------------------
async def bare_queues(n: int) -> float:
    a: asyncio.Queue[tuple[int, int]] = asyncio.Queue(1000)
    b: asyncio.Queue[tuple[int, int]] = asyncio.Queue(1000)
    out: asyncio.Queue[tuple[int, int]] = asyncio.Queue(1000)
    total = 2 * n - 1

    async def source() -> None:
        for i in range(n):
            await a.put((i, i))
            await b.put((i, i))

    async def add() -> None:
        heads: list[tuple[int, int] | None] = [None, None]
        unread = [n, n]
        latest = [0, 0]
        have = [False, False]
        queues = (a, b)
        for _ in range(2 * n):
            for k in (0, 1):
                if heads[k] is None and unread[k]:
                    heads[k] = await queues[k].get()
                    unread[k] -= 1
            k = min((i for i in (0, 1) if heads[i] is not None), key=lambda i: heads[i][0])  # type: ignore[index]
            timestamp, value = heads[k]  # type: ignore[misc]
            heads[k] = None
            latest[k], have[k] = value, True
            if have[0] and have[1]:
                await out.put((timestamp, latest[0] + latest[1]))

    async def sink() -> None:
        for _ in range(total):
            await out.get()

    start = time.perf_counter()
    tasks = [asyncio.create_task(c) for c in (source(), add(), sink())]
    await tasks[2]
    elapsed = time.perf_counter() - start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return total / elapsed


async def in_process(n: int, bus: str | None = None) -> float:
    counter.count, counter.target = 0, 2 * n - 1
    counter.done = asyncio.Event()
    async with taskloom.Engine("memory://") as engine:
        start = time.perf_counter()
        deployment = await engine.deploy(pipeline(), bus=bus, name=f"bench-{os.getpid()}")
        await counter.done.wait()
        elapsed = time.perf_counter() - start
        await deployment.stop()
    return counter.target / elapsed


# over NATS ---------------------------------------------------------------------------------
def child(role: str, url: str, name: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BENCH_STREAM_MESSAGES": str(N)}
    here = Path(__file__).resolve()
    command = [sys.executable, str(here), "--role", role, "--nats", url, "--name", name]
    return subprocess.Popen(command, env=env, cwd=here.parent)


async def run_source(url: str, name: str) -> None:
    async with taskloom.Engine("memory://") as engine:
        deployment = await engine.deploy(pipeline(), name=name, bus=url, stages=["numbers"])
        source = deployment.runners[0].task
        assert source is not None
        await source  # the source has yielded everything
        await deployment.stop()  # sends what is buffered before closing


async def over_nats(url: str, n: int) -> tuple[float, float, int]:
    counter.count, counter.target = 0, 2 * n - 1
    counter.done = asyncio.Event()
    name = f"bench-{os.getpid()}"
    async with taskloom.Engine("memory://") as engine:
        deployment = await engine.deploy(pipeline(), name=name, bus=url, stages=["adder", "count"])
        process = child("source", url, name)
        # NATS has no flow control: a receiver that falls too far behind loses messages
        # (counted by the bus). Done when all arrived, or when nothing more comes.
        last, idle = -1, 0.0
        while not counter.done.is_set() and idle < 3.0:
            await asyncio.sleep(0.05)
            idle = idle + 0.05 if counter.count == last else 0.0
            last = counter.count
        elapsed = time.perf_counter() - counter.first - idle
        adder_in = deployment.runners[0].messages_in
        lost = getattr(deployment.bus, "slow_consumer_drops", 0)
        await deployment.stop()
        process.wait()
    return adder_in / elapsed, counter.count / elapsed, lost


async def raw_nats_publisher(url: str, subject: str) -> None:
    import nats

    nc = await nats.connect(url)
    for i in range(2 * N):
        await nc.publish(subject, i.to_bytes(8, "big"))
    await nc.drain()


async def raw_nats(url: str, n: int) -> float:
    import nats

    nc = await nats.connect(url)
    done = asyncio.Event()
    seen = 0
    first = 0.0

    async def on_message(msg: object) -> None:
        nonlocal seen, first
        seen += 1
        if seen == 1:
            first = time.perf_counter()
        if seen == 2 * n:
            done.set()

    subject = f"bench-raw-{os.getpid()}"
    await nc.subscribe(subject, cb=on_message, pending_msgs_limit=4 * n)
    await nc.flush()
    process = child("raw", url, subject)
    await done.wait()
    elapsed = time.perf_counter() - first
    process.wait()
    await nc.drain()
    return 2 * n / elapsed


async def main(args: argparse.Namespace) -> None:
    if args.role == "source":
        await run_source(args.nats, args.name)
        return
    if args.role == "raw":
        await raw_nats_publisher(args.nats, args.name)
        return
    baseline = await bare_queues(N)
    figures = {"machine": machine(), "messages": f"{N:,} pairs"}
    figures["bare asyncio queues"] = f"{baseline:,.0f} outputs/s"
    if args.nats and args.one_process:
        local = await in_process(N)
        on_nats = await in_process(N, bus=args.nats)
        figures["taskloom in-process bus"] = f"{local:,.0f} outputs/s"
        figures["taskloom on NATS, one process"] = f"{on_nats:,.0f} outputs/s"
        figures["ratio to the in-process bus"] = f"{on_nats / local:.2f}"
        report("adder(a, b), every stage in one process, on the NATS bus", figures)
        return
    if args.nats:
        raw = await raw_nats(args.nats, N)
        messages, outputs, lost = await over_nats(args.nats, N)
        figures["raw nats-py, 2 processes"] = f"{raw:,.0f} msg/s"
        figures["taskloom over NATS, 2 processes"] = (
            f"{messages:,.0f} msg/s into adder ({outputs:,.0f} outputs/s)"
        )
        figures["dropped by NATS (receiver behind)"] = f"{lost:,}"
        figures["ratio to raw nats-py"] = f"{messages / raw:.2f}"
        figures["target"] = ">= 50,000 msg/s (streamtasks over TCP ~9,000)"
        report("adder(a, b) across two processes over NATS", figures)
        return
    rate = await in_process(N)
    figures["taskloom in-process"] = f"{rate:,.0f} outputs/s"
    figures["ratio to bare asyncio"] = f"{rate / baseline:.2f}"
    figures["target"] = ">= 300,000 outputs/s (streamtasks ~6,800)"
    report("adder(a, b), two synchronized inputs, in-process", figures)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=None, help="pairs of inputs")
    parser.add_argument("--nats", default=None, help="measure over NATS at this URL")
    parser.add_argument(
        "--one-process", action="store_true", help="with --nats: every stage in this process"
    )
    parser.add_argument("--role", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--name", default="bench", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.messages is not None:
        N = arguments.messages
        os.environ["BENCH_STREAM_MESSAGES"] = str(N)
    asyncio.run(main(arguments))
