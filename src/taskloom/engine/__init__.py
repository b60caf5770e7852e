"""The engine: accepting, scheduling, executing and recording runs."""

from .engine import Engine, RunEvent

__all__ = ("Engine", "RunEvent")
