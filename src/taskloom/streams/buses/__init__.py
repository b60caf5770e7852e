"""Buses carry messages between stages: in-process (`MemoryBus`) or over NATS (`NatsBus`).

Every bus passes `tests/integration/test_bus_conformance.py`.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol

from ..errors import PipelineError
from ..messages import Message
from ..queues import Backpressure, Signal, Subscription
from .memory import MemoryBus

__all__ = ["Bus", "MemoryBus", "open_bus"]


class Bus(Protocol):
    """Named topics of timestamped messages, each subscription with its own bounded queue."""

    url: str

    async def start(self) -> None:
        """Connect (a bus is usable after this)."""

    async def close(self) -> None:
        """Close every subscription and disconnect, after sending what is pending."""

    def subscribe(
        self,
        topic: str,
        *,
        maxsize: int = 1000,
        policy: Backpressure | str = Backpressure.BLOCK,
        signal: Signal | None = None,
        durable: str | None = None,
    ) -> Subscription:
        """A new subscription to `topic`; `subscription.ready` is done once it receives.

        `durable`: for a topic the bus keeps (`keep`), the name of a consumer that resumes
        where it left off after a restart (buses that keep nothing ignore it)."""

    async def keep(self, stream: str, topics: list[str], *, max_age: float | None) -> None:
        """Keep the messages of `topics` (for subscribers away, and replay) in `stream`;
        a bus that cannot keep them (in-process) does nothing."""

    async def publish(self, topic: str, message: Message) -> None:
        """Deliver to every subscription of `topic` (waiting on full `block` ones)."""

    def offer(self, topic: str, message: Message) -> Awaitable[None] | None:
        """Publish; None when delivered with no waiting, else an awaitable that finishes
        it (await it before the next offer on the same topic, to keep the order)."""

    async def has_subscribers(self, topic: str) -> bool:
        """Whether anyone (in this process or, for NATS, any other) listens to `topic`."""


def open_bus(url: str | None) -> Bus:
    """A bus from its URL: None or `memory://` for in-process, `nats://host:port` for NATS."""
    if url is None or url in ("memory", "memory://"):
        return MemoryBus()
    if url.startswith(("nats://", "tls://")):
        try:
            from .nats import NatsBus
        except ImportError as exc:  # the optional dependency is missing
            raise PipelineError(
                f"the bus {url!r} needs nats-py: pip install 'taskloom[nats]'"
            ) from exc
        return NatsBus(url)
    raise PipelineError(f"unknown bus {url!r}: use memory:// or nats://host:port")
