"""Synchronized stages and idle inputs: an input quiet for `idle_after` seconds holds
nothing back, and timestamp order stays exact while every input is active."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import taskloom
from support import WAIT, load_helper
from taskloom.streams import Message, StreamStage, Subscription, WiringError, deploy
from taskloom.streams.stages import DEFAULT_IDLE_AFTER

stages = load_helper("stream_stages")


@pytest.fixture
async def engine() -> AsyncIterator[taskloom.Engine]:
    async with taskloom.Engine("memory://") as engine:
        yield engine


async def take(subscription: Subscription, count: int) -> list[Message]:
    async with asyncio.timeout(WAIT):
        return [await subscription.get() for _ in range(count)]


async def test_a_message_held_by_a_quiet_input_goes_on_after_idle_after(
    engine: taskloom.Engine,
) -> None:
    p = taskloom.Pipeline("guide")
    p.stage(stages.adder, inputs={"a": "in.a", "b": "in.b"}, outputs=["sums"])
    deployment = await engine.deploy(p)
    sums = deployment.subscribe("sums")
    loop = asyncio.get_running_loop()
    await deployment.publish("in.a", 5, timestamp=1000)
    sent = loop.time()
    await deployment.publish("in.b", 7, timestamp=1001)
    # b@1001 is held while `a` could still send something older, then `a` counts as idle.
    assert await take(sums, 1) == [Message(1001, 12)]
    assert loop.time() - sent >= DEFAULT_IDLE_AFTER
    await deployment.stop()


async def test_a_stage_with_one_fast_and_one_silent_input_keeps_firing(
    engine: taskloom.Engine,
) -> None:
    p = taskloom.Pipeline("rates")
    p.stage(stages.pair, inputs={"a": "slow", "b": "fast"}, outputs=["out"], idle_after=0.02)
    deployment = await engine.deploy(p)
    out = deployment.subscribe("out")
    await deployment.publish("slow", -1, timestamp=1)  # and then nothing, ever
    for burst in range(3):  # the fast input pauses between bursts: active again each time
        first = 2 + 100 * burst
        for t in range(first, first + 100):
            await deployment.publish("fast", t, timestamp=t)
        got = await take(out, 100)
        assert [m.value for m in got] == [[t, -1, t] for t in range(first, first + 100)]
    assert deployment.status().stage("pair").messages_in == 301
    await deployment.stop()


async def test_a_late_message_from_an_idle_input_is_released_not_dropped(
    engine: taskloom.Engine,
) -> None:
    p = taskloom.Pipeline("late")
    p.stage(stages.pair, inputs={"a": "a", "b": "b"}, outputs=["out"], idle_after=0.01)
    deployment = await engine.deploy(p)
    out = deployment.subscribe("out")
    await deployment.publish("a", 1, timestamp=10)
    await deployment.publish("b", 2, timestamp=20)
    assert [m.value for m in await take(out, 1)] == [[20, 1, 2]]  # `a` went idle
    # `a` comes back with an older timestamp than b@20, already released: out of order,
    # the one case the docs name, and it is delivered.
    await deployment.publish("a", 3, timestamp=15)
    assert [m.value for m in await take(out, 1)] == [[15, 3, 2]]
    await deployment.stop()


async def test_idle_after_none_waits_for_ever(engine: taskloom.Engine) -> None:
    p = taskloom.Pipeline("patient")
    p.stage(stages.pair, name="patient", inputs={"a": "a", "b": "b"}, outputs=["held"],
            idle_after=None)  # fmt: skip
    p.stage(stages.pair, name="eager", inputs={"a": "a", "b": "b"}, outputs=["released"])
    deployment = await engine.deploy(p)
    held, released = deployment.subscribe("held"), deployment.subscribe("released")
    await deployment.publish("a", 1, timestamp=1)
    await deployment.publish("b", 2, timestamp=2)
    await deployment.publish("b", 3, timestamp=3)
    # The stage beside it, with the default idleness, has gone on without `a`...
    assert [m.value for m in await take(released, 2)] == [[2, 1, 2], [3, 1, 3]]
    # ... while this one still holds b@2: `a` may yet send something older.
    assert not held.buffer
    await deployment.publish("a", 4, timestamp=4)
    await deployment.publish("b", 5, timestamp=5)  # a@4 was held too: `b` was at 3
    assert [m.value for m in await take(held, 3)] == [[2, 1, 2], [3, 1, 3], [4, 4, 3]]
    await deployment.stop()


class Recorder(StreamStage):
    """A class stage that passes every message on as (port, timestamp)."""

    inputs = {"a": int, "b": int}
    outputs = {"seen": list}

    async def run(self, io: taskloom.streams.StageIO) -> None:
        async for port, message in io:
            await io.publish("seen", [port, message.timestamp], timestamp=message.timestamp)


async def test_a_class_stage_goes_on_without_an_idle_input(engine: taskloom.Engine) -> None:
    p = taskloom.Pipeline("classy")
    p.stage(Recorder, inputs={"a": "a", "b": "b"}, outputs=["seen"], idle_after=0.01)
    deployment = await engine.deploy(p)
    seen = deployment.subscribe("seen")
    await deployment.publish("b", 0, timestamp=5)
    assert [m.value for m in await take(seen, 1)] == [["b", 5]]
    await deployment.stop()


@pytest.mark.parametrize("value", [-1, "soon", True, float("nan")])
def test_idle_after_must_be_seconds_or_none(value: object) -> None:
    p = taskloom.Pipeline("bad")
    with pytest.raises(WiringError, match="idle_after"):
        p.stage(stages.pair, inputs={"a": "a", "b": "b"}, idle_after=value)  # type: ignore[arg-type]


def test_idle_after_is_read_from_the_data_form() -> None:
    p = taskloom.Pipeline.from_dict(
        {
            "name": "yaml",
            "stages": [
                {
                    "task": "stream_stages:pair",
                    "inputs": {"a": "a", "b": "b"},
                    "idle_after": None,
                }
            ],
        }
    )
    assert p.get("pair").idle_after is None


# --- the order while every input is active: a property ----------------------------------------
@st.composite
def arrivals(draw: st.DrawFn) -> list[tuple[int, int]]:
    """(input, timestamp) in arrival order: three inputs, timestamps never going back on
    one input, the inputs interleaved at random (a message may arrive long after later
    timestamps of other inputs)."""
    counts = draw(st.lists(st.integers(0, 12), min_size=3, max_size=3))
    streams = [sorted(draw(st.lists(st.integers(1, 60), min_size=n, max_size=n))) for n in counts]
    order = draw(st.permutations([i for i, n in enumerate(counts) for _ in range(n)]))
    cursor = [0, 0, 0]
    found = []
    for i in order:
        found.append((i, streams[i][cursor[i]]))
        cursor[i] += 1
    return found


@taskloom.task
def first_of_three(a: int, b: int, c: int, timestamp: int) -> int:
    return timestamp


async def _released_order(messages: list[tuple[int, int]], yield_every: int) -> list[int]:
    p = taskloom.Pipeline("order")
    # Idleness never comes into play here: every input is active throughout.
    p.stage(first_of_three, inputs={"a": "a", "b": "b", "c": "c"}, outputs=["out"], idle_after=60)
    deployment = await deploy(p)
    out = deployment.subscribe("out", maxsize=100)
    topics = ("a", "b", "c")
    for topic in topics:  # every input has a value before the others come
        await deployment.publish(topic, 0, timestamp=0)
    for count, (i, timestamp) in enumerate(messages):
        await deployment.publish(topics[i], 0, timestamp=timestamp)
        if count % yield_every == 0:
            await asyncio.sleep(0)  # let the stage run between arrivals
    for topic in topics:  # the end: nothing older can come on any input
        await deployment.publish(topic, 0, timestamp=1000)
    got = [m.timestamp for m in await take(out, len(messages) + 4)]
    await deployment.stop()
    return got


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=arrivals(), yield_every=st.integers(1, 5))
def test_synchronized_order_is_exact_while_every_input_is_active(
    messages: list[tuple[int, int]], yield_every: int
) -> None:
    released = asyncio.run(_released_order(messages, yield_every))
    # The first fire is the third zero (the other two were taken before every input had a
    # value); then every message, in timestamp order, the three ends last.
    assert released == [0, *sorted(t for _, t in messages), 1000, 1000, 1000]
