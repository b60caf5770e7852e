"""Retry policy: when a failed attempt is tried again, and after how long.

Pure functions of the attempt number and a random source, so tests can pin them down.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RetryPolicy"]


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
