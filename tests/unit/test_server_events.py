"""The event hub's subscriptions: filters, and a bounded queue that reports what it lost."""

from __future__ import annotations

import asyncio

import pytest

from taskloom.server import events
from taskloom.server.events import Event, EventFilter, Subscription


def run_event(task: str, run_id: str = "r1") -> Event:
    return Event("run", {"kind": "finished", "run": {"id": run_id}}, run_id, task)


def test_filters_pick_events_by_type_run_task_and_service() -> None:
    service = Event("service", {"name": "ticker"}, service="ticker")
    assert EventFilter().wants(run_event("adder"))
    assert EventFilter(types=frozenset({"service"})).wants(service)
    assert not EventFilter(types=frozenset({"service"})).wants(run_event("adder"))
    assert EventFilter(task="adder").wants(run_event("adder"))
    assert not EventFilter(task="adder").wants(run_event("other"))
    assert not EventFilter(run_id="r2").wants(run_event("adder", "r1"))
    assert not EventFilter(service="pump").wants(service)


def test_a_parent_filter_keeps_the_run_and_its_children() -> None:
    workflow = Event("run", {"kind": "started"}, "wf", "workflow:w")
    step = Event("run", {"kind": "finished"}, "s1", "adder", parent_id="wf")
    line = Event("log", {"run_id": "s1"}, "s1", "adder", parent_id="wf")
    other = Event("run", {"kind": "finished"}, "s2", "adder", parent_id="wf2")
    service = Event("service", {"name": "ticker"}, service="ticker")
    wanted = EventFilter(parent_id="wf")
    assert [wanted.wants(e) for e in (workflow, step, line, other, service)] == [
        True,
        True,
        True,
        False,
        False,
    ]


async def test_a_slow_subscriber_loses_events_and_is_told_how_many(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(events, "QUEUE_SIZE", 3)
    subscription = Subscription(EventFilter())
    for number in range(5):
        subscription.offer(run_event("adder", f"r{number}"))
    received = []
    stream = subscription.events()
    for _ in range(4):
        received.append(await asyncio.wait_for(anext(stream), 1))
    assert [e.type for e in received] == ["lagged", "run", "run", "run"]
    assert received[0].data == {"dropped": 2}
    assert [e.run_id for e in received[1:]] == ["r0", "r1", "r2"]
    subscription.offer(run_event("adder", "r5"))
    after = await asyncio.wait_for(anext(stream), 1)
    assert (after.type, after.run_id) == ("run", "r5")  # nothing lost since: no lagged
    await stream.aclose()  # type: ignore[attr-defined]
