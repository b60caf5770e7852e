"""The NATS bus: topics are NATS subjects; a message is serialised only when it leaves.

Subscribers in this process get the publisher's object itself, as on the in-process bus.
The connection is made with `no_echo`, so NATS never hands a process back its own
messages: other processes receive them, this one already has them.

A message is sent to the server only when another process listens to its topic. A bus
learns that by asking once per topic (a request on `<prefix>._interest.<topic>`, which
every bus with a subscription to it answers) and by the announcement a bus makes when it
subscribes (a request on `<prefix>._announce.<topic>`, which every bus answers once it has
noted the interest). Interest, once known, is kept: publishing to a topic nobody listens
to any more costs a send, never a lost message. Without this, a stage whose outputs only
stay in its process would pay for serialising and sending every one of them.

On the wire a message is `>qB` (timestamp, kind) followed by the body: raw bytes for a
`bytes` value, JSON (pydantic-core, which knows models and dataclasses) otherwise. With
metadata, a 4-byte length and the metadata as JSON come first. No NATS headers: parsing
them would cost more than the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

import nats
import pydantic_core
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.errors import NoRespondersError, SlowConsumerError
from nats.errors import TimeoutError as NatsTimeoutError

from ...runs import ErrorInfo
from ..errors import PipelineError
from ..messages import Message
from ..queues import Backpressure, Signal, Subscription

__all__ = ["NatsBus", "decode", "encode"]

logger = logging.getLogger("taskloom.streams.nats")

_HEAD = struct.Struct(">qB")
_LENGTH = struct.Struct(">I")
_JSON = 0
_BYTES = 1
_WITH_METADATA = 0x80

# Messages NATS may hold for one subscription of this process before it calls the
# subscriber slow and drops: what keeps a `block` subscriber's memory bounded.
PENDING_MESSAGES = 65_536
PENDING_BYTES = 64 * 1024 * 1024


def encode(message: Message) -> bytes:
    value = message.value
    if isinstance(value, bytes | bytearray | memoryview):
        kind, body = _BYTES, bytes(value)
    else:
        kind, body = _JSON, pydantic_core.to_json(value)
    if message.metadata:
        meta = pydantic_core.to_json(message.metadata)
        return (
            _HEAD.pack(message.timestamp, kind | _WITH_METADATA)
            + _LENGTH.pack(len(meta))
            + meta
            + body
        )
    return _HEAD.pack(message.timestamp, kind) + body


def decode(data: bytes) -> Message:
    timestamp, kind = _HEAD.unpack_from(data)
    offset = _HEAD.size
    metadata = None
    if kind & _WITH_METADATA:
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        metadata = pydantic_core.from_json(data[offset : offset + length])
        offset += length
    body = data[offset:]
    value = body if kind & ~_WITH_METADATA == _BYTES else pydantic_core.from_json(body)
    return Message(timestamp, value, metadata)


class NatsBus:
    """Topics shared by every process connected to the same NATS server (or cluster)."""

    def __init__(self, url: str = "nats://127.0.0.1:4222", *, prefix: str = "taskloom") -> None:
        self.url = url
        self.prefix = prefix
        self._nc: Client | None = None
        self._topics: dict[str, tuple[Subscription, ...]] = {}
        self._remote: dict[str, list[NatsSubscription]] = {}
        self._pending: set[asyncio.Task[Any]] = set()
        #: Topics another process listens to (True), or does not (False) as last asked.
        self._remote_interest: dict[str, bool] = {}
        self._asking: dict[str, asyncio.Future[bool]] = {}
        #: Messages the NATS client dropped because a subscriber of this bus fell behind.
        self.slow_consumer_drops = 0
        #: Why messages may have gone missing: the connection to the server was lost (NATS
        #: keeps nothing for a subscriber that is away). None while it never was.
        self.interruption: ErrorInfo | None = None
        self.interruptions = 0
        self._down_since: float | None = None

    def __repr__(self) -> str:
        return f"<NatsBus {self.url}>"

    async def start(self) -> None:
        if self._nc is not None:
            return
        try:
            self._nc = await nats.connect(
                self.url,
                no_echo=True,
                name=f"taskloom-{os.getpid()}",
                connect_timeout=2,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
                # A full write buffer waits for the flusher instead of growing without bound.
                pending_size=8 * 1024 * 1024,
                flush_timeout=10,
            )
        except Exception as exc:
            raise PipelineError(f"cannot connect to the NATS bus {self.url}: {exc}") from exc
        await self._nc.subscribe(f"{self.prefix}._announce.>", cb=self._on_announce)
        await self._nc.flush()

    async def _on_announce(self, msg: Msg) -> None:
        topic = msg.subject[len(self.prefix) + len("._announce.") :]
        self._remote_interest[topic] = True
        if msg.reply:
            await msg.respond(b"1")

    async def _on_disconnected(self) -> None:
        if self._down_since is not None or self._nc is None or self._nc.is_closed:
            return  # already down, or closing on purpose
        self._down_since = time.time()
        self.interruptions += 1
        self.interruption = ErrorInfo(
            "BusInterrupted",
            f"the connection to the NATS bus {self.url} was lost at "
            f"{_clock(self._down_since)}; reconnecting. Messages sent while it is down are "
            "not delivered here",
        )
        logger.warning("NATS bus %s: the connection was lost; reconnecting", self.url)

    async def _on_reconnected(self) -> None:
        since, self._down_since = self._down_since, None
        if since is None:
            return
        down = time.time() - since
        self.interruption = ErrorInfo(
            "BusInterrupted",
            f"the connection to the NATS bus {self.url} was lost at {_clock(since)} for "
            f"{down:.1f} s ({self.interruptions} time(s) in all); messages sent meanwhile "
            "may not have been delivered",
        )
        logger.warning("NATS bus %s: reconnected after %.1f s", self.url, down)

    async def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, SlowConsumerError):
            # NATS has no flow control: past its pending limits a subscription's messages
            # are dropped by the client. Counted, and reported once per 10,000.
            if self.slow_consumer_drops % 10_000 == 0:
                logger.warning("NATS bus %s: a subscriber fell behind, dropping: %s", self.url, exc)
            self.slow_consumer_drops += 1
            return
        logger.warning("NATS bus %s: %s", self.url, exc)

    @property
    def _client(self) -> Client:
        if self._nc is None:
            raise PipelineError(f"the NATS bus {self.url} is not started")
        return self._nc

    async def close(self) -> None:
        for subscriptions in list(self._topics.values()):
            for subscription in subscriptions:
                subscription.close()
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            await nc.drain()  # sends what is buffered, then closes

    def _subject(self, topic: str) -> str:
        return f"{self.prefix}.{topic}"

    def _interest(self, topic: str) -> str:
        return f"{self.prefix}._interest.{topic}"

    def subscribe(
        self,
        topic: str,
        *,
        maxsize: int = 1000,
        policy: Backpressure | str = Backpressure.BLOCK,
        signal: Signal | None = None,
    ) -> Subscription:
        client = self._client
        subscription = Subscription(
            topic, maxsize=maxsize, policy=policy, signal=signal, on_close=self._forget
        )
        loop = asyncio.get_running_loop()
        first = topic not in self._topics
        self._topics[topic] = (*self._topics.get(topic, ()), subscription)
        if first:
            task = loop.create_task(self._subscribe_remote(client, topic))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            subscription.ready = loop.create_future()
            task.add_done_callback(lambda t: _chain(t, subscription))
        else:
            existing = self._topics[topic][0].ready
            subscription.ready = existing
        return subscription

    async def _subscribe_remote(self, client: Client, topic: str) -> None:
        deliver = self._deliverer(topic)
        data = await client.subscribe(
            self._subject(topic),
            cb=deliver,
            pending_msgs_limit=PENDING_MESSAGES,
            pending_bytes_limit=PENDING_BYTES,
        )
        interest = await client.subscribe(self._interest(topic), cb=self._answer_interest)
        self._remote[topic] = [data, interest]
        await client.flush()  # the server has the subscription
        # Tell the publishers (one answer: at least one has heard). No answer: no other bus
        # is connected, and those that come later ask before they publish.
        with contextlib.suppress(NoRespondersError, NatsTimeoutError):
            await client.request(f"{self.prefix}._announce.{topic}", b"", timeout=1.0)

    def _deliverer(self, topic: str) -> Callable[[Msg], Awaitable[None]]:
        topics = self._topics

        async def deliver(msg: Msg) -> None:
            message = decode(msg.data)
            for subscription in topics.get(topic, ()):
                if not subscription.put_nowait(message):
                    await subscription.put(message)

        return deliver

    async def _answer_interest(self, msg: Msg) -> None:
        await msg.respond(b"1")

    def _forget(self, subscription: Subscription) -> None:
        topic = subscription.topic
        subscriptions = self._topics.get(topic)
        if not subscriptions or subscription not in subscriptions:
            return
        rest = tuple(s for s in subscriptions if s is not subscription)
        if rest:
            self._topics[topic] = rest
            return
        del self._topics[topic]
        remote = self._remote.pop(topic, [])
        if remote and self._nc is not None and not self._nc.is_closed:
            task = asyncio.get_running_loop().create_task(_unsubscribe(remote))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def publish(self, topic: str, message: Message) -> None:
        rest = self.offer(topic, message)
        if rest is not None:
            await rest

    def offer(self, topic: str, message: Message) -> Awaitable[None] | None:
        subscriptions = self._topics.get(topic)
        if subscriptions:
            for index, subscription in enumerate(subscriptions):
                if not subscription.put_nowait(message):
                    return self._finish(subscriptions[index:], topic, message)
        interest = self._remote_interest.get(topic)
        if interest is False:
            return None
        return self._send(topic, message, interest)

    async def _finish(
        self, subscriptions: tuple[Subscription, ...], topic: str, message: Message
    ) -> None:
        for subscription in subscriptions:
            await subscription.put(message)
        if self._remote_interest.get(topic) is not False:
            await self._send(topic, message, self._remote_interest.get(topic))

    async def _send(self, topic: str, message: Message, interest: bool | None) -> None:
        if interest is None and not await self._remote_listeners(topic):
            return
        await self._client.publish(self._subject(topic), encode(message))

    async def _remote_listeners(self, topic: str) -> bool:
        """Ask once whether another process listens (concurrent askers share the answer)."""
        asking = self._asking.get(topic)
        if asking is None:
            asking = asyncio.get_running_loop().create_future()
            self._asking[topic] = asking
            try:
                answer = await self._ask(topic)
                if not self._remote_interest.get(topic):  # an announcement may have come
                    self._remote_interest[topic] = answer
                asking.set_result(self._remote_interest[topic])
            finally:
                del self._asking[topic]
                if not asking.done():  # the question failed: the others ask again
                    asking.cancel()
        return await asyncio.shield(asking)

    async def _ask(self, topic: str) -> bool:
        try:
            await self._client.request(self._interest(topic), b"", timeout=0.5)
        except (NoRespondersError, NatsTimeoutError):
            return False
        return True

    async def has_subscribers(self, topic: str) -> bool:
        if self._topics.get(topic):
            return True
        return await self._ask(topic)

    async def flush(self) -> None:
        """Wait until the server has everything published so far."""
        await self._client.flush()


def _chain(task: asyncio.Task[Any], subscription: Subscription) -> None:
    ready = subscription.ready
    if ready is None or ready.done():
        return
    if task.cancelled():
        ready.cancel()
    elif task.exception() is not None:
        ready.set_exception(task.exception())  # type: ignore[arg-type]
    else:
        ready.set_result(None)


async def _unsubscribe(remote: list[NatsSubscription]) -> None:
    for item in remote:
        try:
            await item.unsubscribe()
        except Exception as exc:  # the connection is going away: nothing left to undo
            logger.debug("unsubscribe: %s", exc)


def _clock(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
