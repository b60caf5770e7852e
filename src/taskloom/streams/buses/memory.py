"""The in-process bus: messages are handed over as objects, never serialised."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from ..messages import Message
from ..queues import Backpressure, Signal, Subscription

__all__ = ["MemoryBus"]

DROP_OLDEST = Backpressure.DROP_OLDEST


async def _deliver(subscriptions: tuple[Subscription, ...], message: Message) -> None:
    for subscription in subscriptions:
        await subscription.put(message)


class MemoryBus:
    """Topics within one process. The default bus of a deployment."""

    url = "memory://"

    def __init__(self) -> None:
        # Tuples, replaced on (un)subscribe: publishing iterates them while a subscriber may leave.
        self._topics: dict[str, tuple[Subscription, ...]] = {}

    def __repr__(self) -> str:
        return f"<MemoryBus topics={len(self._topics)}>"

    async def start(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        for subscriptions in list(self._topics.values()):
            for subscription in list(subscriptions):
                subscription.close()
        self._topics.clear()

    def subscribe(
        self,
        topic: str,
        *,
        maxsize: int = 1000,
        policy: Backpressure | str = Backpressure.BLOCK,
        signal: Signal | None = None,
        durable: str | None = None,
    ) -> Subscription:
        subscription = Subscription(
            topic, maxsize=maxsize, policy=policy, signal=signal, on_close=self._forget
        )
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ready.set_result(None)
        subscription.ready = ready
        self._topics[topic] = (*self._topics.get(topic, ()), subscription)
        return subscription

    def _forget(self, subscription: Subscription) -> None:
        subscriptions = self._topics.get(subscription.topic)
        if subscriptions and subscription in subscriptions:
            rest = tuple(s for s in subscriptions if s is not subscription)
            if rest:
                self._topics[subscription.topic] = rest
            else:
                del self._topics[subscription.topic]

    async def publish(self, topic: str, message: Message) -> None:
        rest = self.offer(topic, message)
        if rest is not None:
            await rest

    def offer(self, topic: str, message: Message) -> Awaitable[None] | None:
        """Deliver what needs no waiting; None when done, else what finishes the delivery.

        The hot path of stages: no coroutine is made unless a `block` queue is full.
        """
        subscriptions = self._topics.get(topic)
        if subscriptions is None:
            return None
        for index, subscription in enumerate(subscriptions):
            buffer = subscription.buffer
            if len(buffer) >= subscription.maxsize:
                if subscription.policy is not DROP_OLDEST:
                    return _deliver(subscriptions[index:], message)
                buffer.popleft()
                subscription.dropped += 1
            buffer.append(message)
            future = subscription.signal.waiter
            if future is not None and not future.done():
                future.set_result(None)
        return None

    async def keep(self, stream: str, topics: list[str], *, max_age: float | None) -> None:
        """Nothing to keep: a process's topics end with it."""

    async def has_subscribers(self, topic: str) -> bool:
        return bool(self._topics.get(topic))
