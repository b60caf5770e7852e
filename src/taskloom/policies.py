"""Retry and restart policies: when a failed attempt or service is tried again, and when.

Pure functions of the attempt number, the clock and a random source, so tests can pin them
down.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["RestartPolicy", "RetryPolicy"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with jitter and a maximum.

    The delay before attempt `n + 1` (after `n` failed attempts) is
    `min(backoff_max, backoff * backoff_factor ** (n - 1))`; with `jitter` it is drawn
    uniformly from the upper half of that (`[d/2, d]`), which spreads retries of many runs
    that failed together without ever waiting longer than the unjittered delay.
    """

    retries: int = 0
    backoff: float = 1.0
    backoff_factor: float = 2.0
    backoff_max: float = 60.0
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.backoff < 0 or self.backoff_max < 0:
            raise ValueError("backoff and backoff_max must be >= 0")
        if self.backoff_factor < 1:
            raise ValueError(f"backoff_factor must be >= 1, got {self.backoff_factor}")

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    def should_retry(self, exc: BaseException, attempts_made: int) -> bool:
        """Whether a run whose attempt number `attempts_made` raised `exc` gets another."""
        return attempts_made < self.max_attempts and isinstance(exc, self.retry_on)

    def delay(self, attempts_made: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before the next attempt, after `attempts_made` failed ones."""
        exponent = min(max(attempts_made - 1, 0), 64)  # 2.0 ** 1024 overflows
        base = min(self.backoff_max, self.backoff * self.backoff_factor**exponent)
        if not self.jitter:
            return base
        return base / 2 + rand() * base / 2


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartPolicy:
    """When a service that failed is started again: systemd's (and pydase's) options.

    - `restart_on_exception`: restart a service whose loop raised (else it stays failed).
    - `restart_sec`: seconds to wait before the restart.
    - `start_limit_interval_sec` and `start_limit_burst`: with an interval set, at most
      `start_limit_burst` restarts may happen within any window of that many seconds; a
      failure that would need one more gives up. Restarts older than the window no longer
      count, so a service that recovers earns its restarts back (pydase's window never
      resets: after the first window it restarts without limit). None: no limit.
    - `exit_on_failure`: a service that has given up stops the serving process with a
      non-zero exit code (the supervisor acts on it; the policy only carries it).
    """

    restart_on_exception: bool = True
    restart_sec: float = 1.0
    start_limit_interval_sec: float | None = None
    start_limit_burst: int = 3
    exit_on_failure: bool = False

    def __post_init__(self) -> None:
        if self.restart_sec < 0:
            raise ValueError(f"restart_sec must be >= 0, got {self.restart_sec}")
        if self.start_limit_interval_sec is not None and self.start_limit_interval_sec <= 0:
            raise ValueError(
                f"start_limit_interval_sec must be > 0 or None, got {self.start_limit_interval_sec}"
            )
        if self.start_limit_burst < 0:
            raise ValueError(f"start_limit_burst must be >= 0, got {self.start_limit_burst}")

    def restarts_in_window(self, restarts: Sequence[float], at: float) -> int:
        """How many of the restarts (their times) count against a restart at `at`."""
        interval = self.start_limit_interval_sec
        if interval is None:
            return 0
        return sum(1 for t in restarts if at - interval < t <= at)

    def next_restart(self, restarts: Sequence[float], failed_at: float) -> float | None:
        """The time to restart a service that failed at `failed_at`, or None to give up.

        `restarts` are the times of the restarts made so far (oldest first is not needed).
        """
        if not self.restart_on_exception:
            return None
        at = failed_at + self.restart_sec
        limited = self.start_limit_interval_sec is not None
        if limited and self.restarts_in_window(restarts, at) >= self.start_limit_burst:
            return None
        return at
