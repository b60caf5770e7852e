"""Services kept in the store: a new supervisor on the same database counts on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest
from pydantic import BaseModel

from support import until
from taskloom import Context, Engine, EngineClosedError, InputValidationError
from taskloom.exceptions import DuplicateTaskError
from taskloom.services import (
    ExitReason,
    ServiceError,
    ServiceState,
    ServiceStatus,
    Supervisor,
    service,
)
from taskloom.services.supervisor import UNKNOWN_GRACE
from taskloom.store import MemoryStore, ServiceRecord, ServiceStartRecord, Store, open_store


class FakeTime:
    """A clock that only moves when the supervisor sleeps: restarts happen at once, exactly."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


class Stores:
    """Opens new store objects on one database, and closes them all at the end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._open: list[Store] = []

    def open(self) -> Store:
        store = open_store(self.url)
        self._open.append(store)
        return store

    def close_all(self) -> None:
        for store in reversed(self._open):
            store.close()


@pytest.fixture
def stores(database_url: str) -> Iterator[Stores]:
    found = Stores(database_url)
    try:
        yield found
    finally:
        found.close_all()


async def wait_for(supervisor: Supervisor, name: str, state: ServiceState) -> ServiceStatus:
    async def reached() -> bool:
        return supervisor.status(name).state is state

    await until(reached)
    return supervisor.status(name)


@service(restart_sec=1, start_limit_interval_sec=10, start_limit_burst=2)
async def crashes() -> None:
    raise RuntimeError("sensor unplugged")


class Period(BaseModel):
    period: float = 1.0
    label: str = "sensor"


seen_configs: list[Period] = []


@service
async def polls(config: Period, context: Context) -> None:
    seen_configs.append(config)
    await context.sleep(3600)


async def test_a_failed_service_is_taken_up_where_it_was_left(stores: Stores) -> None:
    fake = FakeTime()
    async with Supervisor(
        [crashes], clock=fake.clock, sleep=fake.sleep, store=stores.open()
    ) as supervisor:
        await supervisor.start("crashes")
        before = await wait_for(supervisor, "crashes", ServiceState.FAILED)
    assert (before.starts, before.restarts, before.restart_times) == (3, 2, (1.0, 2.0))

    later = FakeTime(100.0)
    async with Supervisor(
        [crashes], clock=later.clock, sleep=later.sleep, store=stores.open()
    ) as supervisor:
        after = supervisor.status("crashes")
        assert after.state is ServiceState.FAILED
        assert after.since == before.since == 2.0
        assert (after.starts, after.restarts, after.restart_times) == (3, 2, (1.0, 2.0))
        assert after.last_error == before.last_error
        assert after.last_error is not None
        assert after.last_error.message == "sensor unplugged"
        assert "raise RuntimeError" in (after.last_error.traceback or "")
        assert after.history == before.history
        assert [s.exit_reason for s in after.history] == [ExitReason.FAILED] * 3
        assert [s.restart for s in after.history] == [False, True, True]

        # Started again, it counts on from the saved numbers.
        await supervisor.start("crashes")
        again = await wait_for(supervisor, "crashes", ServiceState.FAILED)
    assert (again.starts, again.restarts, again.restart_times) == (6, 4, (101.0, 102.0))
    assert [s.number for s in again.history] == [1, 2, 3, 4, 5, 6]

    third = Supervisor([crashes], store=stores.open())
    try:
        assert third.status("crashes").history == again.history
        assert third.status("crashes").starts == 6
    finally:
        await third.close()


async def test_a_running_service_is_stopped_after_reload_and_keeps_its_config(
    stores: Stores,
) -> None:
    seen_configs.clear()
    async with Supervisor([polls], store=stores.open()) as supervisor:
        await supervisor.start("polls", {"period": 0.5, "label": "attic"})
        await wait_for(supervisor, "polls", ServiceState.RUNNING)
    saved = stores.open().get_service("polls")
    assert saved is not None
    assert (saved.state, saved.config) == ("stopped", {"period": 0.5, "label": "attic"})

    async with Supervisor([polls], store=stores.open()) as supervisor:
        status = supervisor.status("polls")
        assert status.state is ServiceState.STOPPED
        assert status.starts == 1
        assert [s.exit_reason for s in status.history] == [ExitReason.STOPPED]
        await supervisor.restart("polls")  # no config given: the saved one is used
        running = await wait_for(supervisor, "polls", ServiceState.RUNNING)
        assert running.starts == 2
    assert seen_configs == [Period(period=0.5, label="attic")] * 2


async def test_a_start_without_a_config_after_a_stop_keeps_the_last_config(
    stores: Stores,
) -> None:
    seen_configs.clear()
    async with Supervisor([polls], store=stores.open()) as supervisor:
        await supervisor.start("polls", {"period": 0.5, "label": "attic"})
        await wait_for(supervisor, "polls", ServiceState.RUNNING)
        await supervisor.stop("polls")
        await supervisor.start("polls")  # no config: the last one given, not the defaults
        await wait_for(supervisor, "polls", ServiceState.RUNNING)
        await supervisor.stop("polls")
    # A new process on the same database starts it with that config too.
    async with Supervisor([polls], store=stores.open()) as supervisor:
        await supervisor.start("polls")
        assert (await wait_for(supervisor, "polls", ServiceState.RUNNING)).starts == 3
    assert seen_configs == [Period(period=0.5, label="attic")] * 3


async def test_a_first_start_without_a_config_uses_the_defaults_and_keeps_them(
    stores: Stores,
) -> None:
    seen_configs.clear()
    async with Supervisor([polls], store=stores.open()) as supervisor:
        await supervisor.start("polls")
        await wait_for(supervisor, "polls", ServiceState.RUNNING)
    saved = stores.open().get_service("polls")
    assert saved is not None
    assert saved.config == {"period": 1.0, "label": "sensor"}
    assert seen_configs == [Period()]


@service(autostart=True)
async def polls_at_start(config: Period, context: Context) -> None:
    seen_configs.append(config)
    await context.sleep(3600)


async def test_autostart_after_a_restart_of_the_process_keeps_the_last_config(
    stores: Stores,
) -> None:
    seen_configs.clear()
    async with Supervisor([polls_at_start], store=stores.open()) as supervisor:
        assert await supervisor.start_autostart() == ["polls_at_start"]
        await wait_for(supervisor, "polls_at_start", ServiceState.RUNNING)
        await supervisor.restart("polls_at_start", {"period": 2.0, "label": "cellar"})
        await wait_for(supervisor, "polls_at_start", ServiceState.RUNNING)
    async with Supervisor([polls_at_start], store=stores.open()) as supervisor:
        assert await supervisor.start_autostart() == ["polls_at_start"]
        await wait_for(supervisor, "polls_at_start", ServiceState.RUNNING)
    assert seen_configs == [
        Period(),
        Period(period=2.0, label="cellar"),
        Period(period=2.0, label="cellar"),
    ]


async def test_a_service_whose_process_died_while_running_is_stopped_and_its_start_lost(
    stores: Stores,
) -> None:
    seen_configs.clear()
    first = Supervisor([polls], store=stores.open())
    try:
        await first.start("polls", {"period": 1.0})
        started = await wait_for(first, "polls", ServiceState.RUNNING)
        reader = stores.open()

        async def saved_running() -> bool:
            record = await asyncio.to_thread(reader.get_service, "polls")
            return record is not None and record.state == "running"

        await until(saved_running)

        # The first supervisor's process is gone as far as a new one can tell.
        async with Supervisor([polls], store=stores.open()) as second:
            status = second.status("polls")
            assert status.state is ServiceState.STOPPED
            assert status.starts == 1
            (lost,) = status.history
            assert lost.exit_reason is ExitReason.LOST
            assert lost.ended_at is not None
            assert lost.started_at == started.history[0].started_at <= lost.ended_at
        kept = reader.get_service_starts("polls")
        assert [s.exit_reason for s in kept] == ["lost"]
    finally:
        await first.close()


async def test_a_store_with_an_active_record_and_no_starts_loads_as_stopped() -> None:
    store = MemoryStore()
    store.save_service(
        ServiceRecord(name="crashes", state="restarting", since=5.0, starts=2, restarts=1)
    )
    store.save_service_start("crashes", ServiceStartRecord(number=2, started_at=4.0))
    fake = FakeTime(50.0)
    async with Supervisor([crashes], clock=fake.clock, sleep=fake.sleep, store=store) as sup:
        status = sup.status("crashes")
        assert (status.state, status.since, status.starts) == (ServiceState.STOPPED, 50.0, 2)
        assert [(s.number, s.exit_reason) for s in status.history] == [(2, ExitReason.LOST)]
    saved = store.get_service("crashes")
    assert saved is not None
    assert saved.state == "stopped"


# requests from other processes, and stored log lines ---------------------------------------
@service
async def talks(context: Context) -> None:
    context.logger.info("hello")
    context.logger.warning("careful")
    await context.sleep(3600)


async def test_requests_are_performed_and_their_outcome_recorded(stores: Stores) -> None:
    store, other = stores.open(), stores.open()  # `other` plays the CLI's process
    async with Supervisor([polls, talks], store=store) as supervisor:
        await supervisor.flush()  # registering saves each service, in the background
        assert {r.name: r.state for r in other.list_services()} == {
            "polls": "stopped",
            "talks": "stopped",
        }
        start = other.add_service_request("polls", "start", {"period": 0.5})
        invalid = other.add_service_request("talks", "start", {"period": 1})
        # A service nobody runs: answered once the serving process that might run it had
        # its time; a request as fresh is left for it.
        asked_long_ago = time.time() - UNKNOWN_GRACE - 1
        unknown = other.add_service_request("nobody", "stop", requested_at=asked_long_ago)
        fresh = other.add_service_request("elsewhere", "stop")
        odd = other.add_service_request("polls", "explode")
        assert await supervisor.handle_requests() == 4
        assert await supervisor.handle_requests() == 0
        assert [r.id for r in other.pending_service_requests()] == [fresh]
        assert other.cancel_service_request(fresh)

        done = other.get_service_request(start)
        assert done is not None
        assert done.handled_at is not None
        assert done.outcome["ok"] is True
        assert done.outcome["status"]["state"] == "running"
        assert done.outcome["status"]["starts"] == 1
        record = other.get_service("polls")  # saved before the outcome
        assert record is not None
        assert record.state == "running"
        assert record.config == {"period": 0.5, "label": "sensor"}

        failed = other.get_service_request(invalid)
        assert failed is not None
        assert failed.outcome == {
            "ok": False,
            "error": {
                "type": "InputValidationError",
                "message": "task 'talks': config 'config': this service takes no config",
                "errors": [{"field": "config", "message": "this service takes no config"}],
            },
        }
        assert supervisor.status("talks").state is ServiceState.STOPPED
        missing = other.get_service_request(unknown)
        assert missing is not None
        assert missing.outcome["error"]["type"] == "UnknownServiceError"
        strange = other.get_service_request(odd)
        assert strange is not None
        assert "unknown action" in strange.outcome["error"]["message"]

        other.add_service_request("polls", "restart", {"period": "soon"})
        await supervisor.handle_requests()
        assert supervisor.status("polls").starts == 1  # an invalid config stops nothing

        other.add_service_request("polls", "stop")
        await supervisor.handle_requests()
        assert supervisor.status("polls").state is ServiceState.STOPPED


async def test_log_lines_of_services_are_saved_in_order(stores: Stores) -> None:
    store, other = stores.open(), stores.open()
    async with Supervisor([talks], store=store) as supervisor:

        def logged(count: int) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                await supervisor.flush()
                return len(other.get_service_logs("talks")) == count

            return check

        await supervisor.start("talks")
        await until(logged(2))
        await supervisor.restart("talks")
        await until(logged(4))
    lines = other.get_service_logs("talks")
    assert [(g.start_number, g.level, g.message) for g in lines] == [
        (1, "INFO", "hello"),
        (1, "WARNING", "careful"),
        (2, "INFO", "hello"),
        (2, "WARNING", "careful"),
    ]


async def test_handling_requests_needs_a_store() -> None:
    async with Supervisor([talks]) as supervisor:
        with pytest.raises(ServiceError, match="no store"):
            await supervisor.handle_requests()


async def test_memory_store_takes_requests_too() -> None:
    store = MemoryStore()
    async with Supervisor([talks], store=store) as supervisor:
        request = store.add_service_request("talks", "start")
        await supervisor.handle_requests()
        handled = store.get_service_request(request)
        assert handled is not None
        assert handled.outcome["status"]["state"] == "running"


@service(stop_timeout=0.1)
async def ignores_stops() -> None:
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        await asyncio.sleep(0.5)  # ignores the stop for a while, then ends
        raise


async def test_the_engine_starts_stops_restarts_and_reports_its_services(
    stores: Stores,
) -> None:
    seen_configs.clear()
    async with Engine(stores.url, services=[polls, ignores_stops, crashes]) as engine:
        with pytest.raises(InputValidationError) as caught:
            await engine.start_service("polls", {"period": "soon"})
        assert caught.value.task == "polls"
        assert [e.field for e in caught.value.errors] == ["period"]
        assert engine.service_status("polls").state is ServiceState.STOPPED
        assert engine.service_status("polls").starts == 0

        await engine.start_service("polls", {"period": 0.5})
        await until(lambda: _state_is(engine, "polls", ServiceState.RUNNING))
        await engine.restart_service("polls", {"label": "b"})
        await until(lambda: _state_is(engine, "polls", ServiceState.RUNNING))
        stopped = await engine.stop_service("polls")
        assert (stopped.state, stopped.starts, stopped.stop_timed_out) == (
            ServiceState.STOPPED,
            2,
            False,
        )
        assert seen_configs == [Period(period=0.5), Period(label="b")]

        await engine.start_service("ignores_stops")
        await until(lambda: _state_is(engine, "ignores_stops", ServiceState.RUNNING))
        given_up = await engine.stop_service("ignores_stops")
        assert (given_up.state, given_up.stop_timed_out) == (ServiceState.STOPPED, True)

        await engine.start_service("crashes")
        assert {s.name for s in engine.service_statuses()} == {"polls", "ignores_stops", "crashes"}
    # Closing the engine stopped what was still started, and the store has it all.
    with pytest.raises(EngineClosedError):
        engine.service_status("polls")
    store = stores.open()
    records = {r.name: r for r in store.list_services()}
    assert records["polls"].state == "stopped"
    assert records["polls"].starts == 2
    assert records["polls"].config == {"period": 1.0, "label": "b"}
    assert records["ignores_stops"].stop_timed_out
    assert records["crashes"].state in {"stopped", "failed"}
    assert records["crashes"].starts >= 1


async def _state_is(engine: Engine, name: str, state: ServiceState) -> bool:
    return engine.service_status(name).state is state


def test_an_engine_refuses_two_different_services_of_one_name() -> None:
    other = service(name="polls")(crashes.fn)
    with pytest.raises(DuplicateTaskError, match="two different services are named 'polls'"):
        Engine(services=[polls, other])
    Engine(services=[polls, polls])  # the same one twice is harmless
