"""Running one stage: firing rules, counters, and restarts under its restart policy.

The hot path is `_run_function`. It reads the subscriptions' buffers directly, keeps the
latest value of every input in the keyword dict it calls the function with, validates a
value only when the port's type needs it (plain types were checked at wiring time), and
creates no task or future per message: it sleeps only when no message is ready.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import TypeAdapter

from ..runs import ErrorInfo
from .buses import Bus
from .messages import Message, new_message, now_ms
from .queues import Signal, Subscription, SubscriptionClosed
from .stages import StageSpec, StreamStage
from .status import StageState, StageStatus

__all__ = ["StageIO", "StageRunner", "converter_for"]

logger = logging.getLogger("taskloom.streams")

# Types a message value already has when it reached a stage (in-process: as published,
# checked at wiring time; over NATS: as JSON gives them back).
_PLAIN = frozenset({int, float, str, bool, bytes, dict, list, type(None), Any, object})
_YIELD_EVERY = 256  # messages handled before the stage lets other tasks run
_WAIT = -1
_DONE = -2
_HELD = -3


def converter_for(annotation: Any) -> Callable[[Any], Any] | None:
    """None when values need no conversion; else a function that checks and converts."""
    if annotation in _PLAIN:
        return None
    origin = getattr(annotation, "__origin__", None)
    if origin in (list, dict):
        return None
    validate = TypeAdapter(annotation).validate_python
    if isinstance(annotation, type):
        cls = annotation

        def convert(value: Any) -> Any:
            return value if type(value) is cls else validate(value)

        return convert
    return validate


def _select(subscriptions: list[Subscription], synchronized: bool) -> int:
    """The index of the subscription whose message is next, or _WAIT, _HELD or _DONE.

    The oldest head message goes first (ties to the earlier input). Synchronized, it is
    held (_HELD) while an open input that is not idle, with nothing queued, could still
    deliver an older message: its watermark (last timestamp taken) is below the
    candidate's. _WAIT: nothing is queued; _DONE: every input is closed and drained.
    """
    index = _WAIT
    best = 0
    open_inputs = False
    for i, subscription in enumerate(subscriptions):
        buffer = subscription.buffer
        if buffer:
            timestamp = buffer[0].timestamp
            if index < 0 or timestamp < best:
                index, best = i, timestamp
        elif not subscription.closed:
            open_inputs = True
    if index < 0:
        return _WAIT if open_inputs else _DONE
    if synchronized and open_inputs:
        for subscription in subscriptions:
            if (
                not subscription.buffer
                and not subscription.closed
                and not subscription.idle
                and subscription.watermark < best
            ):
                return _HELD
    return index


def _mark_idle(subscriptions: list[Subscription]) -> None:
    """Count as idle the inputs that hold the oldest queued message back."""
    best = min(s.buffer[0].timestamp for s in subscriptions if s.buffer)
    for subscription in subscriptions:
        if not subscription.buffer and not subscription.closed and subscription.watermark < best:
            subscription.idle = True


class _IdleClock:
    """How long a synchronized stage has held a message, and the timer that wakes it when
    the inputs it waits for count as idle.

    One timer at a time, re-armed lazily: a hold that ends before its deadline leaves the
    timer to fire (a wake-up that finds nothing to do) instead of cancelling it, so a stage
    whose holds are short (the common case over NATS) pays a clock read per hold, not a
    timer.
    """

    __slots__ = ("held_since", "idle_after", "loop", "signal", "timer")

    def __init__(self, idle_after: float | None, signal: Signal) -> None:
        self.idle_after = idle_after
        self.signal = signal
        self.loop = asyncio.get_running_loop()
        self.held_since: float | None = None
        self.timer: asyncio.TimerHandle | None = None

    def expired(self) -> bool:
        """Called while a message is held: True once it has been held `idle_after`."""
        idle_after = self.idle_after
        if idle_after is None:
            return False
        now = self.loop.time()
        since = self.held_since
        if since is None:
            since = self.held_since = now
        deadline = since + idle_after
        if now >= deadline:
            self.held_since = None
            return True
        if self.timer is None:
            self.timer = self.loop.call_at(deadline, self._wake)
        return False

    def _wake(self) -> None:
        self.timer = None
        self.signal.set()

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class StageIO:
    """What a `StreamStage` gets: its config, its input streams, and `publish`."""

    def __init__(self, runner: StageRunner) -> None:
        self._runner = runner
        self.config = runner.config

    def __aiter__(self) -> StageIO:
        return self

    async def __anext__(self) -> tuple[str, Message]:
        try:
            return await self.receive()
        except SubscriptionClosed:
            raise StopAsyncIteration from None

    async def receive(self) -> tuple[str, Message]:
        """The next (input port, message); `SubscriptionClosed` when every input ended."""
        runner = self._runner
        subscriptions = runner.subscriptions
        clock = runner.idle_clock()
        while True:
            index = _select(subscriptions, runner.spec.synchronized)
            if index >= 0:
                clock.held_since = None
                message = subscriptions[index].pop()
                runner.messages_in += 1
                runner.last_timestamp = message.timestamp
                return runner.input_names[index], message
            if index == _DONE:
                raise SubscriptionClosed(runner.spec.name)
            if index == _HELD and clock.expired():
                _mark_idle(subscriptions)
                continue
            await runner.signal.wait()

    async def publish(
        self,
        port: str,
        value: Any,
        *,
        timestamp: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Publish on an output port (unwired ports publish nothing)."""
        runner = self._runner
        if port not in runner.spec.output_ports:
            raise KeyError(
                f"stage {runner.spec.name!r} has no output {port!r} "
                f"(outputs: {', '.join(runner.spec.output_ports) or 'none'})"
            )
        topic = runner.output_topics.get(port)
        if topic is None:
            return
        stamp = now_ms() if timestamp is None else timestamp
        await runner.bus.publish(topic, Message(stamp, value, metadata))
        runner.messages_out += 1

    async def listening(self, port: str) -> bool:
        """Whether anyone listens to the topic of an output port."""
        topic = self._runner.output_topics.get(port)
        return topic is not None and await self._runner.bus.has_subscribers(topic)


