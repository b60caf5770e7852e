"""A task whose inputs use every kind of field the dashboard's form generates."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

import taskloom


class Point(BaseModel):
    """Where to draw."""

    x: int = Field(description="across, in pixels")
    y: int = 0


@taskloom.task
def draw(
    point: Point,
    tags: list[str],
    shape: Literal["circle", "square"] = "circle",
    scale: float = 1.0,
    filled: bool = False,
    note: str | None = None,
) -> dict[str, Any]:
    """Draw a shape.

    Args:
        point: the centre
        tags: labels to attach
        shape: what to draw
        scale: how big
        filled: whether to fill it
        note: a remark
    """
    return {
        "point": point.model_dump(),
        "tags": tags,
        "shape": shape,
        "scale": scale,
        "filled": filled,
        "note": note,
    }


@taskloom.task(retries=2, retry_backoff=0.05, retry_jitter=False)
def flaky(fail_times: int, context: taskloom.Context) -> str:
    """Fail the first `fail_times` attempts, then succeed.

    Args:
        fail_times: how many attempts fail
    """
    if context.attempt <= fail_times:
        raise RuntimeError(f"attempt {context.attempt} fails on purpose")
    return f"attempt {context.attempt} succeeded"
