"""Backpressure: bounded queues, `block` and `drop_oldest`, with a slow sink."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import AsyncIterator

import pytest

import taskloom
from support import WAIT, until
from taskloom.streams import Message, StageState, Subscription, SubscriptionClosed

PAYLOAD = 10_000  # bytes per message in the memory test


async def test_drop_oldest_keeps_the_newest_and_counts_the_rest() -> None:
    subscription = Subscription("t", maxsize=3, policy="drop_oldest")
    for t in range(10):
        await subscription.put(Message(t, t))
    assert [m.value for m in subscription.buffer] == [7, 8, 9]
    assert subscription.dropped == 7


async def test_block_holds_the_producer_until_the_consumer_takes() -> None:
    subscription = Subscription("t", maxsize=2, policy="block")
    subscription.low_water = 1
    produced: list[int] = []

    async def produce() -> None:
        for t in range(6):
            await subscription.put(Message(t, t))
            produced.append(t)

    producer = asyncio.create_task(produce())
    await until(_equals(produced, [0, 1]))
    await asyncio.sleep(0)
    assert produced == [0, 1]  # the queue is full: the third put waits
    assert subscription.pop().value == 0  # one left: at the low-water mark, the producer goes
    await until(_equals(produced, [0, 1, 2]))
    got = [subscription.pop().value]
    while len(got) < 5:
        got.append((await subscription.get()).value)
        assert len(subscription.buffer) <= subscription.maxsize
    await asyncio.wait_for(producer, WAIT)
    assert got == [1, 2, 3, 4, 5]
    assert subscription.dropped == 0


def _equals(value: list[int], expected: list[int]):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return value == expected

    return check


async def test_closing_releases_blocked_producers_and_ends_iteration() -> None:
    subscription = Subscription("t", maxsize=1)
    await subscription.put(Message(1, 1))
    producer = asyncio.create_task(subscription.put(Message(2, 2)))
    await asyncio.sleep(0)
    assert not producer.done()
    subscription.close()
    await asyncio.wait_for(producer, WAIT)
    assert [m async for m in subscription] == [Message(1, 1)]
    with pytest.raises(SubscriptionClosed):
        await subscription.get()


class Flow:
    """What the source has produced and the sink has taken, and the largest gap seen."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.produced = 0
        self.taken: list[int] = []
        self.widest = 0


flow = Flow(0)


@taskloom.task
async def fast_source() -> AsyncIterator[bytes]:
    for i in range(flow.total):
        flow.produced += 1
        # A source may yield a Message holding its port's type, to give it a timestamp.
        yield Message(i, i.to_bytes(4, "big") + bytes(PAYLOAD))  # type: ignore[misc]


@taskloom.task
async def slow_sink(frame: bytes) -> None:
    flow.taken.append(int.from_bytes(frame[:4], "big"))
    flow.widest = max(flow.widest, flow.produced - len(flow.taken))
    await asyncio.sleep(0.0005)  # the slowness under test: about 100x the source's pace


def slow_pipeline(backpressure: str, queue_size: int) -> taskloom.Pipeline:
    p = taskloom.Pipeline("slow")
    p.stage(fast_source, outputs=["frames"])
    p.stage(
        slow_sink,
        inputs={"frame": "frames"},
        queue_size=queue_size,
        backpressure=backpressure,
    )
    return p


async def test_block_loses_nothing_and_holds_the_source_back() -> None:
    global flow
    flow = Flow(300)
    async with taskloom.Engine("memory://") as engine:
        deployment = await engine.deploy(slow_pipeline("block", queue_size=20))
        await until(lambda: _taken(300))
        sink = deployment.status().stage("slow_sink")
        await deployment.stop()
    assert flow.taken == list(range(300))
    assert sink.dropped == 0
    # The source ran at most a queue (plus the message in hand) ahead of the sink.
    assert flow.widest <= 20 + 2


async def _taken(count: int) -> bool:
    return len(flow.taken) >= count


async def test_drop_oldest_never_holds_the_source_and_counts_what_it_drops() -> None:
    global flow
    flow = Flow(2000)
    async with taskloom.Engine("memory://") as engine:
        deployment = await engine.deploy(slow_pipeline("drop_oldest", queue_size=20))

        async def source_done_and_sink_drained() -> bool:
            status = deployment.status()
            source = status.stage("fast_source")
            sink = status.stage("slow_sink")
            drained = sink.messages_in + sink.dropped == 2000
            return source.state is StageState.FINISHED and drained

        await until(source_done_and_sink_drained)
        sink = deployment.status().stage("slow_sink")
        await deployment.stop()
    assert sink.dropped > 0
    assert sink.messages_in + sink.dropped == 2000
    assert flow.taken == sorted(flow.taken)  # what it got, it got in order
    assert flow.taken[-1] == 1999  # and the newest message is never the one dropped


@pytest.mark.parametrize("backpressure", ["block", "drop_oldest"])
async def test_a_slow_sink_keeps_memory_bounded(backpressure: str) -> None:
    global flow
    flow = Flow(2000)  # 20 MB of payload if it were all queued
    tracemalloc.start()
    try:
        async with taskloom.Engine("memory://") as engine:
            tracemalloc.reset_peak()
            deployment = await engine.deploy(slow_pipeline(backpressure, queue_size=50))

            async def source_done() -> bool:
                return deployment.status().stage("fast_source").state is StageState.FINISHED

            await until(source_done, timeout=30)
            _, peak = tracemalloc.get_traced_memory()
            await deployment.stop()
    finally:
        tracemalloc.stop()
    # 50 queued messages are 0.5 MB; allow for the engine and the interpreter's churn
    # (a few MB with the whole suite loaded), far below the 20 MB an unbounded queue holds.
    assert peak < 6_000_000, f"peak {peak:,} bytes"
