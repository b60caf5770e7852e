"""Services: definition, the supervisor's control operations and restarts under fake time."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from support import WAIT, in_thread_wait
from taskloom import Context, InputValidationError, TaskDefinitionError
from taskloom.exceptions import DuplicateTaskError
from taskloom.services import (
    ExitReason,
    Service,
    ServiceRunningError,
    ServiceState,
    ServiceStatus,
    Supervisor,
    UnknownServiceError,
    service,
)


class FakeTime:
    """A clock that only moves when the supervisor sleeps: restarts happen at once, exactly."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


class Watch:
    """A listener that keeps every status and lets a test wait for one."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.seen: list[ServiceStatus] = []
        self._waiters: list[tuple[Callable[[ServiceStatus], bool], asyncio.Future[Any]]] = []
        supervisor.add_listener(self)

    def __call__(self, status: ServiceStatus) -> None:
        self.seen.append(status)
        for predicate, future in self._waiters:
            if not future.done() and predicate(status):
                future.set_result(status)

    async def first(self, predicate: Callable[[ServiceStatus], bool]) -> ServiceStatus:
        """The first status seen so far, or from now on, for which `predicate` holds."""
        for status in self.seen:
            if predicate(status):
                return status
        future: asyncio.Future[ServiceStatus] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, future))
        return await asyncio.wait_for(future, WAIT)

    async def state(self, name: str, state: ServiceState, *, starts: int = 1) -> ServiceStatus:
        return await self.first(
            lambda s: s.name == name and s.state is state and s.starts == starts
        )


def loop_task(name: str) -> asyncio.Task[Any]:
    """The task supervising service `name` (the supervisor names it), to await its end."""
    (task,) = (t for t in asyncio.all_tasks() if t.get_name() == f"taskloom-service-{name}")
    return task


async def _forever(context: Context) -> None:
    await context.sleep(3600)


# --- restarts under fake time -----------------------------------------------------------------


async def test_acceptance_one_start_five_restarts_then_failed_and_a_non_zero_exit() -> None:
    @service(
        restart_sec=1,
        start_limit_interval_sec=10,
        start_limit_burst=5,
        exit_on_failure=True,
    )
    async def crashes() -> None:
        raise RuntimeError("sensor unplugged")

    fake = FakeTime()
    async with Supervisor([crashes], clock=fake.clock, sleep=fake.sleep) as supervisor:
        assert supervisor.exit_code is None
        await supervisor.start("crashes")
        code = await asyncio.wait_for(supervisor.wait_exit(), WAIT)
        status = supervisor.status("crashes")

    assert code != 0
    assert supervisor.exit_code == code
    assert supervisor.exit_requested
    assert status.state is ServiceState.FAILED
    assert (status.starts, status.restarts) == (6, 5)
    assert status.restart_times == (1.0, 2.0, 3.0, 4.0, 5.0)
    assert [start.restart for start in status.history] == [False] + [True] * 5
    assert {start.exit_reason for start in status.history} == {ExitReason.FAILED}
    assert status.last_error is not None
    assert status.last_error.type == "RuntimeError"
    assert status.last_error.message == "sensor unplugged"
    assert "raise RuntimeError" in (status.last_error.traceback or "")
    assert status.since == fake.now == 5.0


async def test_pydase_example_restarts_spaced_at_the_limit_are_allowed_for_ever() -> None:
    # restart_sec=2, window 10 s, burst 5: the restart at t counts those in (t-10, t], which
    # excludes the one at t-10, so there are never more than 4 before it.
    @service(restart_sec=2.0, start_limit_interval_sec=10.0, start_limit_burst=5)
    async def critical() -> None:
        raise RuntimeError("Critical failure")

    fake = FakeTime()
    async with Supervisor([critical], clock=fake.clock, sleep=fake.sleep) as supervisor:
        watch = Watch(supervisor)
        await supervisor.start("critical")
        status = await watch.first(
            lambda s: s.state is ServiceState.RESTARTING and len(s.restart_times) == 20
        )
        await supervisor.stop("critical")
        assert supervisor.status("critical").state is ServiceState.STOPPED

    assert status.restart_times == tuple(2.0 * i for i in range(1, 21))
    assert status.restarts == 20
    assert status.next_restart_at == 42.0
    assert supervisor.exit_code is None


async def test_the_window_slides_a_service_that_recovered_is_restarted_again() -> None:
    fake = FakeTime()

    @service(restart_sec=1.0, start_limit_interval_sec=10.0, start_limit_burst=1)
    async def flaky(context: Context) -> None:
        if context.attempt == 2:
            await fake.sleep(15.0)  # runs longer than the window before failing
        raise RuntimeError(f"failure {context.attempt}")

    async with Supervisor([flaky], clock=fake.clock, sleep=fake.sleep) as supervisor:
        watch = Watch(supervisor)
        await supervisor.start("flaky")
        status = await watch.state("flaky", ServiceState.FAILED, starts=3)

    # Failed at 0, restarted at 1; failed at 16, restarted at 17 (the restart at 1 is out of
    # the window by then); failed at 17: a restart at 18 would be a second one in (8, 18].
    assert status.restart_times == (1.0, 17.0)
    assert status.restarts == 2
    assert status.last_error is not None
    assert status.last_error.message == "failure 3"


async def test_without_restart_on_exception_a_failure_is_final() -> None:
    @service(restart_on_exception=False)
    async def once() -> None:
        raise ValueError("bad reading")

    fake = FakeTime()
    async with Supervisor([once], clock=fake.clock, sleep=fake.sleep) as supervisor:
        watch = Watch(supervisor)
        await supervisor.start("once")
        status = await watch.state("once", ServiceState.FAILED)

    assert (status.starts, status.restarts) == (1, 0)
    assert status.history[0].exit_reason is ExitReason.FAILED
    assert supervisor.exit_code is None  # exit_on_failure is off


async def test_a_loop_that_returns_is_completed_and_not_restarted() -> None:
    @service
    async def finishes() -> None:
        return None

    fake = FakeTime()
    async with Supervisor([finishes], clock=fake.clock, sleep=fake.sleep) as supervisor:
        watch = Watch(supervisor)
        await supervisor.start("finishes")
        loop = loop_task("finishes")
        status = await watch.state("finishes", ServiceState.COMPLETED)
        await asyncio.wait_for(loop, WAIT)  # the supervising loop is over: no restart follows
        assert supervisor.status("finishes").starts == 1

    assert [s.state for s in watch.seen] == [
        ServiceState.STARTING,
        ServiceState.RUNNING,
        ServiceState.COMPLETED,
    ]
    assert status.history[0].exit_reason is ExitReason.COMPLETED
    assert status.last_error is None


# --- control --------------------------------------------------------------------------------


async def test_start_stop_restart_and_status() -> None:
    looping = service(name="looping")(_forever)
    async with Supervisor([looping]) as supervisor:
        watch = Watch(supervisor)
        assert supervisor.status("looping").state is ServiceState.STOPPED
        await supervisor.start("looping")
        await watch.state("looping", ServiceState.RUNNING)
        with pytest.raises(ServiceRunningError, match="looping"):
            await supervisor.start("looping")

        stopped = await supervisor.stop("looping")
        assert stopped.state is ServiceState.STOPPED
        assert not stopped.stop_timed_out
        assert stopped.history[0].exit_reason is ExitReason.STOPPED
        assert stopped.history[0].ended_at is not None
        assert stopped.last_error is None

        await supervisor.restart("looping")
        await watch.state("looping", ServiceState.RUNNING, starts=2)
        await supervisor.restart("looping")
        running = await watch.state("looping", ServiceState.RUNNING, starts=3)
        assert running.restarts == 0  # restarts by a caller are starts, not policy restarts
        assert [s.name for s in supervisor.statuses()] == ["looping"]
        with pytest.raises(UnknownServiceError, match="nothing"):
            supervisor.status("nothing")

    assert supervisor.status("looping").state is ServiceState.STOPPED  # close stopped it


async def test_a_stop_ignored_by_the_loop_is_bounded_by_stop_timeout_and_reported() -> None:
    release = asyncio.Event()
    ended = asyncio.Event()

    @service(stop_timeout=0.05)
    async def stubborn(context: Context) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await release.wait()  # ignores the stop until the test releases it
            raise
        finally:
            ended.set()

    async with Supervisor([stubborn]) as supervisor:
        watch = Watch(supervisor)
        await supervisor.start("stubborn")
        await watch.state("stubborn", ServiceState.RUNNING)
        loop = loop_task("stubborn")
        began = time.monotonic()
        status = await supervisor.stop("stubborn")
        assert time.monotonic() - began < WAIT
        assert not ended.is_set()
        assert status.state is ServiceState.STOPPED
        assert status.stop_timed_out
        assert status.history[0].exit_reason is ExitReason.STOPPED

        release.set()
        await asyncio.wait_for(ended.wait(), WAIT)
        await asyncio.wait({loop}, timeout=WAIT)  # it ends cancelled, leaving the state alone
        assert loop.done()
        assert supervisor.status("stubborn").state is ServiceState.STOPPED


async def test_stopping_while_restarting_cancels_the_pending_restart() -> None:
    gate = asyncio.Event()
    asked: list[float] = []

    async def gated_sleep(seconds: float) -> None:
        asked.append(seconds)
        await gate.wait()

    @service(restart_sec=5.0)
    async def crashes() -> None:
        raise RuntimeError("down")

    fake = FakeTime()
    async with Supervisor([crashes], clock=fake.clock, sleep=gated_sleep) as supervisor:
        watch = Watch(supervisor)
        await supervisor.start("crashes")
        waiting = await watch.state("crashes", ServiceState.RESTARTING)
        assert waiting.next_restart_at == 5.0
        assert asked == [5.0]

        status = await supervisor.stop("crashes")
        gate.set()  # had the restart not been cancelled, it would happen now
        for _ in range(5):
            await asyncio.sleep(0)
        assert status.state is ServiceState.STOPPED
        assert status.next_restart_at is None
        after = supervisor.status("crashes")
        assert (after.state, after.starts, after.restarts) == (ServiceState.STOPPED, 1, 0)


class SensorConfig(BaseModel):
    period: float = 1.0
    channel: str = "a"


async def test_an_invalid_config_names_the_field_and_nothing_starts() -> None:
    seen: list[SensorConfig] = []

    @service
    async def sensor(config: SensorConfig) -> None:
        seen.append(config)

    @service
    async def plain() -> None:
        return None

    async with Supervisor([sensor, plain]) as supervisor:
        watch = Watch(supervisor)
        with pytest.raises(InputValidationError, match="period") as caught:
            await supervisor.start("sensor", {"period": "soon"})
        assert "sensor" in str(caught.value)
        assert caught.value.errors[0].field == "period"
        status = supervisor.status("sensor")
        assert (status.state, status.starts) == (ServiceState.STOPPED, 0)
        with pytest.raises(InputValidationError, match="config"):
            await supervisor.start("plain", {"period": 1})
        assert watch.seen == []

        await supervisor.start("sensor", {"period": "0.5"})
        await watch.state("sensor", ServiceState.COMPLETED)
        await supervisor.restart("sensor")  # keeps the config
        await watch.state("sensor", ServiceState.COMPLETED, starts=2)
        await supervisor.restart("sensor", {"channel": "b"})
        await watch.state("sensor", ServiceState.COMPLETED, starts=3)

    assert seen == [
        SensorConfig(period=0.5),
        SensorConfig(period=0.5),
        SensorConfig(channel="b"),
    ]


async def test_a_sync_service_runs_in_a_thread_and_sees_the_stop() -> None:
    entered = threading.Event()
    saw: list[tuple[bool, bool]] = []
    threads: list[str] = []

    @service
    def blocking(context: Context) -> None:
        threads.append(threading.current_thread().name)
        entered.set()
        stopped = context.wait_cancelled(WAIT)
        saw.append((stopped, context.cancelled))

    @service
    def polling(context: Context) -> None:
        entered.set()
        while True:
            context.raise_if_cancelled()
            time.sleep(0.001)

    async with Supervisor([blocking, polling]) as supervisor:
        await supervisor.start("blocking")
        await in_thread_wait(entered)
        status = await supervisor.stop("blocking")
        assert saw == [(True, True)]
        assert not status.stop_timed_out
        assert status.history[0].exit_reason is ExitReason.STOPPED
        assert threads[0] != threading.current_thread().name

        entered.clear()
        await supervisor.start("polling")
        await in_thread_wait(entered)
        status = await supervisor.stop("polling")
        assert not status.stop_timed_out
        assert status.history[0].exit_reason is ExitReason.STOPPED
        # The RunCancelledError the loop raised is how it stopped, not a failure.
        assert status.history[0].error is None
        assert status.last_error is None


class PollConfig(BaseModel):
    device: str = "dev0"


class Poller(Service, restart_sec=0.5):
    """Polls a device."""

    events: ClassVar[list[str]] = []

    async def setup(self) -> None:
        self.events.append(f"setup {self.context.attempt}")

    async def run(self, config: PollConfig) -> None:
        self.events.append(f"run {config.device}")
        await self.context.sleep(3600)

    async def teardown(self) -> None:
        self.events.append("teardown")


async def test_class_form_runs_setup_run_and_teardown_on_stop() -> None:
    Poller.events.clear()
    async with Supervisor([Poller]) as supervisor:
        watch = Watch(supervisor)
        assert supervisor.names == ["poller"]
        await supervisor.start("poller", {"device": "dev7"})
        await watch.state("poller", ServiceState.RUNNING)
        await supervisor.stop("poller")

    assert Poller.events == ["setup 1", "run dev7", "teardown"]
    definition = supervisor.register(Poller)
    assert definition.options.restart_sec == 0.5
    assert definition.description == "Polls a device."


async def test_class_form_teardown_runs_after_a_failure_too() -> None:
    events: list[str] = []

    class Broken(Service, restart_on_exception=False):
        name = "broken"

        async def run(self) -> None:
            events.append("run")
            raise OSError("no device")

        async def teardown(self) -> None:
            events.append("teardown")

    async with Supervisor([Broken]) as supervisor:
        watch = Watch(supervisor)
        await supervisor.start("broken")
        status = await watch.state("broken", ServiceState.FAILED)

    assert events == ["run", "teardown"]
    assert status.last_error is not None
    assert status.last_error.type == "OSError"


@dataclasses.dataclass
class Counter:
    count: int = 0


async def test_config_state_and_context_are_injected_and_state_outlives_a_start() -> None:
    seen: list[tuple[str, int, str, int]] = []

    @service(name="counter")
    async def counting(config: SensorConfig, state: Counter, context: Context) -> None:
        state.count += 1
        seen.append((context.task, context.attempt, config.channel, state.count))

    async with Supervisor([counting]) as supervisor:
        watch = Watch(supervisor)
        await supervisor.start("counter", {"channel": "x"})
        await watch.state("counter", ServiceState.COMPLETED)
        await supervisor.start("counter")  # no config: the last one given is kept
        await watch.state("counter", ServiceState.COMPLETED, starts=2)

    assert seen == [("counter", 1, "x", 1), ("counter", 2, "x", 2)]


async def test_start_autostart_starts_only_autostart_services() -> None:
    auto = service(name="auto", autostart=True)(_forever)
    manual = service(name="manual")(_forever)
    async with Supervisor([auto, manual]) as supervisor:
        watch = Watch(supervisor)
        assert await supervisor.start_autostart() == ["auto"]
        await watch.state("auto", ServiceState.RUNNING)
        assert supervisor.status("manual").state is ServiceState.STOPPED
        assert await supervisor.start_autostart() == []  # already running


async def test_log_lines_are_kept_per_service_and_bounded() -> None:
    @service
    async def talker(context: Context) -> None:
        context.logger.info("read %s", 42)
        logging.getLogger("vendor.driver").warning("too hot")

    @service
    async def chatty(context: Context) -> None:
        for i in range(10):
            context.logger.debug("line %d", i)

    async with Supervisor([talker, chatty], log_limit=3) as supervisor:
        watch = Watch(supervisor)
        await supervisor.start("talker")
        await supervisor.start("chatty")
        await watch.state("talker", ServiceState.COMPLETED)
        await watch.state("chatty", ServiceState.COMPLETED)

        talked = [(line.level, line.message) for line in supervisor.logs("talker")]
        assert talked == [("INFO", "read 42"), ("WARNING", "too hot")]
        assert [line.message for line in supervisor.logs("chatty")] == [
            "line 7",
            "line 8",
            "line 9",
        ]
        assert {line.attempt for line in supervisor.logs("chatty")} == {1}
    logging.getLogger("vendor.driver").warning("outside any service")
    assert len(supervisor.logs("talker")) == 2


async def test_a_failing_listener_does_not_stop_the_service() -> None:
    def broken(status: ServiceStatus) -> None:
        raise RuntimeError("listener bug")

    @service
    async def fine() -> None:
        return None

    async with Supervisor([fine]) as supervisor:
        supervisor.add_listener(broken)
        watch = Watch(supervisor)
        await supervisor.start("fine")
        await watch.state("fine", ServiceState.COMPLETED)


async def test_registering_twice_is_harmless_but_two_services_cannot_share_a_name() -> None:
    async def elsewhere(context: Context) -> None:
        await context.sleep(3600)

    one = service(name="same")(_forever)
    other = service(name="same")(elsewhere)
    async with Supervisor([one]) as supervisor:
        supervisor.register(one)
        with pytest.raises(DuplicateTaskError, match="same"):
            supervisor.register(other)


# --- definition -----------------------------------------------------------------------------


def test_defaults_are_pydase_s() -> None:
    options = service(_forever).options
    assert options.autostart is False
    assert options.restart_on_exception is True
    assert options.restart_sec == 1.0
    assert options.start_limit_interval_sec is None
    assert options.start_limit_burst == 3
    assert options.exit_on_failure is False
    assert options.stop_timeout == 10.0


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"restart_secs": 1.0}, "unknown option 'restart_secs'; did you mean 'restart_sec'"),
        ({"autostart": 1}, "option 'autostart' expects True or False"),
        ({"start_limit_burst": "5"}, "option 'start_limit_burst' expects an integer"),
        ({"start_limit_burst": True}, "option 'start_limit_burst'"),
        ({"restart_sec": -1}, "option 'restart_sec' expects a number of seconds >= 0"),
        ({"start_limit_interval_sec": 0}, "option 'start_limit_interval_sec'"),
        ({"stop_timeout": "10"}, "option 'stop_timeout'"),
    ],
)
def test_bad_options_fail_at_definition_naming_service_and_option(
    options: dict[str, Any], match: str
) -> None:
    with pytest.raises(TaskDefinitionError, match=match) as caught:
        service(**options)(_forever)
    assert "service '_forever'" in str(caught.value)


def test_bad_class_options_fail_at_definition() -> None:
    with pytest.raises(TaskDefinitionError, match=r"service 'bad_poller'.*'burst'"):

        class BadPoller(Service, burst=3):
            async def run(self) -> None:
                return None


def test_a_service_takes_no_inputs() -> None:
    async def reads(channel: int, context: Context) -> None:
        return None

    with pytest.raises(TaskDefinitionError, match=r"service 'reads': parameter 'channel'"):
        service(reads)


def test_a_class_service_run_must_be_async() -> None:
    with pytest.raises(TaskDefinitionError, match="async def run"):

        class SyncRun(Service):
            def run(self) -> None:  # type: ignore[override]
                return None


def test_a_decorated_service_is_still_callable() -> None:
    @service
    def double(context: Context) -> str:
        return context.task

    assert double.name == "double"
    assert double(Context(run_id="r", task="t", attempt=1, timestamp=0, sink=None)) == "t"  # type: ignore[arg-type]
