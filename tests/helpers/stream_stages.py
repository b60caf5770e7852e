"""Stream stages for the tests: the streamtasks guide's examples and a few of our own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel

import taskloom
from taskloom import task as fntask  # the only change to the streamtasks guide's code
from taskloom.streams import Message


# --- the streamtasks guide ("Custom tasks"), unchanged apart from the import -----------------
@fntask()
def adder(a: int, b: int) -> int:
    return a + b


@dataclass
class State:
    count: int = 0


@dataclass
class Config:
    step: int = 1


@fntask()
def demo2(a: int, state: State, config: Config) -> int:
    state.count += config.step
    return a + state.count


# --- special parameters and outputs ----------------------------------------------------------
@taskloom.task
def stamp(value: int, timestamp: int) -> str:
    return f"{value}@{timestamp}"


@taskloom.task
def running_total(value: int, state: State) -> int:
    state.count += value
    return state.count


@taskloom.task
def split(value: int) -> tuple[int, str | None]:
    return value * 2, (None if value % 2 else f"even {value}")


@taskloom.task
def evens_only(value: int) -> int | None:
    return value if value % 2 == 0 else None


@taskloom.task
def pair(a: int, b: int, timestamp: int) -> list[int]:
    return [timestamp, a, b]


@taskloom.task
def fragile(value: int) -> int:
    if value < 0:
        raise ValueError(f"negative value {value}")
    return value


@taskloom.task
async def slow_async(value: int) -> int:
    await asyncio.sleep(0)
    return value + 1


@taskloom.task(thread_safe=True)
def in_thread(value: int) -> int:
    return value * 10


class Point(BaseModel):
    x: int
    y: int


@taskloom.task
def norm(point: Point) -> int:
    return abs(point.x) + abs(point.y)


# --- sources and class stages ----------------------------------------------------------------
@taskloom.task
async def counter_source(config: Config) -> AsyncIterator[int]:
    for i in range(5):
        # A source may yield a Message holding its port's type, to give it a timestamp.
        yield Message(100 + i, i * config.step)  # type: ignore[misc]


class KeepMultiples(taskloom.streams.StreamStage):
    inputs = {"value": int}
    outputs = {"kept": int, "count": int}
    Config = Config

    async def run(self, io: taskloom.streams.StageIO) -> None:
        seen = 0
        async for port, message in io:
            assert port == "value"
            seen += 1
            if message.value % io.config.step == 0:
                await io.publish("kept", message.value, timestamp=message.timestamp)
            await io.publish("count", seen, timestamp=message.timestamp)


# --- ports with metadata ---------------------------------------------------------------------
@taskloom.task
def camera(frame: int) -> Annotated[bytes, {"content": "video", "codec": "h264", "rate": 30}]:
    return bytes([frame % 256])


@taskloom.task
def encoder(data: Annotated[bytes, {"content": "video", "codec": "vp9", "rate": 25}]) -> int:
    return len(data)


@taskloom.task
def player(data: Annotated[bytes, {"content": "video", "codec": "h264"}]) -> None:
    return None


@taskloom.task
def texts(value: str) -> None:
    return None


@taskloom.task
def floats(value: float) -> None:
    return None


# --- metadata from the config: streamtasks' examples/fntask.py, its import changed ------------
# (its body uses numpy; here the same pixel shift over plain bytes)
@dataclass
class BGR24RedShifterConfig:
    rate: int = 30
    width: int = 1280
    height: int = 720
    scale: float = 1.2


io_map = ["rate", "width", "height"]
default_io = {"content": "video", "pixel_format": "bgr24", "codec": "raw"}


@fntask(thread_safe=True)
def bgr24_red_shifter(
    image: Annotated[bytes, default_io, io_map], config: BGR24RedShifterConfig
) -> Annotated[bytes, default_io, io_map]:
    shifted = bytearray(image)
    shifted[2::3] = bytes(min(int(v * config.scale), 255) for v in image[2::3])
    return bytes(shifted)


@dataclass
class ScreenConfig:
    width: int = 1280
    height: int = 720


@taskloom.task
def screen(
    frame: Annotated[bytes, {"content": "video"}, ["width", "height"]], config: ScreenConfig
) -> None:
    return None
