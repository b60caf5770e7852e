"""Stages: what `Pipeline.stage()` records, and the ports it reads from a task.

Three kinds of task make stages:

- a `@taskloom.task` function: inputs are its parameters (less `state`, `config`,
  `timestamp`, `context`), outputs come from its return annotation (a tuple gives one
  output per item; `None` gives none: a sink);
- an async generator task: a source; it has no inputs and publishes what it yields;
- a `StreamStage` subclass: it declares its ports and gets the input streams itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ..policies import RestartPolicy
from ..tasks.definition import FunctionTask
from ..tasks.signature import Port, _strip_annotated, check_config_metadata
from .queues import Backpressure

if TYPE_CHECKING:
    from .runner import StageIO

__all__ = ["DEFAULT_IDLE_AFTER", "DEFAULT_RESTART", "StageSpec", "StreamStage"]

#: Stages restart at once after an error, without limit; each error is counted.
DEFAULT_RESTART = RestartPolicy(restart_sec=0.0)

#: Seconds a synchronized stage holds a message for an input that has nothing queued
#: before it counts that input as idle and goes on without it (`idle_after=`).
DEFAULT_IDLE_AFTER = 0.05


class StreamStage:
    """A stage written as a class: it gets its input streams and publishes at will.

    Declare the ports as class attributes (types, optionally `Annotated` with a metadata
    dict) and write `run`:

        class Every(taskloom.streams.StreamStage):
            inputs = {"value": int}
            outputs = {"kept": int}
            Config = EveryConfig           # optional: a class buildable with no arguments

            async def run(self, io):
                async for port, message in io:
                    if message.value % io.config.n == 0:
                        await io.publish("kept", message.value, timestamp=message.timestamp)

    `run` returning ends the stage (state `finished`); raising restarts it under the
    stage's restart policy.
    """

    inputs: ClassVar[Mapping[str, Any]] = {}
    outputs: ClassVar[Mapping[str, Any]] = {}
    Config: ClassVar[type[Any] | None] = None
    label: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        owner = f"stage class {cls.__qualname__!r}"
        for kind, ports in (("input", cls.inputs), ("output", cls.outputs)):
            for name, annotation in ports.items():
                check_config_metadata(owner, kind, _port(name, annotation), cls.Config)

    async def run(self, io: StageIO) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define `async def run(self, io)`")


@dataclass(kw_only=True)
class StageSpec:
    """One stage of a pipeline, as wired (checked by `Pipeline.check()`)."""

    name: str
    task: Any  # FunctionTask or a StreamStage subclass
    kind: str  # "function", "source" or "class"
    label: str
    inputs: dict[str, str]  # port -> topic
    outputs: dict[str, str]  # port -> topic
    input_ports: dict[str, Port]
    output_ports: dict[str, Port]
    config: Any = None
    config_type: type[Any] | None = None
    synchronized: bool = True
    idle_after: float | None = DEFAULT_IDLE_AFTER
    queue_size: int = 1000
    backpressure: Backpressure = Backpressure.BLOCK
    restart: RestartPolicy = DEFAULT_RESTART
    thread_safe: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def task_name(self) -> str:
        if isinstance(self.task, FunctionTask):
            return self.task.name
        return f"{self.task.__module__}.{self.task.__qualname__}"


def ports_of(task: Any) -> tuple[str, dict[str, Port], dict[str, Port], type[Any] | None]:
    """(kind, input ports, output ports, config type) of a task that can be a stage."""
    if isinstance(task, type) and issubclass(task, StreamStage):
        inputs = {name: _port(name, ann) for name, ann in task.inputs.items()}
        outputs = {name: _port(name, ann) for name, ann in task.outputs.items()}
        return "class", inputs, outputs, task.Config
    if not isinstance(task, FunctionTask):
        raise TypeError(
            f"a stage needs a @taskloom.task function or a StreamStage subclass, got {task!r}"
        )
    config_type = task.specials.config
    if task.is_async_generator:  # its output ports are those of the items it yields
        return "source", dict(task.inputs), dict(task.outputs), config_type
    return "function", dict(task.inputs), dict(task.outputs), config_type


def _port(name: str, annotation: Any) -> Port:
    base, metadata = _strip_annotated(annotation)
    return Port(name, base, None, metadata)


def wire_outputs(
    ports: Mapping[str, Port], outputs: Sequence[str] | Mapping[str, str] | str | None
) -> tuple[dict[str, str], list[str]]:
    """Topics for output ports, from a list (in port order), a mapping or one topic."""
    if outputs is None:
        return {}, []
    if isinstance(outputs, str):
        outputs = [outputs]
    if isinstance(outputs, Mapping):
        unknown = [p for p in outputs if p not in ports]
        problems = [
            f"output {p!r} does not exist (outputs: {', '.join(ports) or 'none'})" for p in unknown
        ]
        return {p: t for p, t in outputs.items() if p in ports}, problems
    topics = list(outputs)
    if topics and len(topics) != len(ports):
        return {}, [
            f"{len(topics)} output topic(s) given for {len(ports)} output(s) "
            f"({', '.join(ports) or 'none: its return annotation is None'})"
        ]
    return dict(zip(ports, topics, strict=False)), []
