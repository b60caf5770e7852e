"""Stream stages: the issue's `adder` with state and config, a timer source and a printer.

`taskloom serve examples/` serves the two pipelines below too: deploy them by name from
the dashboard's Pipelines page or with `POST /api/pipelines {"pipeline": "ticking"}`.

taskloom pipeline deploy examples/streams.yaml
taskloom pipeline deploy examples/streams.yaml --bus nats://127.0.0.1:4222
taskloom topic tail demo/sums
taskloom topic publish demo/numbers.a 5
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import taskloom


@dataclass
class Counter:
    count: int = 0


@dataclass
class Step:
    step: int = 1


# Registered as `stream_adder`: `examples/basics.py` already has a task named `adder`, and
# `taskloom serve examples/` serves both files. The stages below are still named `adder`.
@taskloom.task(name="stream_adder")
def adder(a: int, b: int, timestamp: int, state: Counter, config: Step) -> int:
    """Add the latest `a` and `b`, plus a count that grows by `config.step` per call."""
    state.count += config.step
    return a + b + state.count


@taskloom.task
def printer(value: int, timestamp: int) -> None:
    """Print each value with its timestamp (a sink: it has no outputs)."""
    print(f"{timestamp}: {value}", flush=True)


@dataclass
class TickConfig:
    period: float = 1.0
    count: int = 10


@taskloom.task
async def ticks(config: TickConfig) -> AsyncIterator[int]:
    """A source: 0, 1, 2, ... every `period` seconds, `count` times."""
    for i in range(config.count):
        yield i
        await asyncio.sleep(config.period)


#: The same pipeline as `streams.yaml`, for `taskloom pipeline deploy examples/streams.py:demo`.
demo = taskloom.Pipeline("demo")
demo.stage(
    adder,
    name="adder",
    inputs={"a": "numbers.a", "b": "numbers.b"},
    outputs=["sums"],
    config={"step": 2},
)
demo.stage(printer, inputs={"value": "sums"})


@taskloom.task
def running_total(value: int, state: Counter) -> int:
    """Add each value to a total kept between messages."""
    state.count += value
    return state.count


#: A pipeline that moves on its own: a tick every 0.2 s, summed as it goes.
ticking = taskloom.Pipeline("ticking")
ticking.stage(ticks, outputs=["ticks"], config={"period": 0.2, "count": 1_000_000})
ticking.stage(running_total, inputs={"value": "ticks"}, outputs=["totals"])
