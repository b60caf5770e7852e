"""When a schedule fires: cron rules and fixed intervals, each in a time zone.

Fire times are instants, seconds since the epoch. A cron rule's fields are local
wall-clock times in its time zone (an IANA name, through `zoneinfo`); `cronsim` iterates
them as plain calendar times, and each is then placed on the time line here, by these
rules for daylight saving:

* a local time that does not exist (the clock springs forward over it) fires once, at
  the first instant after the gap (several such times, and a matching time right after
  the gap, are one fire);
* a local time that occurs twice (the clock falls back) fires once, at its first
  occurrence;
* an interval is elapsed time: every N seconds from its start (or from the epoch), the
  clock's changes do not move it.

A tick is *missed* when nothing fired it within `MISFIRE_GRACE` seconds of its time (no
worker was running); what then happens is the schedule's `catch_up`: `skip` (fire none
of the missed ticks), `one` (one run, for the latest), `all` (each, at most
`max_catch_up` of them, the latest).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, ClassVar, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from ..exceptions import FieldError, InputValidationError
from .errors import ScheduleError

__all__ = [
    "MACROS",
    "MISFIRE_GRACE",
    "CatchUp",
    "Cron",
    "Interval",
    "Rule",
    "due_time",
    "format_instant",
    "parse_duration",
    "parse_instant",
    "rule_from_record",
    "time_zone",
]

CatchUp = Literal["skip", "one", "all"]
CATCH_UP: tuple[str, ...] = get_args(CatchUp)
#: Seconds after its time within which a tick still fires as usual; later, it was missed.
MISFIRE_GRACE = 10.0
#: Cron's shorthands, as the five fields they stand for.
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELDS = "minute hour day-of-month month day-of-week"
#: How far back from the cutoff missed ticks are looked for, a window after another.
_LOOK_BACK = (3600.0, 86400.0, 31 * 86400.0, math.inf)


def time_zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`; a `ScheduleError` naming the field if there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ScheduleError(
            f"timezone: unknown time zone {name!r} (expected an IANA name such as "
            "'UTC' or 'Europe/Zurich')",
            field="timezone",
        ) from None


def parse_instant(value: datetime | str | float | None, zone: ZoneInfo, what: str) -> float | None:
    """An instant from a datetime (naive: in `zone`), an ISO 8601 text or epoch seconds."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ScheduleError(f"{what}: expected an ISO 8601 date and time", field=what)
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ScheduleError(f"{what}: expected a finite time", field=what)
        return float(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ScheduleError(
                f"{what}: {value!r} is not an ISO 8601 date and time "
                "(expected e.g. 2027-01-31T02:30:00+01:00)",
                field=what,
            ) from None
    if not isinstance(value, datetime):
        raise ScheduleError(f"{what}: expected an ISO 8601 date and time", field=what)
    if value.tzinfo is None:
        return _instant(value, zone)
    return value.timestamp()


_DURATION = re.compile(
    r"(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?"
    r"(?:(\d+(?:\.\d+)?)s?)?"
)


def parse_duration(text: str, what: str) -> float:
    """Seconds from `90`, `90s`, `10m`, `1h30m` or `2d`."""
    found = _DURATION.fullmatch(text.strip().lower()) if text.strip() else None
    if found is None or not any(found.groups()):
        raise ScheduleError(
            f"{what}: {text!r} is not a duration (expected e.g. 90, 90s, 10m, 1h30m or 2d)",
            field=what,
        )
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in found.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def format_instant(instant: float) -> str:
    """`2027-01-31T01:30:00Z`: an instant in UTC, to the second (finer when it has to be)."""
    moment = datetime.fromtimestamp(instant, UTC)
    spec = "seconds" if moment.microsecond == 0 else "microseconds"
    return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


@dataclass(frozen=True, kw_only=True)
class Rule:
    """What every rule has: its time zone, the inputs of each run, when it is in force,
    a random delay of each run, and what happens to ticks missed."""

    kind: ClassVar[str]

    timezone: str = "UTC"
    inputs: Mapping[str, Any] | None = None
    start: datetime | str | float | None = None
    end: datetime | str | float | None = None
    jitter: float = 0.0
    catch_up: CatchUp = "skip"
    max_catch_up: int = 10
    _start_at: float | None = field(init=False, repr=False, compare=False, default=None)
    _end_at: float | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        zone = time_zone(self.timezone)
        start = parse_instant(self.start, zone, "start")
        end = parse_instant(self.end, zone, "end")
        if start is not None and end is not None and end < start:
            raise ScheduleError("end: the end is before the start", field="end")
        object.__setattr__(self, "_start_at", start)
        object.__setattr__(self, "_end_at", end)
        if isinstance(self.jitter, bool) or not isinstance(self.jitter, int | float):
            raise ScheduleError("jitter: expected seconds, a number >= 0", field="jitter")
        if not math.isfinite(self.jitter) or self.jitter < 0:
            raise ScheduleError("jitter: expected seconds, a number >= 0", field="jitter")
        if self.catch_up not in CATCH_UP:
            raise ScheduleError(
                f"catch_up: {self.catch_up!r} is not one of skip, one, all", field="catch_up"
            )
        if isinstance(self.max_catch_up, bool) or not isinstance(self.max_catch_up, int):
            raise ScheduleError("max_catch_up: expected a whole number >= 1", field="max_catch_up")
        if self.max_catch_up < 1:
            raise ScheduleError("max_catch_up: expected a whole number >= 1", field="max_catch_up")
        if self.inputs is not None and not isinstance(self.inputs, Mapping):
            raise ScheduleError("inputs: expected an object of input names", field="inputs")

    @cached_property
    def zone(self) -> ZoneInfo:
        return time_zone(self.timezone)

    @property
    def start_at(self) -> float | None:
        return self._start_at

    @property
    def end_at(self) -> float | None:
        return self._end_at

    # fire times ----------------------------------------------------------------------------
    def _ticks_after(self, after: float) -> Iterator[float]:
        """Every fire time later than `after`, ignoring start and end."""
        raise NotImplementedError

    def fires_after(self, after: float) -> Iterator[float]:
        """The fire times later than `after`, in order, within the rule's start and end."""
        if self._start_at is not None and after < self._start_at:
            after = math.nextafter(self._start_at, -math.inf)
        for tick in self._ticks_after(after):
            if self._end_at is not None and tick > self._end_at:
                return
            yield tick

    def next_fires(self, after: float, count: int = 5) -> list[float]:
        """The next `count` fire times later than `after`."""
        return list(itertools.islice(self.fires_after(after), count))

    def first_fire(self, after: float) -> float | None:
        """The first fire time later than `after`; None when the rule has ended."""
        return next(iter(self.fires_after(after)), None)

    def due(
        self, next_at: float, now: float, *, grace: float = MISFIRE_GRACE
    ) -> tuple[list[float], float | None]:
        """What to fire at `now` when `next_at` is the first tick not fired yet: the ticks
        (after the catch-up policy), and the first tick later than `now`.

        A long downtime is not walked tick by tick: the missed ticks kept are looked for
        in growing windows back from the cutoff, and the rest starts at the cutoff.
        """
        if next_at > now:
            return [], next_at
        cutoff = now - grace
        kept = self._kept
        missed: list[float] = []
        if kept and next_at < cutoff:
            for span in _LOOK_BACK:
                begin = max(next_at, cutoff - span)
                found = list(itertools.takewhile(lambda t: t < cutoff, self._ticks_from(begin)))
                if len(found) >= kept or begin == next_at:
                    missed = found[-kept:]
                    break
        on_time: list[float] = []
        following: float | None = None
        for tick in self._ticks_from(max(next_at, cutoff)):
            if tick > now:
                following = tick
                break
            on_time.append(tick)
        return [*missed, *on_time], following

    def _ticks_from(self, begin: float) -> Iterator[float]:
        """The fire times at or after `begin`."""
        return self.fires_after(math.nextafter(begin, -math.inf))

    @property
    def _kept(self) -> int:
        """How many missed ticks the catch-up policy fires: none, one, or `max_catch_up`."""
        return {"skip": 0, "one": 1, "all": self.max_catch_up}[self.catch_up]

    def delay_of(self, name: str, tick: float) -> float:
        """The random delay of this tick's run (0 without jitter): the same in every
        process, so every worker agrees when it is due."""
        if not self.jitter:
            return 0.0
        digest = hashlib.sha256(f"{name}\n{tick!r}".encode()).digest()
        return self.jitter * int.from_bytes(digest[:8], "big") / 2**64

    # words and records -------------------------------------------------------------------
    def describe(self) -> str:
        raise NotImplementedError

    @property
    def text(self) -> str:
        """The rule alone, as it is written: a cron expression, or seconds."""
        raise NotImplementedError

    def as_record(self) -> dict[str, Any]:
        """What a stored schedule keeps of its rule (see `rule_from_record`)."""
        return {
            "kind": self.kind,
            "rule": self.text,
            "timezone": self.timezone,
            "inputs": dict(self.inputs or {}),
            "start_at": self._start_at,
            "end_at": self._end_at,
            "jitter": float(self.jitter),
            "catch_up": self.catch_up,
            "max_catch_up": self.max_catch_up,
        }


@dataclass(frozen=True)
class Cron(Rule):
    """A cron rule: five fields (minute, hour, day of month, month, day of week) or a
    macro (`@hourly`, `@daily`, `@midnight`, `@weekly`, `@monthly`, `@yearly`), read as
    local times in `timezone`."""

    kind: ClassVar[str] = "cron"

    expression: str
    _fields: str = field(init=False, repr=False, compare=False, default="")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.expression, str):
            raise ScheduleError("cron: expected a cron expression (text)", field="cron")
        written = self.expression.strip()
        if written.startswith("@"):
            if written.lower() not in MACROS:
                known = ", ".join(MACROS)
                raise ScheduleError(
                    f"cron: unknown macro {self.expression!r} (expected one of {known})",
                    field="cron",
                )
            written = MACROS[written.lower()]
        parts = written.split()
        if len(parts) != 5:
            raise ScheduleError(
                f"cron: {self.expression!r} has {len(parts)} fields (expected 5: {_FIELDS})",
                field="cron",
            )
        try:
            CronSim(" ".join(parts), datetime(2000, 1, 1))
        except CronSimError as exc:
            raise ScheduleError(
                f"cron: {self.expression!r} is not a valid cron expression: "
                f"{str(exc).lower()} (expected 5 fields: {_FIELDS})",
                field="cron",
            ) from None
        object.__setattr__(self, "_fields", " ".join(parts))

    @property
    def text(self) -> str:
        return self.expression

    def _ticks_after(self, after: float) -> Iterator[float]:
        zone = self.zone
        local = datetime.fromtimestamp(after, zone).replace(tzinfo=None)
        last = after
        # From an hour earlier: an instant in the second pass of a repeated hour reads
        # as an earlier local time, and a time in a gap maps to its end.
        for moment in CronSim(self._fields, local - timedelta(hours=1)):
            tick = _instant(moment, zone)
            if tick > last:
                last = tick
                yield tick

    def describe(self) -> str:
        words = CronSim(self._fields, datetime(2000, 1, 1)).explain()
        return f"{words} ({self.timezone})"


