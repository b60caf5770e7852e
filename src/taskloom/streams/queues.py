"""Subscriptions: a bounded queue of messages per subscriber, with a backpressure policy.

A subscription never grows past `maxsize`. When it is full, `block` makes the producer
wait until the subscriber has taken a message, and `drop_oldest` discards the oldest
queued message and counts it in `dropped`. A stage that reads several topics shares one
`Signal` among its subscriptions, so it sleeps until any of them has a message.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from .messages import Message

__all__ = ["Backpressure", "Signal", "Subscription", "SubscriptionClosed"]


_BEFORE_ALL = -(2**63)


class Backpressure(StrEnum):
    """What a full subscription does with the next message."""

    BLOCK = "block"
    DROP_OLDEST = "drop_oldest"


class SubscriptionClosed(Exception):
    """The subscription was closed: no more messages will come."""


class Signal:
    """Wakes one waiting consumer; setting it when nobody waits costs almost nothing."""

    __slots__ = ("waiter",)

    def __init__(self) -> None:
        self.waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        future = self.waiter
        if future is not None and not future.done():
            future.set_result(None)

    async def wait(self) -> None:
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None


class Subscription:
    """The messages of one topic for one subscriber, in arrival order.

    Iterate it (`async for message in subscription`) or, inside a stage, look at
    `buffer` and `pop()` directly. `close()` ends the iteration and releases blocked
    producers.
    """

    __slots__ = (
        "_on_close",
        "blocked",
        "buffer",
        "closed",
        "dropped",
        "idle",
        "low_water",
        "maxsize",
        "policy",
        "ready",
        "signal",
        "topic",
        "watermark",
    )

    def __init__(
        self,
        topic: str,
        *,
        maxsize: int = 1000,
        policy: Backpressure | str = Backpressure.BLOCK,
        signal: Signal | None = None,
        on_close: Callable[[Subscription], None] | None = None,
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"a subscription needs room for at least one message, got {maxsize}")
        self.topic = topic
        self.maxsize = maxsize
        #: Blocked producers go on once the queue is down to this: released one message
        #: at a time, a producer and its consumer would take turns for every message.
        self.low_water = maxsize // 2
        self.policy = Backpressure(policy)
        self.buffer: deque[Message] = deque()
        self.dropped = 0
        self.closed = False
        #: The timestamp of the last message taken: timestamps on a topic never go back,
        #: so nothing older can come (what synchronized stages release by).
        self.watermark = _BEFORE_ALL
        #: Set by a synchronized stage that held a message `idle_after` seconds waiting for
        #: this input while it had nothing queued; cleared by its next message. An idle
        #: input holds nothing back.
        self.idle = False
        self.signal = signal or Signal()
        #: Producers waiting for room (`block`); `pop` lets one on.
        self.blocked: deque[asyncio.Future[None]] = deque()
        self._on_close = on_close
        #: Done when the bus delivers to this subscription (at once in-process; after the
        #: server has the subscription for NATS).
        self.ready: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return (
            f"<Subscription {self.topic!r} {len(self.buffer)}/{self.maxsize} "
            f"{self.policy.value} dropped={self.dropped}>"
        )

    # producer side -----------------------------------------------------------------------
    async def put(self, message: Message) -> None:
        """Queue a message; wait (block) or drop the oldest (drop_oldest) when full."""
        buffer = self.buffer
        if len(buffer) >= self.maxsize:
            if self.policy is Backpressure.DROP_OLDEST:
                buffer.popleft()
                self.dropped += 1
            else:
                loop = asyncio.get_running_loop()
                while len(buffer) >= self.maxsize and not self.closed:
                    future = loop.create_future()
                    self.blocked.append(future)
                    await future
        if self.closed:
            return
        buffer.append(message)
        self.signal.set()

    def put_nowait(self, message: Message) -> bool:
        """Queue a message if that needs no waiting; False when `block` would wait."""
        buffer = self.buffer
        if len(buffer) >= self.maxsize:
            if self.policy is not Backpressure.DROP_OLDEST:
                return False
            buffer.popleft()
            self.dropped += 1
        if not self.closed:
            buffer.append(message)
            self.signal.set()
        return True

    # consumer side -----------------------------------------------------------------------
    def pop(self) -> Message:
        """Take the oldest message (the buffer must not be empty)."""
        message = self.buffer.popleft()
        self.watermark = message.timestamp
        self.idle = False
        if self.blocked and len(self.buffer) <= self.low_water:
            self.release()
        return message

    def release(self) -> None:
        """Let the blocked producers on."""
        blocked = self.blocked
        while blocked:
            future = blocked.popleft()
            if not future.done():
                future.set_result(None)

    async def get(self) -> Message:
        """The next message; raises `SubscriptionClosed` once closed and drained."""
        while not self.buffer:
            if self.closed:
                raise SubscriptionClosed(self.topic)
            await self.signal.wait()
        return self.pop()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        try:
            return await self.get()
        except SubscriptionClosed:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop receiving: the bus forgets this subscription, blocked producers go on."""
        if self.closed:
            return
        self.closed = True
        for future in self.blocked:
            if not future.done():
                future.set_result(None)
        self.blocked.clear()
        self.signal.set()
        if self._on_close is not None:
            self._on_close(self)
