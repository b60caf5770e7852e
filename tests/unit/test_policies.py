"""RetryPolicy: attempts, exponential backoff with a cap, jitter, and which errors retry."""

from __future__ import annotations

import random

import pytest

import taskloom
from taskloom import RetryPolicy


def test_max_attempts_is_retries_plus_one() -> None:
    assert RetryPolicy().max_attempts == 1
    assert RetryPolicy(retries=3).max_attempts == 4


def test_delays_grow_exponentially_without_jitter() -> None:
    policy = RetryPolicy(retries=5, backoff=0.5, backoff_factor=3, jitter=False)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.5, 4.5, 13.5]


def test_delays_are_capped_by_backoff_max() -> None:
    policy = RetryPolicy(retries=10, backoff=1, backoff_factor=2, backoff_max=5, jitter=False)
    assert [policy.delay(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]


def test_a_huge_attempt_number_does_not_overflow() -> None:
    policy = RetryPolicy(retries=10_000, backoff=1, backoff_factor=2, backoff_max=7, jitter=False)
    assert policy.delay(5_000) == 7


def test_first_delay_is_the_backoff_itself() -> None:
    policy = RetryPolicy(retries=1, backoff=0.25, jitter=False)
    assert policy.delay(1) == 0.25
    assert policy.delay(0) == 0.25


def test_constant_backoff_with_factor_one() -> None:
    policy = RetryPolicy(retries=3, backoff=2, backoff_factor=1, jitter=False)
    assert {policy.delay(n) for n in (1, 2, 3)} == {2}


def test_jitter_bounds_are_half_and_full_delay() -> None:
    policy = RetryPolicy(retries=3, backoff=2, backoff_factor=2, jitter=True)
    assert policy.delay(2, rand=lambda: 0.0) == 2.0
    assert policy.delay(2, rand=lambda: 1.0) == 4.0
    assert policy.delay(2, rand=lambda: 0.5) == 3.0


def test_jittered_delays_stay_within_half_and_full() -> None:
    policy = RetryPolicy(retries=3, backoff=1, backoff_factor=2, backoff_max=3, jitter=True)
    rand = random.Random(1234).random
    for attempt, full in ((1, 1.0), (2, 2.0), (3, 3.0), (9, 3.0)):
        samples = [policy.delay(attempt, rand=rand) for _ in range(500)]
        assert min(samples) >= full / 2
        assert max(samples) <= full
        # jitter really spreads the delays over the interval
        assert max(samples) - min(samples) > full / 4


def test_should_retry_counts_attempts() -> None:
    policy = RetryPolicy(retries=2)
    error = ValueError("boom")
    assert policy.should_retry(error, 1)
    assert policy.should_retry(error, 2)
    assert not policy.should_retry(error, 3)


def test_no_retries_never_retries() -> None:
    assert not RetryPolicy().should_retry(RuntimeError("x"), 1)


def test_retry_on_filters_exception_types() -> None:
    policy = RetryPolicy(retries=3, retry_on=(ConnectionError, TimeoutError))
    assert policy.should_retry(ConnectionError(), 1)
    assert policy.should_retry(ConnectionRefusedError(), 1)  # a subclass counts
    assert policy.should_retry(TimeoutError(), 1)
    assert not policy.should_retry(ValueError(), 1)
    assert not policy.should_retry(KeyError("k"), 1)


def test_default_retry_on_is_every_exception() -> None:
    policy = RetryPolicy(retries=1)
    assert policy.should_retry(ValueError(), 1)
    assert policy.should_retry(taskloom.TaskTimeoutError(), 1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"retries": -1},
        {"backoff": -0.1},
        {"backoff_max": -1},
        {"backoff_factor": 0.5},
    ],
)
def test_invalid_policies_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the type is the contract here
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_task_options_map_to_the_policy() -> None:
    @taskloom.task(
        retries=4,
        retry_backoff=0.5,
        retry_backoff_factor=3,
        retry_backoff_max=9,
        retry_jitter=False,
        retry_on=ConnectionError,
    )
    def flaky() -> None:
        return None

    policy = flaky.options.retry_policy
    assert policy == RetryPolicy(
        retries=4,
        backoff=0.5,
        backoff_factor=3,
        backoff_max=9,
        jitter=False,
        retry_on=(ConnectionError,),
    )
