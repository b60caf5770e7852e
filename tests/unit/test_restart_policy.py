"""RestartPolicy: systemd-like restart decisions, as pure functions of the clock."""

from __future__ import annotations

import pytest

from taskloom.policies import RestartPolicy


def test_defaults_are_pydase_s() -> None:
    policy = RestartPolicy()
    assert policy.restart_on_exception is True
    assert policy.restart_sec == 1.0
    assert policy.start_limit_interval_sec is None
    assert policy.start_limit_burst == 3
    assert policy.exit_on_failure is False


def test_without_an_interval_restarts_never_run_out() -> None:
    policy = RestartPolicy(restart_sec=2.0)
    restarts = [float(t) for t in range(1000)]
    assert policy.next_restart(restarts, failed_at=1000.0) == 1002.0


def test_no_restart_when_restart_on_exception_is_off() -> None:
    assert RestartPolicy(restart_on_exception=False).next_restart([], failed_at=5.0) is None


def test_the_burst_is_the_most_restarts_within_the_window() -> None:
    policy = RestartPolicy(restart_sec=1.0, start_limit_interval_sec=10.0, start_limit_burst=3)
    restarts: list[float] = []
    now = 0.0
    for _ in range(3):
        at = policy.next_restart(restarts, failed_at=now)
        assert at == now + 1.0
        restarts.append(at)
        now = at + 0.5  # fails half a second after each restart
    # A fourth restart at 5.5 would be the fourth within (-4.5, 5.5]: give up.
    assert policy.next_restart(restarts, failed_at=now) is None


def test_old_restarts_fall_out_of_the_window_and_restarts_come_back() -> None:
    # pydase never resets its window; here a service that recovers earns restarts back.
    policy = RestartPolicy(restart_sec=1.0, start_limit_interval_sec=10.0, start_limit_burst=2)
    restarts = [1.0, 2.0]
    assert policy.next_restart(restarts, failed_at=5.0) is None  # at 6.0: both count
    assert policy.next_restart(restarts, failed_at=8.9) is None  # at 9.9: both still count
    assert policy.next_restart(restarts, failed_at=10.0) == 11.0  # at 11.0: only 2.0 counts


def test_the_window_boundary_is_exclusive_at_its_old_end() -> None:
    policy = RestartPolicy(restart_sec=0.0, start_limit_interval_sec=10.0, start_limit_burst=1)
    assert policy.restarts_in_window([0.0], at=10.0) == 0
    assert policy.restarts_in_window([0.0], at=9.999) == 1
    assert policy.next_restart([0.0], failed_at=10.0) == 10.0


def test_a_burst_of_zero_never_restarts_within_a_limit() -> None:
    policy = RestartPolicy(start_limit_interval_sec=5.0, start_limit_burst=0)
    assert policy.next_restart([], failed_at=0.0) is None


@pytest.mark.parametrize(
    "options",
    [
        {"restart_sec": -1.0},
        {"start_limit_interval_sec": 0.0},
        {"start_limit_interval_sec": -3.0},
        {"start_limit_burst": -1},
    ],
)
def test_invalid_values_are_refused(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        RestartPolicy(**options)  # type: ignore[arg-type]
