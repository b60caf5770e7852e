"""Kept topics: on NATS a pipeline's `keep` topics go through a JetStream stream, so a
stage reading one resumes after a restart where it left off, and a new reader replays
what is kept."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import nats
import pytest
from nats.js.errors import NotFoundError

import taskloom
from nats_support import require_nats
from support import WAIT
from taskloom.streams import Message, Subscription, deploy
from taskloom.streams.buses.nats import NatsBus


@taskloom.task
def scale(value: int) -> int:
    return value * 10


def pipeline(name: str, stage: str = "scale") -> taskloom.Pipeline:
    p = taskloom.Pipeline(name)
    p.keep("numbers", max_age=600)
    p.stage(scale, name=stage, inputs={"value": "numbers"}, outputs=["scaled"])
    return p


@pytest.fixture
async def name() -> AsyncIterator[str]:
    """A deployment name of its own; its JetStream stream is deleted afterwards."""
    url = require_nats()
    found = f"kept-{uuid.uuid4().hex[:8]}"
    yield found
    client = await nats.connect(url)
    try:
        await client.jetstream().delete_stream(f"taskloom_{found}")
    except NotFoundError:
        pass
    finally:
        await client.close()


async def take(subscription: Subscription, count: int) -> list[int]:
    async with asyncio.timeout(WAIT):
        return [(await subscription.get()).value for _ in range(count)]


async def test_a_stage_reading_a_kept_topic_resumes_after_a_restart(name: str) -> None:
    url = require_nats()
    outside = NatsBus(url)
    await outside.start()
    try:
        scaled = outside.subscribe(f"{name}.scaled")
        assert scaled.ready is not None
        await asyncio.wait_for(scaled.ready, WAIT)
        first = await deploy(pipeline(name), bus=url)
        for value in (1, 2, 3):
            await first.publish("numbers", value, timestamp=value)
        assert await take(scaled, 3) == [10, 20, 30]
        await first.stop()

        # Sent while no stage reads the topic: plain NATS would drop these.
        for value in (4, 5, 6):
            await outside.publish(f"{name}.numbers", Message(value, value))
        await outside.flush()
        again = await deploy(pipeline(name), bus=url)
        # Where it left off: the three it missed, none of the three it had.
        assert await take(scaled, 3) == [40, 50, 60]
        # A reader that is new to the topic replays everything kept.
        newcomer = await deploy(pipeline(name, stage="late"), name=name, bus=url)
        assert sorted(await take(scaled, 6)) == [10, 20, 30, 40, 50, 60]
        await newcomer.stop()
        await again.stop()
        assert not scaled.buffer
    finally:
        await outside.close()


async def test_kept_topics_are_described_and_ignored_in_process() -> None:
    p = pipeline("local")
    assert p.topics()["numbers"]["kept"] is True
    deployment = await deploy(p)  # the in-process bus keeps nothing, and says nothing
    out = deployment.subscribe("scaled")
    await deployment.publish("numbers", 7, timestamp=1)
    assert await take(out, 1) == [70]
    await deployment.stop()


def test_keep_is_read_from_the_data_form() -> None:
    stages = [{"task": f"{__name__}:scale", "inputs": {"value": "in"}}]
    listed = taskloom.Pipeline.from_dict({"name": "a", "keep": ["in", "out"], "stages": stages})
    assert (listed.kept_topics, listed.keep_max_age) == (["in", "out"], None)
    timed = taskloom.Pipeline.from_dict(
        {"name": "b", "keep": {"topics": ["in"], "max_age": 60}, "stages": stages}
    )
    assert (timed.kept_topics, timed.keep_max_age) == (["in"], 60.0)
    for bad, problem in [
        ({"topics": ["in"], "days": 1}, "keep: unknown key(s) days"),
        ("in", "keep: expected a list of topics"),
        (["no spaces"], "kept topic 'no spaces' is not a valid name"),
        ({"topics": ["in"], "max_age": -1}, "max_age -1: expected seconds"),
    ]:
        with pytest.raises(taskloom.WiringError) as caught:
            taskloom.Pipeline.from_dict({"name": "c", "keep": bad, "stages": stages})
        assert any(problem in p for p in caught.value.problems), caught.value.problems