class StageRunner:
    """One stage of a deployment, running in this process."""

    def __init__(
        self,
        spec: StageSpec,
        *,
        namespace: str,
        bus: Bus,
        config: Any,
        kept: frozenset[str] = frozenset(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.bus = bus
        self.config = config
        self.clock = clock
        self.signal = Signal()
        self.input_names = list(spec.inputs)
        self.subscriptions = [
            bus.subscribe(
                namespace + topic,
                maxsize=spec.queue_size,
                policy=spec.backpressure,
                signal=self.signal,
                # A kept topic's reader resumes after a restart: one consumer per input.
                durable=f"{spec.name}_{port}" if topic in kept else None,
            )
            for port, topic in spec.inputs.items()
        ]
        self.converters = [
            converter_for(spec.input_ports[name].annotation) for name in self.input_names
        ]
        self.output_topics = {port: namespace + t for port, t in spec.outputs.items()}
        self.state = StageState.STARTING
        self.messages_in = 0
        self.messages_out = 0
        self.errors = 0
        self.restarts = 0
        self.restart_times: list[float] = []
        self.last_timestamp: int | None = None
        self.last_error: ErrorInfo | None = None
        self.task: asyncio.Task[None] | None = None
        self._idle_clock: _IdleClock | None = None

    def idle_clock(self) -> _IdleClock:
        """The stage's idle clock (made on the event loop, at the first use)."""
        if self._idle_clock is None:
            self._idle_clock = _IdleClock(self.spec.idle_after, self.signal)
        return self._idle_clock

    def status(self) -> StageStatus:
        return StageStatus(
            stage=self.spec.name,
            task=self.spec.task_name,
            state=self.state,
            messages_in=self.messages_in,
            messages_out=self.messages_out,
            dropped=sum(s.dropped for s in self.subscriptions),
            errors=self.errors,
            restarts=self.restarts,
            last_timestamp=self.last_timestamp,
            # A stage's own error first; else a bus outage that may have lost its messages.
            last_error=self.last_error or getattr(self.bus, "interruption", None),
        )

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(
            self.run(), name=f"taskloom-stage-{self.spec.name}"
        )

    async def stop(self) -> None:
        for subscription in self.subscriptions:
            subscription.close()
        if self._idle_clock is not None:
            self._idle_clock.cancel()
        task = self.task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])  # its cancellation is not ours to raise
        if self.state not in (StageState.FAILED, StageState.FINISHED):
            self.state = StageState.STOPPED

    async def run(self) -> None:
        """Run the stage; restart it after an error while its policy allows."""
        while True:
            self.state = StageState.RUNNING
            try:
                if self.spec.kind == "source":
                    await self._run_source()
                elif self.spec.kind == "class":
                    await self._run_class()
                else:
                    await self._run_function()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.errors += 1
                self.last_error = ErrorInfo.from_exception(exc)
                logger.warning("stage %r raised: %r", self.spec.name, exc)
                failed_at = self.clock()
                at = self.spec.restart.next_restart(self.restart_times, failed_at)
                if at is None:
                    self.state = StageState.FAILED
                    for subscription in self.subscriptions:
                        subscription.close()  # its producers must not block on it forever
                    return
                self.state = StageState.RESTARTING
                if at > failed_at:
                    await asyncio.sleep(at - failed_at)
                self.restart_times.append(self.clock())
                self.restarts += 1
                continue
            self.state = StageState.FINISHED
            return

    # the kinds of stage ----------------------------------------------------------------
    def _specials(self) -> dict[str, Any]:
        specials = self.spec.task.specials
        values: dict[str, Any] = {}
        if specials.config is not None:
            values["config"] = self.config
        if specials.state is not None:
            values["state"] = specials.state()  # a restart starts with a new state
        return values

    def _call_plan(self) -> tuple[list[Any], list[int], int]:
        """(arguments, position of each input, position of `timestamp` or -1).

        The function is called with positional arguments from one list that the loop
        updates in place: cheaper than a keyword dict per call.
        """
        specials = self._specials()
        parameters = list(inspect.signature(self.spec.task.fn).parameters.values())
        arguments: list[Any] = []
        positions = {p.name: i for i, p in enumerate(parameters)}
        for parameter in parameters:
            if parameter.name in specials:
                arguments.append(specials[parameter.name])
            elif parameter.default is not inspect.Parameter.empty:
                arguments.append(parameter.default)
            else:
                arguments.append(None)  # an input: set before the first call
        timestamp = positions.get("timestamp", -1) if self.spec.task.specials.timestamp else -1
        return arguments, [positions[name] for name in self.input_names], timestamp

    async def _run_function(self) -> None:
        spec = self.spec
        task = spec.task
        fn = task.fn
        arguments, positions, timestamp_at = self._call_plan()
        subscriptions = self.subscriptions
        buffers = [s.buffer for s in subscriptions]
        converters = self.converters
        count = len(subscriptions)
        if not count:  # nothing can make it fire
            return
        first, second = buffers[0], buffers[-1]
        synchronized = spec.synchronized
        signal = self.signal
        offer = self.bus.offer
        topics = [self.output_topics.get(port) for port in spec.output_ports]
        single = len(topics) == 1
        topic = topics[0] if single else None
        is_async = task.is_async
        threaded = not is_async and spec.thread_safe
        loop = asyncio.get_running_loop()
        missing = set(range(count))
        handled = 0
        clock = self.idle_clock()
        while True:
            # Which input's message is next. The common cases (one input with messages,
            # or two inputs both with messages) are decided here; the rest by `_select`.
            if count == 1 and first:
                index = 0
            elif count == 2 and first and second:
                index = 0 if first[0].timestamp <= second[0].timestamp else 1
            else:
                index = _select(subscriptions, synchronized)
                if index < 0:
                    if index == _DONE:
                        return
                    if index == _HELD and clock.expired():
                        _mark_idle(subscriptions)
                        continue
                    await signal.wait()
                    continue
            clock.held_since = None  # a message is taken: any hold is over
            subscription = subscriptions[index]
            buffer = buffers[index]
            message = buffer.popleft()
            timestamp = message.timestamp
            subscription.watermark = timestamp
            subscription.idle = False
            if subscription.blocked and len(buffer) <= subscription.low_water:
                subscription.release()
            self.messages_in += 1
            self.last_timestamp = timestamp
            convert = converters[index]
            arguments[positions[index]] = (
                message.value if convert is None else convert(message.value)
            )
            if missing:
                missing.discard(index)
                if missing:
                    continue
            if timestamp_at >= 0:
                arguments[timestamp_at] = timestamp
            if is_async:
                result = await fn(*arguments)
            elif threaded:
                result = await loop.run_in_executor(None, fn, *arguments)
            else:
                result = fn(*arguments)
            if result is not None:
                if single:
                    if topic is not None:
                        rest = offer(topic, new_message(Message, (timestamp, result, None)))
                        if rest is not None:
                            await rest
                        self.messages_out += 1
                elif topics:
                    await self._publish_items(topics, result, timestamp)
            handled += 1
            if handled == _YIELD_EVERY:
                handled = 0
                await asyncio.sleep(0)

    async def _publish_items(
        self,
        topics: list[str | None],
        result: Any,
        timestamp: int,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(result, tuple) or len(result) != len(topics):
            raise TypeError(
                f"stage {self.spec.name!r} returned {type(result).__name__}, expected a tuple "
                f"of {len(topics)} values (one per output)"
            )
        offer = self.bus.offer
        for topic, item in zip(topics, result, strict=True):
            if item is not None and topic is not None:
                rest = offer(topic, new_message(Message, (timestamp, item, metadata)))
                if rest is not None:
                    await rest
                self.messages_out += 1

    async def _run_source(self) -> None:
        values = self._specials()
        if self.spec.task.specials.timestamp:
            values["timestamp"] = now_ms()
        topics = [self.output_topics.get(port) for port in self.spec.output_ports]
        single = len(topics) == 1
        offer = self.bus.offer
        handled = 0
        async for item in self.spec.task.fn(**values):
            if isinstance(item, Message):
                timestamp, value, metadata = item.timestamp, item.value, item.metadata
            else:
                timestamp, value, metadata = now_ms(), item, None
            self.last_timestamp = timestamp
            if value is None:
                continue
            if single:
                if topics[0] is not None:
                    rest = offer(topics[0], new_message(Message, (timestamp, value, metadata)))
                    if rest is not None:
                        await rest
                    self.messages_out += 1
            elif topics:
                await self._publish_items(topics, value, timestamp, metadata)
            handled += 1
            if handled == _YIELD_EVERY:  # a generator that never awaits must not starve others
                handled = 0
                await asyncio.sleep(0)

    async def _run_class(self) -> None:
        cls: type[StreamStage] = self.spec.task
        instance = cls()
        await instance.run(StageIO(self))
