"""Service classes as pydase writes them: typed public attributes and several `@loop`
methods sharing one instance; attributes read and set while the loops run."""

from __future__ import annotations

import asyncio
import enum
import math
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, Field

import taskloom
from support import WAIT, load_helper
from taskloom import AttributeValidationError, TaskDefinitionError
from taskloom.services import (
    AttributeChange,
    Service,
    ServiceError,
    ServiceState,
    ServiceStatus,
    Supervisor,
    UnknownServiceError,
    definitions_of,
)
from taskloom.store import MemoryStore

# pydase's guide, its code as written with the import and the base class changed.
guide = load_helper("pydase_guide")
SensorService: Any = guide.module_of("sensor", guide.SENSOR_SERVICE).SensorService
advanced = guide.module_of("advanced", guide.ADVANCED_TASK_SERVICE)
AdvancedTaskService: Any = advanced.AdvancedTaskService


class FakeTime:
    """A clock that only moves when the supervisor sleeps: restarts happen at once."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


async def reached(
    supervisor: Supervisor, name: str, holds: Any, timeout: float = WAIT
) -> ServiceStatus:
    """Wait for a status of `name` for which `holds(status)` is true (told by a listener)."""
    future: asyncio.Future[ServiceStatus] = asyncio.get_running_loop().create_future()

    def listen(status: ServiceStatus) -> None:
        if status.name == name and holds(status) and not future.done():
            future.set_result(status)

    supervisor.add_listener(listen)
    try:
        now = supervisor.status(name)
        if holds(now):
            return now
        return await asyncio.wait_for(future, timeout)
    finally:
        supervisor.remove_listener(listen)


async def test_the_guide_sensor_service_runs_with_its_attribute_live() -> None:
    async with Supervisor([SensorService], store=MemoryStore()) as supervisor:
        assert supervisor.names == ["SensorService.read_sensor_data"]
        assert supervisor.instance_names == ["SensorService"]
        assert await supervisor.start_autostart() == ["SensorService.read_sensor_data"]
        await reached(
            supervisor, "SensorService.read_sensor_data", lambda s: s.state == ServiceState.RUNNING
        )
        attributes = supervisor.attributes("SensorService")
        assert attributes.values == {"readout_frequency": 1.0}
        assert attributes.schema["properties"]["readout_frequency"]["type"] == "number"
        assert attributes.loops == ("SensorService.read_sensor_data",)
        assert attributes.updated == {}
        changed = await supervisor.set_attributes(
            "SensorService", {"readout_frequency": 2}, by="test"
        )
        assert changed.values == {"readout_frequency": 2.0}
        assert changed.updated["readout_frequency"]["by"] == "test"
        instance = supervisor.instance("SensorService")
        assert isinstance(instance, SensorService)
        assert instance.readout_frequency == 2.0  # what the loop reads at its next sleep


async def test_the_guide_advanced_task_service_restarts_under_its_own_options() -> None:
    fake = FakeTime()
    async with Supervisor([AdvancedTaskService], clock=fake.clock, sleep=fake.sleep) as supervisor:
        name = "AdvancedTaskService.critical_task"
        assert supervisor.definition(name).options.restart_sec == 2.0
        await supervisor.start_autostart()
        status = await reached(supervisor, name, lambda s: s.restarts >= 6)
        # pydase's example restarts for ever: burst x restart_sec equals the interval.
        assert list(status.restart_times[:6]) == [2.0, 4.0, 6.0, 8.0, 10.0, 12.0]
        assert status.last_error is not None
        assert status.last_error.message == "Critical failure"
        assert supervisor.exit_code is None


class Counter(Service):
    """Two loops on one instance: one counts, the other reports what it sees."""

    step: int = 1
    total: int = 0

    def __init__(self) -> None:
        self.ticks: asyncio.Queue[None] = asyncio.Queue()
        self.reports: asyncio.Queue[tuple[int, int]] = asyncio.Queue()

    @taskloom.loop(autostart=True)
    async def count(self) -> None:
        while True:
            await self.ticks.get()
            self.total = self.total + self.step

    @taskloom.loop(autostart=True, restart_sec=0.0)
    async def report(self, context: taskloom.Context) -> None:
        seen = -1
        while not context.cancelled:
            if self.total != seen:
                seen = self.total
                await self.reports.put((id(self), seen))
            await asyncio.sleep(0.001)


async def test_two_loops_share_self_and_an_attribute() -> None:
    changes: list[AttributeChange] = []
    async with Supervisor([Counter]) as supervisor:
        supervisor.add_attribute_listener(changes.append)
        assert supervisor.names == ["Counter.count", "Counter.report"]
        await supervisor.start_autostart()
        instance = supervisor.instance("Counter")
        assert isinstance(instance, Counter)
        assert await asyncio.wait_for(instance.reports.get(), WAIT) == (id(instance), 0)
        instance.ticks.put_nowait(None)
        assert await asyncio.wait_for(instance.reports.get(), WAIT) == (id(instance), 1)
        await supervisor.set_attributes("Counter", {"step": 10}, by="test")
        instance.ticks.put_nowait(None)
        assert await asyncio.wait_for(instance.reports.get(), WAIT) == (id(instance), 11)
    # The counting loop's own assignments are told as the class's own changes.
    assert [(c.values, c.changed_by) for c in changes] == [
        ({"total": 1}, "service"),
        ({"step": 10}, "test"),
        ({"total": 11}, "service"),
    ]


class Threaded(Service):
    """A plain loop runs in a thread of its own; its assignments are live all the same."""

    count: int = 0

    @taskloom.loop
    def tick(self, context: taskloom.Context) -> None:
        while not context.wait_cancelled(0.001):
            if self.count < 3:
                self.count += 1


async def test_a_loop_in_a_thread_sets_attributes_told_on_the_event_loop() -> None:
    loop = asyncio.get_running_loop()
    told: asyncio.Queue[tuple[dict[str, Any], bool]] = asyncio.Queue()
    store = MemoryStore()

    def listen(change: AttributeChange) -> None:
        # Called on the event loop's thread, whichever thread made the change.
        told.put_nowait((change.values, asyncio.get_running_loop() is loop))

    async with Supervisor([Threaded], store=store) as supervisor:
        supervisor.add_attribute_listener(listen)
        await supervisor.start("Threaded.tick")
        seen = [await asyncio.wait_for(told.get(), WAIT) for _ in range(3)]
        assert seen == [({"count": 1}, True), ({"count": 2}, True), ({"count": 3}, True)]
        await supervisor.flush()
        [record] = store.get_service_attributes("Threaded")
        assert (record.value, record.updated_by) == (3, "service")


class Mode(enum.Enum):
    SLOW = "slow"
    FAST = "fast"


class Device:
    """Not a value pydantic can check: a plain attribute, not a live one."""


class Tuned(Service):
    """Attributes of every kind."""

    rate: float = 1.0
    gain: Annotated[int, Field(ge=0)] = 2
    limit: float = Field(5.0, gt=0, description="The highest reading kept.")
    mode: Mode = Mode.SLOW
    name = "tuned"  # the service class's name, not an attribute

    def __init__(self) -> None:
        self.label = "a"
        self.ports = [1, 2]
        self.note = None
        self.device = Device()
        self._secret = 1

    @property
    def doubled(self) -> float:
        return self.rate * 2

    @taskloom.loop(restart_sec=0.5, stop_timeout=2.0)
    async def poll(self) -> None:
        await asyncio.Event().wait()

    @taskloom.loop
    def sync_poll(self, context: taskloom.Context) -> None:
        context.wait_cancelled(WAIT)


def test_loops_are_services_named_after_the_class_each_with_its_options() -> None:
    poll, sync_poll = definitions_of(Tuned)
    assert (poll.name, sync_poll.name) == ("tuned.poll", "tuned.sync_poll")
    assert (poll.options.restart_sec, poll.options.stop_timeout) == (0.5, 2.0)
    assert (sync_poll.options.restart_sec, sync_poll.is_async) == (1.0, False)
    assert poll.description is None
    assert sync_poll.specials.context == "context"


async def test_attributes_come_from_annotations_fields_and_init() -> None:
    async with Supervisor([Tuned]) as supervisor:
        attributes = supervisor.attributes("tuned")
        assert attributes.values == {
            "rate": 1.0,
            "gain": 2,
            "limit": 5.0,
            "mode": "slow",
            "label": "a",
            "ports": [1, 2],
            "note": None,
        }
        properties = attributes.schema["properties"]
        assert properties["limit"]["description"] == "The highest reading kept."
        assert properties["limit"]["exclusiveMinimum"] == 0
        assert properties["gain"]["minimum"] == 0
        assert attributes.schema["additionalProperties"] is False
        instance = supervisor.instance("tuned")
        assert isinstance(instance, Tuned)
        assert instance.limit == 5.0  # the Field's default, held by the instance
        changed = await supervisor.set_attributes(
            "tuned", {"mode": "fast", "ports": [3], "note": {"any": "json"}}
        )
        assert instance.mode is Mode.FAST
        assert instance.ports == [3]
        assert vars(instance)["note"] == {"any": "json"}
        assert changed.updated["mode"]["by"] == "python"


async def test_an_invalid_change_names_each_attribute_and_sets_none() -> None:
    async with Supervisor([Tuned]) as supervisor:
        with pytest.raises(AttributeValidationError) as caught:
            await supervisor.set_attributes(
                "tuned", {"rate": 3.0, "gain": -1, "limit": "high", "speed": 1}
            )
        error = caught.value
        assert error.service == "tuned"
        assert [e.field for e in error.errors] == ["gain", "limit", "speed"]
        assert str(error).splitlines() == [
            "service 'tuned': attribute 'gain': input should be greater than or equal to 0, got -1",
            "service 'tuned': attribute 'limit': expected a number, got 'high'",
            "service 'tuned': attribute 'speed': unknown attribute; attributes: rate, gain, "
            "limit, mode, label, ports, note",
        ]
        assert supervisor.attributes("tuned").values["rate"] == 1.0  # not set either
        with pytest.raises(AttributeValidationError, match="'rate': expected a value JSON"):
            await supervisor.set_attributes("tuned", {"rate": math.nan})
        with pytest.raises(AttributeValidationError, match="'mode': expected 'slow' or 'fast'"):
            await supervisor.set_attributes("tuned", {"mode": "medium"})


class Reader(Service):
    """A loop that reads its attribute at each turn, when the test lets it."""

    rate: float = 1.0
    reading: float = 0.0

    def __init__(self) -> None:
        self.turns: asyncio.Queue[None] = asyncio.Queue()
        self.seen: asyncio.Queue[float] = asyncio.Queue()

    @taskloom.loop(restart_on_exception=False)
    async def read(self) -> None:
        while True:
            await self.turns.get()
            await self.seen.put(self.rate)
            self.reading = self.rate * 10
            if self.rate < 0:
                self.reading = "broken"  # type: ignore[assignment]  # refused: not a float


async def test_the_loop_sees_a_new_value_at_its_next_read_and_its_own_bad_value_fails_it() -> None:
    changes: list[AttributeChange] = []
    async with Supervisor([Reader]) as supervisor:
        supervisor.add_attribute_listener(changes.append)
        await supervisor.start("Reader.read")
        instance = supervisor.instance("Reader")
        assert isinstance(instance, Reader)
        instance.turns.put_nowait(None)
        assert await asyncio.wait_for(instance.seen.get(), WAIT) == 1.0
        await supervisor.set_attributes("Reader", {"rate": 4.0}, by="test")
        instance.turns.put_nowait(None)
        assert await asyncio.wait_for(instance.seen.get(), WAIT) == 4.0
        await supervisor.set_attributes("Reader", {"rate": -1.0}, by="test")
        instance.turns.put_nowait(None)
        failed = await reached(supervisor, "Reader.read", lambda s: s.state == ServiceState.FAILED)
        assert failed.last_error is not None
        assert failed.last_error.type == "AttributeValidationError"
        assert "attribute 'reading': expected a number, got 'broken'" in failed.last_error.message
        assert instance.reading == -10.0  # the refused value was not set
        await asyncio.sleep(0)  # the listeners are told on the loop
    assert ({"reading": 40.0}, "service") in [(c.values, c.changed_by) for c in changes]


async def test_values_set_survive_a_new_supervisor_on_the_store() -> None:
    store = MemoryStore()
    async with Supervisor([Reader], store=store) as supervisor:
        await supervisor.set_attributes("Reader", {"rate": 7.5}, by="cli:alice")
    async with Supervisor([Reader], store=store) as again:
        attributes = again.attributes("Reader")
        assert attributes.values == {"rate": 7.5, "reading": 0.0}
        assert attributes.updated["rate"]["by"] == "cli:alice"
        instance = again.instance("Reader")
        assert isinstance(instance, Reader)
        assert instance.rate == 7.5
    [change] = store.get_service_attribute_changes("Reader")
    assert (change.name, change.value, change.changed_by) == ("rate", 7.5, "cli:alice")


async def test_a_set_request_reads_command_line_text_by_each_attribute_type() -> None:
    store = MemoryStore()
    async with Supervisor([Tuned], store=store) as supervisor:
        asked = store.add_service_request(
            "tuned",
            "set",
            {"texts": {"rate": "2.5", "label": "7"}, "values": {"ports": [9]}},
            requested_by="cli:alice",
        )
        bad = store.add_service_request(
            "tuned", "set", {"texts": {"gain": "lots"}}, requested_by="cli:bob"
        )
        assert await supervisor.handle_requests() == 2
        ok = store.get_service_request(asked)
        assert ok is not None
        assert ok.outcome["ok"] is True
        assert ok.outcome["attributes"]["values"]["rate"] == 2.5
        assert ok.outcome["attributes"]["values"]["label"] == "7"  # text stays text
        refused = store.get_service_request(bad)
        assert refused is not None
        assert refused.outcome["ok"] is False
        assert refused.outcome["error"]["type"] == "AttributeValidationError"
        assert refused.outcome["error"]["errors"][0]["field"] == "gain"
    by = {c.name: c.changed_by for c in store.get_service_attribute_changes("tuned")}
    assert by == {"rate": "cli:alice", "label": "cli:alice", "ports": "cli:alice"}


async def test_attributes_are_asked_of_the_class_not_of_a_loop() -> None:
    async with Supervisor([Tuned]) as supervisor:
        with pytest.raises(UnknownServiceError, match="attributes belong to the class: 'tuned'"):
            supervisor.attributes("tuned.poll")
        with pytest.raises(UnknownServiceError, match="unknown service class 'nope'"):
            await supervisor.set_attributes("nope", {"rate": 1})


def test_a_plain_run_service_keeps_its_form() -> None:
    class Poller(Service, restart_sec=0.5):
        async def run(self) -> None:
            await asyncio.sleep(0)

    class Base(Service):
        """Neither `run` nor loops: a base for other services."""

    [definition] = definitions_of(Poller)
    assert (definition.name, definition.options.restart_sec) == ("poller", 0.5)
    assert Base._taskloom_definition is None
    assert Base._taskloom_class is None


class TickConfig(BaseModel):
    n: int = 1


def test_mistakes_in_a_service_class_fail_at_definition() -> None:
    with pytest.raises(TaskDefinitionError, match="defines `run` and loops"):

        class Both(Service):
            async def run(self) -> None: ...

            @taskloom.loop
            async def tick(self) -> None: ...

    with pytest.raises(TaskDefinitionError, match="options go on each @loop"):

        class Optioned(Service, restart_sec=1.0):
            @taskloom.loop
            async def tick(self) -> None: ...

    with pytest.raises(TaskDefinitionError, match="takes no `config` or `state`"):

        class Configured(Service):
            @taskloom.loop
            async def tick(self, config: TickConfig) -> None: ...

    with pytest.raises(TaskDefinitionError, match=r"unknown option 'autostrat'.*'autostart'"):

        @taskloom.loop(autostrat=True)
        async def typo(self: object) -> None: ...

    with pytest.raises(TaskDefinitionError, match="`name` is not an option of @loop"):

        @taskloom.loop(name="other")
        async def tick(self: object) -> None: ...


async def test_mistakes_found_when_the_class_is_registered() -> None:
    class NoDefault(Service):
        rate: float

        @taskloom.loop
        async def tick(self) -> None: ...

    class BadDefault(Service):
        rate: float = "fast"  # type: ignore[assignment]

        @taskloom.loop
        async def tick(self) -> None: ...

    class NeedsArguments(Service):
        def __init__(self, port: int) -> None:
            self.port = port

        @taskloom.loop
        async def tick(self) -> None: ...

    supervisor = Supervisor()
    with pytest.raises(TaskDefinitionError, match="attribute 'rate' has no default"):
        supervisor.register(NoDefault)
    with pytest.raises(TaskDefinitionError, match="attribute 'rate': expected a number"):
        supervisor.register(BadDefault)
    with pytest.raises(ServiceError, match="'NeedsArguments' could not be made: TypeError"):
        supervisor.register(NeedsArguments)
    await supervisor.close()
