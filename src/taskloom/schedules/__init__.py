"""Schedules, delayed runs and triggers: when runs start without someone submitting them.

`Cron` and `Interval` say when a schedule fires (`rules.py`).
"""

from .errors import HookNotFoundError, ScheduleError, ScheduleNotFoundError, SignatureError
from .rules import MISFIRE_GRACE, CatchUp, Cron, Interval, Rule

__all__ = [
    "MISFIRE_GRACE",
    "CatchUp",
    "Cron",
    "HookNotFoundError",
    "Interval",
    "Rule",
    "ScheduleError",
    "ScheduleNotFoundError",
    "SignatureError",
]
