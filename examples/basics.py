"""The tasks of the README: try them with the `taskloom` command.

taskloom run examples/basics.py:adder a=1 b=2
taskloom run examples/basics.py:greet name=Ada punctuation=.
taskloom run examples/basics.py:slow_count n=5
taskloom run examples/basics.py:fail message="it broke"
taskloom tasks examples/basics.py
taskloom runs
"""

from __future__ import annotations

import asyncio
from typing import Literal

import taskloom


@taskloom.task
def adder(a: int, b: int) -> int:
    """Add two numbers.

    Args:
        a: the first number
        b: the second number
    """
    return a + b


@taskloom.task
def greet(name: str, punctuation: Literal["!", "."] = "!") -> str:
    """Greet someone by name.

    Args:
        name: who to greet
        punctuation: how to end the greeting
    """
    return f"Hello, {name}{punctuation}"


@taskloom.task
async def slow_count(n: int, context: taskloom.Context) -> int:
    """Count to `n` slowly, reporting progress and logging each step.

    Args:
        n: how far to count
    """
    for i in range(1, n + 1):
        await asyncio.sleep(0.1)
        context.logger.info("counted %d of %d", i, n)
        context.progress(i / n, f"counted {i}")
    return n


@taskloom.task
def fail(message: str) -> None:
    """Always fail, with the message given.

    Args:
        message: what the error says
    """
    raise RuntimeError(message)
