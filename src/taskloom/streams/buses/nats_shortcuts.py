"""Two shortcuts past nats-py's per-message Python work, for the NATS bus's hot paths.

nats-py spends more on a message with headers than the whole stage does on it: each one
received is parsed by a general header parser (a generator per header name), built into
a `Msg`, put on an `asyncio.Queue` and taken off it by the subscription's task, which
awaits a callback; each one published has every header name matched against a regular
expression and goes through two coroutines. Measured with `benchmarks/bench_streams.py
--nats`, that halved the messages a second a stage took across processes once every
message carried its timestamp in a header.

So, for the subscriptions it makes and the messages it publishes, the bus

- takes the messages of its own core subscriptions straight from the connection's
  protocol parser (`Receiver`), reading the raw header block itself, and hands every
  other message (replies, JetStream, anyone else's subscriptions) to nats-py as before;
- writes a publication's `HPUB` command into the connection's outgoing buffer itself
  (`Sender`), with headers it built and knows to be valid, and kicks nats-py's flusher
  as `publish` does.

Both lean on nats-py's private attributes (`_process_msg`, `_pending`, `_flush_queue`,
...), checked once when the bus connects: when they are not there (another nats-py
version), `available()` is False and the bus uses the public API. The bus conformance
suite runs on whichever path is in use, and `tests/integration/test_bus_conformance.py`
runs both.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client

__all__ = ["Receiver", "Sender", "available", "header_block", "parse_header_block"]

_CRLF = b"\r\n"
_STATUS_LINE = b"NATS/1.0"

#: A message's body and its raw header block (None without headers) for a subscription.
Handler = Callable[[bytes, bytes | None], Awaitable[None] | None]

_CONNECTED = Client.CONNECTED
_STAMP_START = b"NATS/1.0\r\nTaskloom-Timestamp: "
#: The length of that header block without the timestamp's digits.
_STAMP_BLOCK_LENGTH = len(_STAMP_START) + 4

_RECEIVER_ATTRIBUTES = ("_process_msg", "_sid", "_status")
_SENDER_ATTRIBUTES = (
    "_pending",
    "_pending_data_size",
    "_max_pending_size",
    "_max_payload",
    "_flush_queue",
    "_flush_pending",
)


def available(client: Client) -> bool:
    """Whether this nats-py client has the internals the shortcuts use."""
    return all(hasattr(client, name) for name in _RECEIVER_ATTRIBUTES + _SENDER_ATTRIBUTES)


def parse_header_block(block: bytes) -> dict[str, str] | None:
    """`NATS/1.0\\r\\nName: value\\r\\n...\\r\\n\\r\\n` as a dict, as nats-py reads it;
    None for a status line (`NATS/1.0 503`), which is not a message's headers."""
    lines = block.split(_CRLF)
    if lines[0] != _STATUS_LINE:
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, sep, value = line.partition(b":")
            if sep:
                headers[name.strip().decode("ascii", "replace")] = value.strip().decode(
                    "utf-8", "replace"
                )
    return headers


def header_block(headers: dict[str, str]) -> bytes:
    """The raw header block of `headers` (names and values the caller knows are valid)."""
    lines = [_STATUS_LINE]
    lines.extend(f"{name}: {value}".encode() for name, value in headers.items())
    lines.append(b"")
    lines.append(b"")
    return _CRLF.join(lines)


