"""Tasks and services the server tests serve (in process and through `taskloom serve`)."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

import taskloom


@taskloom.task
def adder(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@taskloom.task
async def chatty(lines: int, context: taskloom.Context) -> int:
    """Log `lines` lines, then return how many."""
    for number in range(1, lines + 1):
        context.logger.info("line %d", number)
    return lines


@taskloom.task
async def nap(seconds: float) -> str:
    """Sleep, for the cancel and wait tests."""
    await asyncio.sleep(seconds)
    return "rested"


@taskloom.task
def broken(message: str) -> None:
    """Fail with `message`."""
    raise RuntimeError(message)


class TickConfig(BaseModel):
    period: float = 0.05


@taskloom.service
async def ticker(config: TickConfig, context: taskloom.Context) -> None:
    """Log a tick every `period` seconds until stopped."""
    count = 0
    while True:
        count += 1
        context.logger.info("tick %d", count)
        await context.sleep(config.period)
