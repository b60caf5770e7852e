"""Stages from task functions, classes and async generators, on the in-process bus."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

import taskloom
from support import WAIT, load_helper, until
from taskloom.policies import RestartPolicy
from taskloom.store import DeploymentStore
from taskloom.streams import (
    Message,
    PortValidationError,
    StageConfigError,
    StageState,
    Subscription,
)

stages = load_helper("stream_stages")


@pytest.fixture
async def engine() -> AsyncIterator[taskloom.Engine]:
    async with taskloom.Engine("memory://") as engine:
        yield engine


async def take(subscription: Subscription, count: int) -> list[Message]:
    async with asyncio.timeout(WAIT):
        return [await subscription.get() for _ in range(count)]


async def test_the_guides_adder_fires_once_both_inputs_have_a_value(
    engine: taskloom.Engine,
) -> None:
    p = taskloom.Pipeline("guide")
    # Waiting for ever (no idleness): what is held stays held, whatever the machine's pace.
    p.stage(stages.adder, inputs={"a": "in.a", "b": "in.b"}, outputs=["sums"], idle_after=None)
    deployment = await engine.deploy(p)
    sums = deployment.subscribe("sums")
    await deployment.publish("in.a", 5, timestamp=1000)
    await deployment.publish("in.b", 1, timestamp=1001)
    await deployment.publish("in.a", 7, timestamp=1002)
    await deployment.publish("in.b", 10, timestamp=1003)
    # Nothing until b has a value; then every message, with the latest of the other input.
    assert await take(sums, 2) == [Message(1001, 6), Message(1002, 8)]
    # Synchronized: b@1003 waits until `a` shows nothing older can come.
    assert not sums.buffer
    await deployment.publish("in.a", 1, timestamp=1004)
    assert await take(sums, 1) == [Message(1003, 17)]
    await deployment.stop()


async def test_the_guides_demo2_keeps_state_and_uses_its_config(engine: taskloom.Engine) -> None:
    p = taskloom.Pipeline("demo2")
    p.stage(stages.demo2, inputs={"a": "in"}, outputs=["out"], config={"step": 3})
    deployment = await engine.deploy(p)
    out = deployment.subscribe("out")
    for i, value in enumerate([10, 10, 10]):
        await deployment.publish("in", value, timestamp=i)
    assert [m.value for m in await take(out, 3)] == [13, 16, 19]
    await deployment.stop()


async def test_the_default_config_is_built_when_none_is_given(engine: taskloom.Engine) -> None:
    p = taskloom.Pipeline("demo2")
    p.stage(stages.demo2, inputs={"a": "in"}, outputs=["out"])
    deployment = await engine.deploy(p)
    out = deployment.subscribe("out")
    await deployment.publish("in", 1, timestamp=1)
    await deployment.publish("in", 1, timestamp=2)
    assert [m.value for m in await take(out, 2)] == [2, 3]
    await deployment.stop()


async def test_state_works_without_config(engine: taskloom.Engine) -> None:
    p = taskloom.Pipeline("totals")
    p.stage(stages.running_total, inputs={"value": "in"}, outputs=["out"])
    deployment = await engine.deploy(p)
    out = deployment.subscribe("out")
    for i, value in enumerate([1, 2, 3, 4]):
        await deployment.publish("in", value, timestamp=i)
    assert [m.value for m in await take(out, 4)] == [1, 3, 6, 10]
    await deployment.stop()


async def test_timestamp_is_that_of_the_triggering_message(engine: taskloom.Engine) -> None:
    p = taskloom.Pipeline("stamps")
    p.stage(stages.stamp, inputs={"value": "in"}, outputs=["out"])
    deployment = await engine.deploy(p)
    out = deployment.subscribe("out")
    await deployment.publish("in", 1, timestamp=123)
    await deployment.publish("in", 2, timestamp=456)
    assert await take(out, 2) == [Message(123, "1@123"), Message(456, "2@456")]
    await deployment.stop()


async def test_a_tuple_gives_one_output_per_item_and_none_items_publish_nothing(
    engine: taskloom.Engine,
) -> None:
    p = taskloom.Pipeline("split")
    p.stage(stages.split, inputs={"value": "in"}, outputs=["doubled", "labels"])
    deployment = await engine.deploy(p)
    doubled = deployment.subscribe("doubled")
    labels = deployment.subscribe("labels")
    for value in (1, 2, 3, 4):
        await deployment.publish("in", value, timestamp=value)
    assert await take(doubled, 4) == [Message(t, 2 * t) for t in (1, 2, 3, 4)]
    assert await take(labels, 2) == [Message(2, "even 2"), Message(4, "even 4")]
    assert not labels.buffer
    await deployment.stop()


async def test_returning_none_publishes_nothing(engine: taskloom.Engine) -> None:
    p = taskloom.Pipeline("evens")
    p.stage(stages.evens_only, inputs={"value": "in"}, outputs=["out"])
    deployment = await engine.deploy(p)
    out = deployment.subscribe("out")
    for value in range(1, 7):
        await deployment.publish("in", value, timestamp=value)
    assert [m.value for m in await take(out, 3)] == [2, 4, 6]
    await until(_stage_in(deployment, "evens_only", 6))
    assert not out.buffer
    status = deployment.status().stage("evens_only")
    assert (status.messages_in, status.messages_out) == (6, 3)
    await deployment.stop()


def _stage_in(deployment: taskloom.streams.Deployment, stage: str, count: int):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return deployment.status().stage(stage).messages_in >= count

    return check


async def test_synchronized_inputs_are_released_in_timestamp_order(
    engine: taskloom.Engine,
) -> None:
    p = taskloom.Pipeline("sync")
    p.stage(stages.pair, inputs={"a": "a", "b": "b"}, outputs=["out"], idle_after=None)
    deployment = await engine.deploy(p)
    out = deployment.subscribe("out")
    # All of `a` arrives before any of `b`: the stage still sees them by timestamp.
    for t in (1, 3, 5):
        await deployment.publish("a", t, timestamp=t)
    for t in (2, 4, 6):
        await deployment.publish("b", t, timestamp=t)
    got = [m.value for m in await take(out, 4)]
    assert got == [[2, 1, 2], [3, 3, 2], [4, 3, 4], [5, 5, 4]]
    # b@6 waits: `a` could still deliver something older.
    await until(_stage_in(deployment, "pair", 5))
    assert not out.buffer
    await deployment.publish("a", 7, timestamp=7)
    assert [m.value for m in await take(out, 1)] == [[6, 5, 6]]
    await deployment.stop()


async def test_unsynchronized_inputs_are_handled_as_they_come(engine: taskloom.Engine) -> None:
    p = taskloom.Pipeline("unsync")
    p.stage(stages.pair, inputs={"a": "a", "b": "b"}, outputs=["out"], synchronized=False)
    deployment = await engine.deploy(p)
    out = deployment.subscribe("out")
    await deployment.publish("b", 10, timestamp=10)
    await until(_stage_in(deployment, "pair", 1))  # b is taken without waiting for a
    for t in (1, 3, 5):
        await deployment.publish("a", t, timestamp=t)
    got = [m.value for m in await take(out, 3)]
    assert got == [[1, 1, 10], [3, 3, 10], [5, 5, 10]]
    await deployment.stop()


async def test_async_and_threaded_functions(engine: taskloom.Engine) -> None:
    p = taskloom.Pipeline("kinds")
    p.stage(stages.slow_async, inputs={"value": "in"}, outputs=["plus"])
    p.stage(stages.in_thread, inputs={"value": "plus"}, outputs=["times"])
    deployment = await engine.deploy(p)
    out = deployment.subscribe("times")
    for value in (1, 2):
        await deployment.publish("in", value, timestamp=value)
    assert await take(out, 2) == [Message(1, 20), Message(2, 30)]
    await deployment.stop()


async def test_a_source_and_a_class_stage(engine: taskloom.Engine) -> None:
    p = taskloom.Pipeline("classy")
    p.stage(stages.counter_source, outputs=["numbers"], config={"step": 3})
    p.stage(
        stages.KeepMultiples,
        inputs={"value": "numbers"},
        outputs={"kept": "kept", "count": "seen"},
        config={"step": 2},
    )
    kept: list[Message] = []

    async def collect(deployment: taskloom.streams.Deployment) -> None:
        subscription = deployment.subscribe("kept")
        kept.extend(await take(subscription, 3))

    # Subscribing before the source runs: deploy with the class stage only, then the source.
    deployment = await engine.deploy(p, stages=["KeepMultiples"])
    collector = asyncio.create_task(collect(deployment))
    await asyncio.sleep(0)  # let the collector subscribe
    source = await engine.deploy(p, name="classy", stages=["counter_source"], bus=deployment.bus)
    await asyncio.wait_for(collector, WAIT)
    # The source yields 0, 3, 6, 9, 12 at 100..104; the stage keeps the even ones.
    assert kept == [Message(100, 0), Message(102, 6), Message(104, 12)]
    await until(_finished(source, "counter_source"))
    await source.stop()
    await deployment.stop()


def _finished(deployment: taskloom.streams.Deployment, stage: str):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return deployment.status().stage(stage).state is StageState.FINISHED

    return check


async def test_a_stage_that_raises_is_restarted_and_the_error_recorded(
    engine: taskloom.Engine,
) -> None:
    p = taskloom.Pipeline("fragile")
    p.stage(stages.fragile, inputs={"value": "in"}, outputs=["out"])
    deployment = await engine.deploy(p)
    out = deployment.subscribe("out")
    for t, value in enumerate([1, -1, 2]):
        await deployment.publish("in", value, timestamp=t)
    assert [m.value for m in await take(out, 2)] == [1, 2]
    status = deployment.status().stage("fragile")
    assert (status.errors, status.restarts, status.state) == (1, 1, StageState.RUNNING)
    assert status.last_error is not None
    assert status.last_error.type == "ValueError"
    assert status.last_error.message == "negative value -1"
    await deployment.stop()


async def test_a_stage_fails_when_its_restart_policy_gives_up(engine: taskloom.Engine) -> None:
    p = taskloom.Pipeline("gives-up")
    policy = RestartPolicy(restart_on_exception=False)
    p.stage(stages.fragile, inputs={"value": "in"}, outputs=["out"], restart=policy)
    deployment = await engine.deploy(p)
    await deployment.publish("in", -5, timestamp=1)
    await until(_state(deployment, "fragile", StageState.FAILED))
    assert deployment.status().stage("fragile").errors == 1
    # A failed stage no longer listens: publishing to it does not block.
    assert not await deployment.has_subscribers("in")
    await deployment.stop()


def _state(deployment: taskloom.streams.Deployment, stage: str, state: StageState):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return deployment.status().stage(stage).state is state

    return check


async def test_config_is_validated_at_deploy(engine: taskloom.Engine) -> None:
    p = taskloom.Pipeline("bad-config")
    p.stage(stages.demo2, inputs={"a": "in"}, outputs=["out"], config={"step": "lots"})
    with pytest.raises(StageConfigError) as caught:
        await engine.deploy(p)
    assert "stage 'demo2'" in str(caught.value)
    assert "config 'step'" in str(caught.value)
    assert isinstance(caught.value, taskloom.InputValidationError)


async def test_publish_checks_the_value_against_the_inputs_it_feeds(
    engine: taskloom.Engine,
) -> None:
    p = taskloom.Pipeline("typed")
    p.stage(stages.adder, inputs={"a": "in.a", "b": "in.b"}, outputs=["sums"])
    p.stage(stages.norm, inputs={"point": "points"}, outputs=["norms"])
    deployment = await engine.deploy(p)
    with pytest.raises(PortValidationError) as caught:
        await deployment.publish("in.a", "five")
    message = str(caught.value)
    assert "topic 'in.a'" in message
    assert "stage 'adder' input 'a'" in message
    assert "integer" in message
    norms = deployment.subscribe("norms")
    await deployment.publish("points", {"x": 3, "y": -4}, timestamp=7)  # validated to a Point
    await deployment.publish("points", stages.Point(x=1, y=1), timestamp=8)
    assert await take(norms, 2) == [Message(7, 7), Message(8, 2)]
    await deployment.stop()


async def test_the_same_pipeline_deployed_twice_has_no_crosstalk(engine: taskloom.Engine) -> None:
    bus = taskloom.streams.MemoryBus()
    p = taskloom.Pipeline("twice")
    p.stage(stages.running_total, inputs={"value": "in"}, outputs=["out"])
    first = await engine.deploy(p, name="first", bus=bus)
    second = await engine.deploy(p, name="second", bus=bus)
    out_first, out_second = first.subscribe("out"), second.subscribe("out")
    await first.publish("in", 1, timestamp=1)
    await second.publish("in", 100, timestamp=1)
    await first.publish("in", 2, timestamp=2)
    assert [m.value for m in await take(out_first, 2)] == [1, 3]
    assert [m.value for m in await take(out_second, 1)] == [100]
    assert not out_second.buffer
    await first.stop()
    await second.stop()


async def test_a_producer_can_ask_whether_anyone_listens(engine: taskloom.Engine) -> None:
    p = taskloom.Pipeline("listen")
    p.stage(stages.running_total, inputs={"value": "in"}, outputs=["out"])
    deployment = await engine.deploy(p)
    assert await deployment.has_subscribers("in")
    assert not await deployment.has_subscribers("out")
    subscription = deployment.subscribe("out")
    assert await deployment.has_subscribers("out")
    subscription.close()
    assert not await deployment.has_subscribers("out")
    await deployment.stop()


async def test_status_is_saved_in_the_store_and_a_stop_request_stops(
    engine: taskloom.Engine,
) -> None:
    p = taskloom.Pipeline("saved")
    p.stage(stages.running_total, inputs={"value": "in"}, outputs=["out"])
    deployment = await engine.deploy(p, status_interval=0.02)
    for t in range(3):
        await deployment.publish("in", t, timestamp=t)

    async def saved() -> bool:
        status = await engine.deployment_status("saved")
        return status.stage("running_total").messages_in == 3

    await until(saved)
    status = await engine.deployment_status("saved")
    stage = status.stage("running_total")
    assert (status.state.value, stage.messages_out, stage.last_timestamp) == ("running", 3, 2)
    assert engine.store is not None
    taskloom.streams.request_stop(engine.store, "saved")
    await asyncio.wait_for(deployment.wait(), WAIT)
    status = await engine.deployment_status("saved")
    assert status.state.value == "stopped"
    assert status.stage("running_total").state is StageState.STOPPED


async def test_closing_the_engine_stops_its_deployments() -> None:
    p = taskloom.Pipeline("closing")
    p.stage(stages.running_total, inputs={"value": "in"}, outputs=["out"])
    async with taskloom.Engine("memory://") as engine:
        deployment = await engine.deploy(p)
    assert deployment.stopped
    assert deployment.status().stage("running_total").state is StageState.STOPPED


class HeldSaves:
    """The engine's store, with a status save that waits, once asked to, for a release."""

    def __init__(self, store: object) -> None:
        self._store = store
        self.hold = False
        self.held = threading.Event()
        self.release = threading.Event()
        self.done = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def save_deployment_part(self, part: Any) -> None:
        if self.hold:
            self.held.set()
            assert self.release.wait(WAIT)
            self._store.save_deployment_part(part)  # type: ignore[attr-defined]
            self.hold = False
            self.done.set()
            return
        self._store.save_deployment_part(part)  # type: ignore[attr-defined]


async def test_a_status_save_in_flight_at_a_stop_does_not_mark_the_part_running_again(
    engine: taskloom.Engine,
) -> None:
    p = taskloom.Pipeline("late")
    p.stage(stages.running_total, inputs={"value": "in"}, outputs=["out"])
    store = HeldSaves(engine.store)
    deployment = await taskloom.streams.deploy(
        p, store=cast(DeploymentStore, store), status_interval=0.01
    )
    store.hold = True
    assert await asyncio.to_thread(store.held.wait, WAIT)
    # The stop cancels the status task, but not the thread its save runs in.
    stopping = asyncio.create_task(deployment.stop())
    # Without the store lock the stop ends well within this while the save is held.
    await asyncio.wait({stopping}, timeout=0.5)
    store.release.set()
    await asyncio.wait_for(stopping, WAIT)
    assert await asyncio.to_thread(store.done.wait, WAIT)
    assert engine.store is not None
    status = taskloom.streams.deployment_status(engine.store, "late")
    assert [part.state.value for part in status.parts] == ["stopped"]
    assert status.state.value == "stopped"