class Receiver:
    """Takes the messages of some subscriptions straight from the connection's parser.

    `handle(sid, handler)` routes a subscription's messages to `handler(body, headers)`,
    called on the reading task: it must not block. It returns None, or an awaitable when
    a `block` queue is full; then the message waits in an overflow queue of this
    subscription (bounded: past `limit` messages they are dropped and counted, as
    nats-py drops for a slow consumer), drained by a task of its own, so the connection
    goes on reading for everyone else.
    """

    def __init__(self, client: Client, *, limit: int, on_drop: Callable[[], None]) -> None:
        self._original = client._process_msg
        self._handlers: dict[int, Handler] = {}
        self._overflow: dict[int, deque[tuple[bytes, bytes | None]]] = {}
        self._draining: dict[int, asyncio.Task[None]] = {}
        self._limit = limit
        self._on_drop = on_drop
        client._process_msg = self._process_msg  # type: ignore[method-assign,assignment]

    def handle(self, sid: int, handler: Handler) -> None:
        self._handlers[sid] = handler

    def forget(self, sid: int) -> None:
        self._handlers.pop(sid, None)
        self._overflow.pop(sid, None)
        task = self._draining.pop(sid, None)
        if task is not None:
            task.cancel()

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, payload: bytes, headers: bytes | None
    ) -> None:
        handler = self._handlers.get(sid)
        if handler is None or reply:
            await self._original(sid, subject, reply, payload, headers)  # type: ignore[arg-type]
            return
        overflow = self._overflow.get(sid)
        if overflow is not None:  # a delivery is waiting for room: keep the order behind it
            self._queue(sid, overflow, payload, headers)
            return
        rest = handler(payload, headers)
        if rest is not None:
            # The message is being delivered (waiting for room); what comes next waits.
            self._overflow[sid] = deque()
            self._draining[sid] = asyncio.get_running_loop().create_task(self._drain(sid, rest))

    def _queue(
        self,
        sid: int,
        overflow: deque[tuple[bytes, bytes | None]],
        payload: bytes,
        headers: bytes | None,
    ) -> None:
        if len(overflow) >= self._limit:
            self._on_drop()
            return
        overflow.append((payload, headers))

    async def _drain(self, sid: int, first: Awaitable[None]) -> None:
        await first
        overflow = self._overflow.get(sid)
        handler = self._handlers.get(sid)
        while overflow and handler is not None:
            payload, headers = overflow.popleft()
            rest = handler(payload, headers)
            if rest is not None:
                await rest
        self._overflow.pop(sid, None)
        self._draining.pop(sid, None)


class Sender:
    """Writes `HPUB` commands into the connection's outgoing buffer, as `publish` does,
    without its per-message validation (the bus validates subjects at wiring time and
    makes its own headers)."""

    def __init__(self, client: Client, *, prefix: str = "") -> None:
        self._client = client
        self._prefix = prefix  # of the subjects: `send` takes what follows it
        self._commands: dict[str, bytes] = {}  # b"HPUB <prefix><name>  ", by name

    def send(self, name: str, body: bytes, headers: bytes) -> bool | Awaitable[None]:
        """Queue one message on the subject `<prefix><name>`: True when done, an awaitable
        that finishes it when the outgoing buffer is full (it waits for the flusher),
        False when it cannot be queued here and the public `publish` must (the connection
        is away, or the message too large: that one waits, or refuses it)."""
        client: Any = self._client
        size = len(headers) + len(body)
        # `is_connected` and not `is_draining_pubs`, in one comparison.
        if client._status != _CONNECTED or size > client._max_payload:
            return False
        start = self._commands.get(name)
        if start is None:
            start = self._commands[name] = b"HPUB %s%s  " % (self._prefix.encode(), name.encode())
        command = b"%s%d %d\r\n%s%s\r\n" % (start, len(headers), size, headers, body)
        return self._queue(client, command)

    def send_timestamped(self, name: str, body: bytes, timestamp: int) -> bool | Awaitable[None]:
        """`send` of a message whose only header is its timestamp (the commonest): the
        command made in one step."""
        client: Any = self._client
        stamp = b"%d" % timestamp
        length = _STAMP_BLOCK_LENGTH + len(stamp)
        size = length + len(body)
        if client._status != _CONNECTED or size > client._max_payload:
            return False
        start = self._commands.get(name)
        if start is None:
            start = self._commands[name] = b"HPUB %s%s  " % (self._prefix.encode(), name.encode())
        command = b"%s%d %d\r\n%s%s\r\n\r\n%s\r\n" % (
            start,
            length,
            size,
            _STAMP_START,
            stamp,
            body,
        )
        return self._queue(client, command)

    @staticmethod
    def _queue(client: Any, command: bytes) -> bool | Awaitable[None]:
        client._pending.append(command)
        client._pending_data_size += len(command)
        if 0 < client._max_pending_size < client._pending_data_size:
            return client._flush_pending(force_flush=True)  # type: ignore[no-any-return]
        queue: asyncio.Queue[Any] = client._flush_queue
        if queue.empty():
            # Kick the flusher, as `publish` does (one wake-up for what queues meanwhile).
            queue.put_nowait(asyncio.get_running_loop().create_future())
        return True
