"""The bus contract, on the in-process bus and on NATS.

Each NATS case runs three times: publisher and subscriber on one connection (the message
is handed over in-process), and on two connections (it crosses the server, serialised),
with the bus's shortcuts past nats-py's per-message work and with its public API only.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import nats
import nats.aio.msg
import pytest

from nats_support import require_nats
from support import WAIT, until
from taskloom.streams import Bus, MemoryBus, Message, Subscription
from taskloom.streams.buses.nats import (
    MalformedMessage,
    NatsBus,
    decode,
    decode_wire,
    encode,
    encode_wire,
)
from taskloom.streams.buses.nats_shortcuts import parse_header_block
from taskloom.streams.messages import now_ms


@dataclass
class Pair:
    publisher: Bus
    subscriber: Bus
    crosses: bool  # messages leave the process (serialised)


@pytest.fixture(params=["memory", "nats-local", "nats-remote", "nats-remote-public-api"])
async def buses(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    if request.param == "memory":
        bus = MemoryBus()
        await bus.start()
        yield Pair(bus, bus, crosses=False)
        await bus.close()
        return
    url = require_nats()
    prefix = f"test{uuid.uuid4().hex[:12]}"  # no crosstalk between tests
    # The shortcuts past nats-py's per-message work, or its public API only.
    shortcuts = request.param != "nats-remote-public-api"
    one = NatsBus(url, prefix=prefix, shortcuts=shortcuts)
    await one.start()
    two = one
    if request.param.startswith("nats-remote"):
        two = NatsBus(url, prefix=prefix, shortcuts=shortcuts)
        await two.start()
    yield Pair(two, one, crosses=two is not one)
    await one.close()
    if two is not one:
        await two.close()


async def subscribe(bus: Bus, topic: str, **options: Any) -> Subscription:
    subscription = bus.subscribe(topic, **options)
    assert subscription.ready is not None
    await asyncio.wait_for(subscription.ready, WAIT)
    return subscription


async def take(subscription: Subscription, count: int) -> list[Message]:
    async with asyncio.timeout(WAIT):
        return [await subscription.get() for _ in range(count)]


async def test_messages_arrive_in_order_with_timestamps_and_metadata(buses: Pair) -> None:
    subscription = await subscribe(buses.subscriber, "demo.sums")
    for t in range(50):
        await buses.publisher.publish("demo.sums", Message(1000 + t, t))
    await buses.publisher.publish("demo.sums", Message(2000, "last", {"unit": "mm"}))
    got = await take(subscription, 51)
    assert got[:50] == [Message(1000 + t, t) for t in range(50)]
    assert got[50] == Message(2000, "last", {"unit": "mm"})


@pytest.mark.parametrize(
    "value",
    [
        0,
        -7,
        2**40,
        1.5,
        "text",
        "",
        b"\x00\xffraw",
        b"",
        {"a": [1, 2, {"b": None}]},
        [1, "x"],
        True,
    ],
)
async def test_values_survive_the_trip(buses: Pair, value: Any) -> None:
    subscription = await subscribe(buses.subscriber, "values")
    await buses.publisher.publish("values", Message(1, value))
    (got,) = await take(subscription, 1)
    assert got.value == value
    assert type(got.value) is type(value)


async def test_every_subscription_gets_every_message(buses: Pair) -> None:
    first = await subscribe(buses.subscriber, "fan")
    second = await subscribe(buses.subscriber, "fan")
    other = await subscribe(buses.subscriber, "fan.other")
    for t in range(5):
        await buses.publisher.publish("fan", Message(t, t))
    assert [m.value for m in await take(first, 5)] == list(range(5))
    assert [m.value for m in await take(second, 5)] == list(range(5))
    assert not other.buffer


async def test_a_closed_subscription_gets_nothing_more(buses: Pair) -> None:
    keep = await subscribe(buses.subscriber, "closing")
    gone = await subscribe(buses.subscriber, "closing")
    gone.close()
    await buses.publisher.publish("closing", Message(1, 1))
    assert await take(keep, 1) == [Message(1, 1)]
    assert not gone.buffer
    assert [m async for m in gone] == []


async def test_anyone_listening(buses: Pair) -> None:
    if isinstance(buses.publisher, NatsBus):
        # The server knows other clients' subscriptions and tells nobody: someone may listen.
        assert await buses.publisher.has_subscribers("quiet")
        return
    assert not await buses.publisher.has_subscribers("quiet")
    subscription = await subscribe(buses.subscriber, "quiet")
    assert await buses.publisher.has_subscribers("quiet")
    subscription.close()

    async def nobody() -> bool:
        return not await buses.publisher.has_subscribers("quiet")

    await until(nobody)


async def test_drop_oldest_bounds_a_subscription_that_is_not_read(buses: Pair) -> None:
    subscription = await subscribe(buses.subscriber, "flood", maxsize=10, policy="drop_oldest")
    for t in range(100):
        await buses.publisher.publish("flood", Message(t, t))

    async def all_seen() -> bool:
        return len(subscription.buffer) + subscription.dropped == 100

    await until(all_seen)
    assert len(subscription.buffer) == 10
    assert [m.value for m in subscription.buffer] == list(range(90, 100))


async def test_block_delivers_everything_to_a_slow_reader(buses: Pair) -> None:
    subscription = await subscribe(buses.subscriber, "steady", maxsize=4, policy="block")

    async def produce() -> None:
        for t in range(40):
            await buses.publisher.publish("steady", Message(t, t))

    producer = asyncio.create_task(produce())
    got: list[int] = []
    while len(got) < 40:
        message = await asyncio.wait_for(subscription.get(), WAIT)
        got.append(message.value)
        assert len(subscription.buffer) <= 4
        await asyncio.sleep(0)
    await asyncio.wait_for(producer, WAIT)
    assert got == list(range(40))
    assert subscription.dropped == 0


async def test_a_full_block_queue_keeps_the_order_of_a_burst(buses: Pair) -> None:
    subscription = await subscribe(buses.subscriber, "burst", maxsize=4, policy="block")

    async def produce() -> None:  # far more than the queue holds, faster than it is read
        for t in range(2000):
            await buses.publisher.publish("burst", Message(t, t))

    producer = asyncio.create_task(produce())
    got: list[int] = []
    async with asyncio.timeout(WAIT):
        while len(got) < 2000:
            got.append((await subscription.get()).value)
            if len(got) % 7 == 0:
                await asyncio.sleep(0)
        await producer
    assert got == list(range(2000))
    assert subscription.dropped == 0


def test_the_wire_format_round_trips() -> None:
    for message in (
        Message(-5, {"k": [1.5, None]}),
        Message(2**62, b"\x00bytes", {"content": "video", "codec": "h264"}),
        Message(0, "text", None),
    ):
        assert decode(*encode(message)) == message


@pytest.mark.parametrize(
    "message",
    [
        Message(1001, 14),
        Message(-5, True),
        Message(2**70, 2**70),
        Message(3, {"k": [1.5, None]}),
        Message(4, b"\x00raw", {"codec": "raw"}),
        Message(5, "text", {"unit": "mm"}),
    ],
)
def test_the_raw_wire_form_is_what_nats_py_reads(message: Message) -> None:
    body, block = encode_wire(message)
    assert (body, parse_header_block(block)) == encode(message)
    assert decode_wire(body, block) == message
    assert decode_wire(b"1", b"NATS/1.0 503\r\n\r\n") is None  # a status, not a message
    with pytest.raises(MalformedMessage):
        decode_wire(b"1", b"NATS/1.0\r\nTaskloom-Timestamp: x\r\n\r\n")


def test_the_wire_format_is_json_and_headers() -> None:
    assert encode(Message(1001, {"x": 1})) == (b'{"x":1}', {"Taskloom-Timestamp": "1001"})
    assert encode(Message(7, b"\xff", {"codec": "raw"})) == (
        b"\xff",
        {
            "Taskloom-Timestamp": "7",
            "Content-Type": "application/octet-stream",
            "Taskloom-Metadata": '{"codec":"raw"}',
        },
    )


@pytest.mark.parametrize(
    ("body", "headers", "value"),
    [
        (b"5", None, 5),  # `nats pub subject 5`: JSON
        (b"hello", None, "hello"),  # not JSON: text
        (b"\xff\xfe", None, b"\xff\xfe"),  # not text either: bytes
        (b"5", {"Content-Type": "text/plain"}, "5"),
        (b'"5"', {"Content-Type": "application/json; charset=utf-8"}, "5"),
        (b"5", {"Content-Type": "application/octet-stream"}, b"5"),
    ],
)
def test_what_other_programs_send_is_read_leniently(
    body: bytes, headers: dict[str, str] | None, value: Any
) -> None:
    before = now_ms()
    message = decode(body, headers)
    assert message.value == value
    assert type(message.value) is type(value)
    assert message.timestamp >= before  # no Taskloom-Timestamp: timestamped on arrival


@pytest.mark.parametrize(
    "headers",
    [
        {"Taskloom-Timestamp": "soon"},
        {"Taskloom-Metadata": "{nope"},
        {"Taskloom-Metadata": "[1]"},
        {"Content-Type": "application/json"},  # and a body that is not JSON
    ],
)
def test_an_unreadable_message_is_refused_saying_why(headers: dict[str, str]) -> None:
    with pytest.raises(MalformedMessage):
        decode(b"not json", headers)


async def test_a_plain_nats_client_publishes_and_subscribes() -> None:
    url = require_nats()
    prefix = f"test{uuid.uuid4().hex[:12]}"
    bus = NatsBus(url, prefix=prefix)
    await bus.start()
    plain = await nats.connect(url)
    try:
        sums = await subscribe(bus, "demo.in")
        received: asyncio.Queue[nats.aio.msg.Msg] = asyncio.Queue()
        await plain.subscribe(f"{prefix}.demo.out", cb=received.put)
        await plain.flush()
        await plain.publish(f"{prefix}.demo.in", b"41", headers={"Taskloom-Timestamp": "99"})
        await plain.publish(f"{prefix}.demo.in", b"just text")
        got = await take(sums, 2)
        assert got[0] == Message(99, 41)
        assert got[1].value == "just text"
        await bus.publish("demo.out", Message(123, {"sum": 42}, {"unit": "mm"}))
        msg = await asyncio.wait_for(received.get(), WAIT)
        assert json.loads(msg.data) == {"sum": 42}
        assert msg.headers == {"Taskloom-Timestamp": "123", "Taskloom-Metadata": '{"unit":"mm"}'}
        # A message that cannot be read is skipped and counted; the next one arrives.
        await plain.publish(f"{prefix}.demo.in", b"1", headers={"Taskloom-Timestamp": "x"})
        await plain.publish(f"{prefix}.demo.in", b"2", headers={"Taskloom-Timestamp": "100"})
        assert await take(sums, 1) == [Message(100, 2)]
        assert bus.malformed == 1
    finally:
        await plain.close()
        await bus.close()