@dataclass(frozen=True)
class Interval(Rule):
    """Every `seconds + 60 * minutes + 3600 * hours + 86400 * days` seconds of elapsed
    time, from `start` (or from the epoch: an interval of 30 s fires at :00 and :30)."""

    kind: ClassVar[str] = "interval"

    seconds: float = 0
    minutes: float = 0
    hours: float = 0
    days: float = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        parts = (self.seconds, self.minutes, self.hours, self.days)
        if any(isinstance(p, bool) or not isinstance(p, int | float) for p in parts):
            raise ScheduleError("interval: expected seconds, a number > 0", field="interval")
        if not math.isfinite(self.every) or self.every <= 0:
            raise ScheduleError(
                f"interval: {self.every:g} s is not a period (expected a number of seconds > 0)",
                field="interval",
            )

    @property
    def every(self) -> float:
        return self.seconds + 60 * self.minutes + 3600 * self.hours + 86400 * self.days

    @property
    def text(self) -> str:
        return f"{self.every:g}"

    def _ticks_after(self, after: float) -> Iterator[float]:
        anchor = self._start_at or 0.0
        every = self.every
        number = max(0, math.floor((after - anchor) / every) + 1)
        while True:
            tick = anchor + number * every
            if tick > after:
                yield tick
            number += 1

    def due(
        self, next_at: float, now: float, *, grace: float = MISFIRE_GRACE
    ) -> tuple[list[float], float | None]:
        # Ticks are counted, not walked: a long downtime of a short interval has many.
        if next_at > now:
            return [], next_at
        anchor, every = self._start_at or 0.0, self.every
        first = round((next_at - anchor) / every)
        last = math.floor((now - anchor) / every)  # the last tick at or before now
        last_missed = math.ceil((now - grace - anchor) / every) - 1  # the last before the cutoff
        kept = self._kept
        missed = range(max(first, last_missed - kept + 1), last_missed + 1)
        on_time = range(max(first, last_missed + 1), last + 1)
        end = self._end_at
        ticks = [anchor + n * every for n in itertools.chain(missed, on_time)]
        following: float | None = anchor + (last + 1) * every
        if end is not None:
            ticks = [t for t in ticks if t <= end]
            following = following if following is not None and following <= end else None
        return ticks, following

    def describe(self) -> str:
        remaining = self.every
        words = []
        for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
            count = int(remaining // size)
            if count:
                words.append(f"{count} {unit}{'s' if count > 1 else ''}")
                remaining -= count * size
        if remaining or not words:
            words.append(f"{remaining:g} second{'s' if remaining != 1 else ''}")
        return "every " + " ".join(words)


def rule_from_record(record: Mapping[str, Any]) -> Rule:
    """The rule a stored schedule keeps (`Rule.as_record`)."""
    common: dict[str, Any] = {
        "timezone": record.get("timezone") or "UTC",
        "inputs": record.get("inputs") or None,
        "start": record.get("start_at"),
        "end": record.get("end_at"),
        "jitter": record.get("jitter") or 0.0,
        "catch_up": record.get("catch_up") or "skip",
        "max_catch_up": record.get("max_catch_up") or 10,
    }
    if record.get("kind") == "interval":
        return Interval(seconds=float(record["rule"]), **common)
    return Cron(str(record["rule"]), **common)


def _instant(local: datetime, zone: ZoneInfo) -> float:
    """The instant of the local time `local` in `zone`: its first occurrence when the
    clock fell back over it, the end of the gap when the clock sprang forward over it."""
    first = local.replace(tzinfo=zone, fold=0)
    stamp = first.timestamp()
    if datetime.fromtimestamp(stamp, zone).replace(tzinfo=None) == local:
        return stamp
    # In a gap: fold=0 reads it with the offset before the change, fold=1 with the one
    # after; the change itself lies between the two. Find its first second.
    other = local.replace(tzinfo=zone, fold=1).timestamp()
    low, high = math.floor(min(stamp, other)), math.ceil(max(stamp, other))
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) > local:
            high = middle
        else:
            low = middle
    return float(high)


def due_time(
    task: str, run_at: Any = None, delay: Any = None, *, now: float | None = None
) -> float | None:
    """When a run submitted now with `run_at` (an instant: datetime, ISO 8601 text, epoch
    seconds; naive times are UTC) or `delay` (seconds) is due; None: at once. Bad values
    raise `InputValidationError` naming the task and the option."""
    if run_at is None and delay is None:
        return None
    if run_at is not None and delay is not None:
        raise InputValidationError(
            task, [FieldError("run_at", "give run_at or delay, not both", run_at)], what="option"
        )
    now = time.time() if now is None else now
    if delay is not None:
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not delay >= 0:
            raise InputValidationError(
                task,
                [FieldError("delay", "expected a number of seconds >= 0", delay)],
                what="option",
            )
        if delay == float("inf"):
            raise InputValidationError(
                task,
                [FieldError("delay", "expected a finite number of seconds", delay)],
                what="option",
            )
        return now + float(delay)
    try:
        due = parse_instant(run_at, ZoneInfo("UTC"), "run_at")
    except ScheduleError as exc:
        message = str(exc).partition(": ")[2]
        errors = [FieldError("run_at", message, run_at)]
        raise InputValidationError(task, errors, what="option") from None
    return due
