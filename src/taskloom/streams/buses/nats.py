"""The NATS bus: topics are NATS subjects, and any NATS client can publish and subscribe.

A topic `numbers.a` of the deployment `demo` is the subject `taskloom.demo.numbers.a`
(`<prefix>.<deployment>.<topic>`). A message on it is:

- its value as the body: JSON (pydantic-core, which knows models and dataclasses), or a
  `bytes` value as it is, with the header `Content-Type: application/octet-stream`;
- its timestamp (milliseconds) in the header `Taskloom-Timestamp`;
- its metadata, if any, as a JSON object in the header `Taskloom-Metadata`.

What other programs publish is read the same way, and leniently: without
`Taskloom-Timestamp` the message is timestamped when it arrives; without `Content-Type`
the body is JSON if it parses, else UTF-8 text, else bytes; `text/plain` is text.

Subscribers in this process get the publisher's object itself, as on the in-process bus.
The connection is made with `no_echo`, so NATS never hands a process back its own
messages: other processes receive them, this one already has them. Every message is
published to the server, which drops it when nobody listens: NATS decides interest, and
it tells its clients nothing about other clients' subscriptions.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import nats
import pydantic_core
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.errors import SlowConsumerError
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

from ...runs import ErrorInfo
from ..errors import PipelineError
from ..messages import Message, now_ms
from ..queues import Backpressure, Signal, Subscription
from .nats_shortcuts import Receiver, Sender, available, header_block, parse_header_block

__all__ = [
    "CONTENT_TYPE",
    "METADATA_HEADER",
    "TIMESTAMP_HEADER",
    "MalformedMessage",
    "NatsBus",
    "decode",
    "decode_wire",
    "encode",
    "encode_wire",
]

logger = logging.getLogger("taskloom.streams.nats")

#: The headers of a taskloom message on NATS (see the module's docstring).
TIMESTAMP_HEADER = "Taskloom-Timestamp"
METADATA_HEADER = "Taskloom-Metadata"
CONTENT_TYPE = "Content-Type"
BYTES_TYPE = "application/octet-stream"
JSON_TYPE = "application/json"
TEXT_TYPE = "text/plain"

# Messages NATS may hold for one subscription of this process before it calls the
# subscriber slow and drops: what keeps a `block` subscriber's memory bounded.
PENDING_MESSAGES = 65_536
PENDING_BYTES = 64 * 1024 * 1024


class MalformedMessage(ValueError):
    """A message from another program that cannot be read (its metadata is not JSON, its
    timestamp not an integer, its body not JSON although it says so)."""


def encode(message: Message) -> tuple[bytes, dict[str, str]]:
    """The body and headers of `message` on NATS."""
    value = message.value
    headers = {TIMESTAMP_HEADER: str(message.timestamp)}
    if isinstance(value, bytes | bytearray | memoryview):
        body = bytes(value)
        headers[CONTENT_TYPE] = BYTES_TYPE
    else:
        body = pydantic_core.to_json(value)
    if message.metadata:
        headers[METADATA_HEADER] = pydantic_core.to_json(message.metadata).decode()
    return body, headers


def decode(data: bytes, headers: dict[str, str] | None) -> Message:
    """A message from its body and headers, as taskloom or any other program sent it."""
    if not headers:
        return Message(now_ms(), _guess(data))
    stamp = headers.get(TIMESTAMP_HEADER)
    try:
        timestamp = now_ms() if stamp is None else int(stamp)
    except ValueError:
        raise MalformedMessage(f"{TIMESTAMP_HEADER} {stamp!r} is not an integer") from None
    kind = headers.get(CONTENT_TYPE)
    if kind is None:
        value = _guess(data)
    elif kind == BYTES_TYPE:
        value = data
    elif kind.startswith(JSON_TYPE):
        try:
            value = pydantic_core.from_json(data)
        except ValueError as exc:
            raise MalformedMessage(f"the body is not JSON: {exc}") from None
    elif kind.startswith("text/"):
        value = data.decode("utf-8", "replace")
    else:
        value = data
    metadata = None
    meta = headers.get(METADATA_HEADER)
    if meta:
        try:
            metadata = pydantic_core.from_json(meta)
        except ValueError as exc:
            raise MalformedMessage(f"{METADATA_HEADER} is not JSON: {exc}") from None
        if not isinstance(metadata, dict):
            raise MalformedMessage(f"{METADATA_HEADER} is not a JSON object")
    return Message(timestamp, value, metadata)


_TIMESTAMP_ONLY = b"NATS/1.0\r\nTaskloom-Timestamp: %d\r\n\r\n"
_TIMESTAMP_PREFIX = b"NATS/1.0\r\nTaskloom-Timestamp: "
_END = b"\r\n\r\n"


def encode_wire(message: Message) -> tuple[bytes, bytes]:
    """`encode` with the header block as NATS sends it; a message with only its timestamp
    to say (the common case) is written in one step."""
    value = message.value
    if message.metadata or isinstance(value, bytes | bytearray | memoryview):
        body, headers = encode(message)
        return body, header_block(headers)
    body = b"%d" % value if type(value) is int else pydantic_core.to_json(value)
    return body, _TIMESTAMP_ONLY % message.timestamp


def decode_wire(data: bytes, block: bytes | None) -> Message | None:
    """`decode` from the raw header block; None for a status message (no headers of a
    message: `NATS/1.0 503`)."""
    if block is None:
        return Message(now_ms(), _guess(data))
    if block.startswith(_TIMESTAMP_PREFIX):
        end = block.find(b"\r\n", len(_TIMESTAMP_PREFIX))
        if end > 0 and block[end:] == _END:  # the timestamp is its only header
            stamp = block[len(_TIMESTAMP_PREFIX) : end]
            try:
                return Message(int(stamp), _guess(data))
            except ValueError:
                raise MalformedMessage(
                    f"{TIMESTAMP_HEADER} {stamp.decode('utf-8', 'replace')!r} is not an integer"
                ) from None
    headers = parse_header_block(block)
    if headers is None:
        return None
    return decode(data, headers)


def _guess(data: bytes) -> Any:
    """A body without a content type: JSON if it parses, else UTF-8 text, else bytes."""
    try:
        return pydantic_core.from_json(data)
    except ValueError:
        pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


class NatsBus:
    """Topics shared by every process connected to the same NATS server (or cluster)."""

    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
        *,
        prefix: str = "taskloom",
        shortcuts: bool = True,
    ) -> None:
        self.url = url
        self.prefix = prefix
        #: Whether to take the shortcuts past nats-py's per-message work (`nats_shortcuts`)
        #: when this nats-py has what they use; False: its public API only.
        self.shortcuts = shortcuts
        self._receiver: Receiver | None = None
        self._sender: Sender | None = None
        self._nc: Client | None = None
        self._topics: dict[str, tuple[Subscription, ...]] = {}
        self._remote: dict[str, NatsSubscription] = {}
        #: Topics kept in JetStream, by stream; their readers are durable consumers.
        self._kept: dict[str, str] = {}
        self._durable: dict[Subscription, NatsSubscription | None] = {}
        self._pending: set[asyncio.Task[Any]] = set()
        #: Messages the NATS client dropped because a subscriber of this bus fell behind.
        self.slow_consumer_drops = 0
        #: Messages from other programs that could not be read (logged, then skipped).
        self.malformed = 0
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
        if self.shortcuts and available(self._nc):
            self._receiver = Receiver(self._nc, limit=PENDING_MESSAGES, on_drop=self._dropped)
            self._sender = Sender(self._nc, prefix=f"{self.prefix}.")

    def _dropped(self) -> None:
        if self.slow_consumer_drops % 10_000 == 0:
            logger.warning("NATS bus %s: a subscriber fell behind, dropping messages", self.url)
        self.slow_consumer_drops += 1

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
        for subscription in list(self._durable):
            subscription.close()
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            await nc.drain()  # sends what is buffered, then closes

    def subject(self, topic: str) -> str:
        """The NATS subject of a topic (`deployment.topic`): `taskloom.demo.sums`."""
        return f"{self.prefix}.{topic}"

    async def keep(self, stream: str, topics: list[str], *, max_age: float | None) -> None:
        """Keep `topics` in the JetStream stream `stream`: made, or its subjects extended."""
        js = self._client.jetstream()
        subjects = [self.subject(t) for t in topics]
        try:
            try:
                info = await js.stream_info(stream)
            except NotFoundError:
                await js.add_stream(
                    StreamConfig(
                        name=stream,
                        subjects=subjects,
                        max_age=max_age,
                        storage=StorageType.FILE,
                        description="taskloom: the kept topics of a deployment",
                    )
                )
            else:
                config = info.config
                known = set(config.subjects or [])
                if not set(subjects) <= known or config.max_age != (max_age or config.max_age):
                    config.subjects = sorted(known | set(subjects))
                    if max_age is not None:
                        config.max_age = max_age
                    await js.update_stream(config)
        except Exception as exc:  # JetStream off on the server, limits, a name clash
            raise PipelineError(
                f"cannot keep topics {', '.join(topics)} in the JetStream stream {stream!r} "
                f"on {self.url}: {exc} (is the server started with -js?)"
            ) from exc
        self._kept.update((t, stream) for t in topics)

    def subscribe(
        self,
        topic: str,
        *,
        maxsize: int = 1000,
        policy: Backpressure | str = Backpressure.BLOCK,
        signal: Signal | None = None,
        durable: str | None = None,
    ) -> Subscription:
        client = self._client
        loop = asyncio.get_running_loop()
        if durable is not None and topic in self._kept:
            return self._subscribe_durable(client, topic, durable, maxsize, policy, signal)
        subscription = Subscription(
            topic, maxsize=maxsize, policy=policy, signal=signal, on_close=self._forget
        )
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

    def _subscribe_durable(
        self,
        client: Client,
        topic: str,
        durable: str,
        maxsize: int,
        policy: Backpressure | str,
        signal: Signal | None,
    ) -> Subscription:
        """A reader of a kept topic: a durable JetStream consumer, never handed this
        process's own messages directly (the stream delivers them, in order, once)."""
        subscription = Subscription(
            topic, maxsize=maxsize, policy=policy, signal=signal, on_close=self._forget_durable
        )
        self._durable[subscription] = None
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._consume(client, topic, durable, subscription))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        subscription.ready = loop.create_future()
        task.add_done_callback(lambda t: _chain(t, subscription))
        return subscription

    async def _consume(
        self, client: Client, topic: str, durable: str, subscription: Subscription
    ) -> None:
        async def deliver(msg: Msg) -> None:
            try:
                message = decode(msg.data, msg.headers)
            except MalformedMessage as exc:
                self._malformed(msg.subject, exc)
                return
            # Acknowledged when this returns: once the message is queued for the stage.
            if not subscription.put_nowait(message):
                await subscription.put(message)

        pushed = await client.jetstream().subscribe(
            self.subject(topic),
            durable=durable,
            stream=self._kept[topic],
            cb=deliver,
            pending_msgs_limit=PENDING_MESSAGES,
            pending_bytes_limit=PENDING_BYTES,
        )
        if subscription.closed:  # closed while it was being made
            await _unsubscribe(pushed)
            return
        self._durable[subscription] = pushed
        await client.flush()
        await client.flush()  # see `_subscribe_remote`

    def _forget_durable(self, subscription: Subscription) -> None:
        pushed = self._durable.pop(subscription, None)
        if pushed is not None and self._nc is not None and not self._nc.is_closed:
            task = asyncio.get_running_loop().create_task(_unsubscribe(pushed))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _subscribe_remote(self, client: Client, topic: str) -> None:
        receiver = self._receiver
        if receiver is not None:
            # The sid nats-py gives the subscription below (it counts before it awaits),
            # routed to the bus before the server can send anything on it.
            sid = client._sid + 1
            receiver.handle(sid, self._handler(topic))
            remote = await client.subscribe(self.subject(topic))
            if remote._id != sid:  # cannot happen: nats-py numbered it otherwise
                receiver.forget(sid)
                receiver.handle(remote._id, self._handler(topic))
            self._remote[topic] = remote
        else:
            self._remote[topic] = await client.subscribe(
                self.subject(topic),
                cb=self._deliverer(topic),
                pending_msgs_limit=PENDING_MESSAGES,
                pending_bytes_limit=PENDING_BYTES,
            )
        # Twice: nats-py writes a flush's PING straight to the socket, ahead of commands
        # still queued for its flusher (the SUB, here), so the first PONG may come before
        # the server has the subscription. By then the flusher has written the SUB, and
        # the second PING follows it.
        await client.flush()
        await client.flush()

    def _deliverer(self, topic: str) -> Callable[[Msg], Awaitable[None]]:
        topics = self._topics

        async def deliver(msg: Msg) -> None:
            try:
                message = decode(msg.data, msg.headers)
            except MalformedMessage as exc:
                self._malformed(msg.subject, exc)
                return
            for subscription in topics.get(topic, ()):
                if not subscription.put_nowait(message):
                    await subscription.put(message)

        return deliver

    def _handler(self, topic: str) -> Callable[[bytes, bytes | None], Awaitable[None] | None]:
        """What the shortcut receiver calls with a message of `topic` (no coroutine unless
        a `block` queue is full)."""
        topics = self._topics
        subject = self.subject(topic)

        def handle(data: bytes, block: bytes | None) -> Awaitable[None] | None:
            try:
                message = decode_wire(data, block)
            except MalformedMessage as exc:
                self._malformed(subject, exc)
                return None
            if message is None:  # a status message, not one of the topic's
                return None
            subscriptions = topics.get(topic, ())
            for index, subscription in enumerate(subscriptions):
                if not subscription.put_nowait(message):
                    return _put_all(subscriptions[index:], message)
            return None

        return handle

    def _malformed(self, subject: str, exc: MalformedMessage) -> None:
        # Another program's message, not ours to fail on: skipped, counted, reported once
        # per 1,000.
        if self.malformed % 1000 == 0:
            logger.warning("NATS bus %s: skipped a message on %s: %s", self.url, subject, exc)
        self.malformed += 1

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
        remote = self._remote.pop(topic, None)
        if remote is not None and self._receiver is not None:
            self._receiver.forget(remote._id)
        if remote is not None and self._nc is not None and not self._nc.is_closed:
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
        sender = self._sender
        if sender is not None:
            value = message.value
            if type(value) is int and not message.metadata:  # the commonest, in one step
                sent = sender.send_timestamped(topic, b"%d" % value, message.timestamp)
            else:
                body, block = encode_wire(message)
                sent = sender.send(topic, body, block)
            if sent is True:
                return None
            if sent is not False:
                return sent
        return self._send(topic, message)

    async def _finish(
        self, subscriptions: tuple[Subscription, ...], topic: str, message: Message
    ) -> None:
        for subscription in subscriptions:
            await subscription.put(message)
        await self._send(topic, message)

    async def _send(self, topic: str, message: Message) -> None:
        body, headers = encode(message)
        await self._client.publish(self.subject(topic), body, headers=headers)

    async def has_subscribers(self, topic: str) -> bool:
        """True: other processes' subscriptions are the server's to know (it drops what
        nobody listens to), so someone may listen, whatever this process does."""
        return True

    async def flush(self) -> None:
        """Wait until the server has everything published so far (twice: see
        `_subscribe_remote`)."""
        await self._client.flush()
        await self._client.flush()


async def _put_all(subscriptions: tuple[Subscription, ...], message: Message) -> None:
    for subscription in subscriptions:
        await subscription.put(message)


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


async def _unsubscribe(remote: NatsSubscription) -> None:
    try:
        await remote.unsubscribe()
    except Exception as exc:  # the connection is going away: nothing left to undo
        logger.debug("unsubscribe: %s", exc)


def _clock(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
