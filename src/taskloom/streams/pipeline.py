"""`Pipeline`: a graph of stages wired by topics, built in Python or read from YAML."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter

from ..documents import DocumentLimitError, load_yaml
from ..exceptions import InputValidationError, TaskDefinitionError
from ..loading import load_module
from ..policies import RestartPolicy
from ..tasks.definition import FunctionTask
from ..tasks.signature import dump_special, validate_special
from .errors import StageConfigError, WiringError
from .queues import Backpressure
from .stages import DEFAULT_IDLE_AFTER, DEFAULT_RESTART, StageSpec, ports_of, wire_outputs
from .wiring import NAME, TOPIC_NAME, check_stages, type_name

__all__ = ["STAGE_KEYS", "Pipeline"]

#: The keys a stage of a pipeline in its data form may have.
STAGE_KEYS = frozenset(
    {
        "task",
        "name",
        "label",
        "inputs",
        "outputs",
        "config",
        "synchronized",
        "idle_after",
        "queue_size",
        "backpressure",
        "thread_safe",
    }
)


class Pipeline:
    """Stages wired by topics; deploy it with `await engine.deploy(pipeline)`.

    p = taskloom.Pipeline("demo")
    p.stage(adder, inputs={"a": "numbers.a", "b": "numbers.b"}, outputs=["sums"])
    p.stage(printer, inputs={"value": "sums"})
    """

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not NAME.match(name):
            raise WiringError(str(name), ["a pipeline name uses letters, digits, '_' and '-' only"])
        self.name = name
        self.stages: list[StageSpec] = []
        #: Topics kept in a JetStream stream on NATS (`keep()`), and for how long.
        self.kept_topics: list[str] = []
        self.keep_max_age: float | None = None

    def __repr__(self) -> str:
        return f"<Pipeline {self.name!r} stages={[s.name for s in self.stages]}>"

    def stage(
        self,
        task: Any,
        *,
        inputs: Mapping[str, str] | None = None,
        outputs: Sequence[str] | Mapping[str, str] | str | None = None,
        config: Any = None,
        name: str | None = None,
        label: str | None = None,
        synchronized: bool = True,
        idle_after: float | None = DEFAULT_IDLE_AFTER,
        queue_size: int = 1000,
        backpressure: Backpressure | str = Backpressure.BLOCK,
        restart: RestartPolicy | None = None,
        thread_safe: bool | None = None,
    ) -> StageSpec:
        """Add a stage; the wiring is checked as a whole by `check()` (and at deploy).

        - `inputs`: input port (parameter) -> topic.
        - `outputs`: topics in the order of the output ports, or port -> topic; none: a sink.
        - `config`: a mapping or an instance of the `config` parameter's class.
        - `synchronized`: release messages in timestamp order across inputs (each input
          waits while another input could still deliver an older message); False takes
          whatever is queued, oldest first, without waiting for the other inputs.
        - `idle_after`: seconds a synchronized stage holds a message for an input with
          nothing queued; then that input counts as idle (it holds nothing back until its
          next message) and the message goes on. None waits for ever.
        - `queue_size`, `backpressure`: each input's bounded queue, and what a full one
          does (`block` the producer, or `drop_oldest` and count it).
        - `restart`: the `RestartPolicy` after the stage raises (default: at once, always).
        - `thread_safe`: run a sync function in a worker thread (default: the task's).
        """
        try:
            kind, input_ports, output_ports, config_type = ports_of(task)
        except TypeError as exc:
            raise WiringError(self.name, [str(exc)]) from None
        if queue_size < 1:
            raise WiringError(self.name, [f"queue_size must be >= 1, got {queue_size}"])
        if idle_after is not None and (
            isinstance(idle_after, bool)
            or not isinstance(idle_after, int | float)
            or not idle_after >= 0
        ):
            raise WiringError(
                self.name,
                [f"idle_after {idle_after!r}: expected seconds (a number >= 0) or null"],
            )
        try:
            policy = Backpressure(backpressure)
        except ValueError:
            raise WiringError(
                self.name,
                [f"backpressure {backpressure!r}: expected 'block' or 'drop_oldest'"],
            ) from None
        wired_outputs, problems = wire_outputs(output_ports, outputs)
        if isinstance(task, FunctionTask):
            default_name, default_label = task.name, task.label
            default_thread_safe = task.options.thread_safe
        else:
            default_name = task.__name__
            default_label = task.label or task.__name__
            default_thread_safe = False
        spec = StageSpec(
            name=name or default_name,
            task=task,
            kind=kind,
            label=label or default_label,
            inputs=dict(inputs or {}),
            outputs=wired_outputs,
            input_ports=input_ports,
            output_ports=output_ports,
            config=config,
            config_type=config_type,
            synchronized=synchronized,
            idle_after=None if idle_after is None else float(idle_after),
            queue_size=queue_size,
            backpressure=policy,
            restart=restart or DEFAULT_RESTART,
            thread_safe=default_thread_safe if thread_safe is None else thread_safe,
            problems=problems,
        )
        self.stages.append(spec)
        return spec

    def keep(self, *topics: str, max_age: float | None = None) -> None:
        """Keep these topics' messages in a JetStream stream when deployed on NATS (the
        stream `taskloom_<deployment>`): a stage reading one resumes after a restart where
        it left off, and a new reader gets what is kept. `max_age`: seconds a message is
        kept (default: until the stream's limits). The in-process bus keeps nothing."""
        problems = [
            f"kept topic {t!r} is not a valid name (use letters, digits, '_' and '-', in "
            "parts separated by dots)"
            for t in topics
            if not isinstance(t, str) or not TOPIC_NAME.match(t)
        ]
        if max_age is not None and (
            isinstance(max_age, bool) or not isinstance(max_age, int | float) or max_age <= 0
        ):
            problems.append(f"max_age {max_age!r}: expected seconds (a number > 0) or null")
        if problems:
            raise WiringError(self.name, problems)
        self.kept_topics.extend(t for t in topics if t not in self.kept_topics)
        self.keep_max_age = None if max_age is None else float(max_age)

    def configure(self, stage: str, values: Mapping[str, Any]) -> None:
        """Set fields of a stage's config (what `--config STAGE.KEY=VALUE` does): merged
        over the config it was given, checked with it at deploy (`StageConfigError`)."""
        try:
            spec = self.get(stage)
        except KeyError as exc:
            raise WiringError(self.name, [str(exc.args[0])]) from None
        base = spec.config
        if base is None:
            merged: dict[str, Any] = {}
        elif isinstance(base, Mapping):
            merged = dict(base)
        else:  # an instance of the config class
            merged = dump_special(base) or {}
        merged.update(values)
        spec.config = merged

    def get(self, name: str) -> StageSpec:
        for spec in self.stages:
            if spec.name == name:
                return spec
        known = ", ".join(s.name for s in self.stages)
        raise KeyError(f"pipeline {self.name!r} has no stage {name!r} (stages: {known})")

    def check(self) -> dict[str, Any]:
        """Refuse a mis-wired pipeline (`WiringError`) or a bad config (`StageConfigError`).

        Returns each stage's validated config (None for a stage without one).
        """
        # Configs first (metadata may come from them); a bad one is raised after the
        # wiring's problems, which name more of what is wrong.
        configs: dict[str, Any] = {}
        refused: StageConfigError | None = None
        for spec in self.stages:
            if spec.config_type is None:
                configs[spec.name] = None
                continue
            try:
                configs[spec.name] = validate_special(
                    spec.name, "config", spec.config_type, spec.config
                )
            except InputValidationError as exc:
                refused = refused or StageConfigError(self.name, spec.name, exc.errors)
                configs[spec.name] = None
        problems = check_stages(self.stages, configs)
        for spec in self.stages:
            if spec.config is not None and spec.config_type is None:
                problems.append(
                    f"stage {spec.name!r}: config given, but it takes none "
                    "(it has no `config` parameter or `Config` class)"
                )
        if problems:
            raise WiringError(self.name, problems)
        if refused is not None:
            raise refused
        return configs

    def topics(self) -> dict[str, dict[str, Any]]:
        """Each topic with the stage ports that publish to and read from it (with the JSON
        Schema of each input, so another process can check what it publishes)."""
        topics: dict[str, dict[str, Any]] = {}
        for spec in self.stages:
            for port, topic in spec.outputs.items():
                entry = topics.setdefault(topic, {"producers": [], "consumers": []})
                annotation = spec.output_ports[port].annotation
                entry["producers"].append(
                    {"stage": spec.name, "port": port, "type": type_name(annotation)}
                )
            for port, topic in spec.inputs.items():
                entry = topics.setdefault(topic, {"producers": [], "consumers": []})
                annotation = spec.input_ports[port].annotation if port in spec.input_ports else Any
                entry["consumers"].append(
                    {
                        "stage": spec.name,
                        "port": port,
                        "type": type_name(annotation),
                        "schema": _json_schema(annotation),
                    }
                )
        for topic in self.kept_topics:
            topics.setdefault(topic, {"producers": [], "consumers": []})["kept"] = True
        return topics

    # from files ----------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base: Path | None = None) -> Pipeline:
        """A pipeline from its YAML/JSON form (see docs/howto/streams.md)."""
        if not isinstance(data, Mapping) or "name" not in data:
            raise WiringError("?", ["the file needs a `name` and a list of `stages`"])
        pipeline = cls(str(data["name"]))
        stages = data.get("stages")
        if not isinstance(stages, list) or not stages:
            raise WiringError(pipeline.name, ["`stages` must be a non-empty list"])
        keep_topics(pipeline, data.get("keep"))
        for index, entry in enumerate(stages):
            where = f"stages[{index}]"
            if not isinstance(entry, Mapping) or "task" not in entry:
                raise WiringError(pipeline.name, [f"{where}: needs `task: module:attr`"])
            unknown = sorted(set(entry) - STAGE_KEYS)
            if unknown:
                raise WiringError(
                    pipeline.name,
                    [
                        f"{where}: unknown key(s) {', '.join(unknown)} "
                        f"(known: {', '.join(sorted(STAGE_KEYS))})"
                    ],
                )
            options = {k: v for k, v in entry.items() if k != "task"}
            pipeline.stage(load_object(str(entry["task"]), base=base), **options)
        return pipeline

    @classmethod
    def load(cls, path: str | Path) -> Pipeline:
        """Read a pipeline from a YAML (or JSON) file (without aliases, no deeper than
        64 levels)."""
        file = Path(path)
        try:
            data = load_yaml(file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise WiringError(str(path), [f"cannot read the file: {exc}"]) from None
        except (DocumentLimitError, yaml.YAMLError) as exc:
            raise WiringError(str(path), [f"not valid YAML: {exc}"]) from None
        return cls.from_dict(data, base=file.resolve().parent)


def keep_topics(pipeline: Pipeline, keep: Any) -> None:
    """The `keep` key of the data form: a list of topics, or `{topics: [...], max_age: S}`."""
    if keep is None:
        return
    if isinstance(keep, list):
        pipeline.keep(*keep)
        return
    if isinstance(keep, Mapping) and isinstance(keep.get("topics"), list):
        unknown = sorted(str(k) for k in set(keep) - {"topics", "max_age"})
        if unknown:
            raise WiringError(pipeline.name, [f"keep: unknown key(s) {', '.join(unknown)}"])
        pipeline.keep(*keep["topics"], max_age=keep.get("max_age"))
        return
    raise WiringError(
        pipeline.name, ["keep: expected a list of topics, or {topics: [...], max_age: SECONDS}"]
    )


def _json_schema(annotation: Any) -> dict[str, Any] | None:
    """The JSON Schema of a port's type (what other processes check values with), if any."""
    try:
        return TypeAdapter(annotation).json_schema()
    except Exception:  # a type pydantic cannot describe: values are not checked outside
        return None


def load_object(target: str, *, base: Path | None = None) -> Any:
    """The object `module:attr` or `path/file.py:attr` names (paths relative to `base`)."""
    module_part, sep, attr = target.partition(":")
    if not sep or not attr:
        raise TaskDefinitionError(f"{target!r}: give `module:attr` or `path/file.py:attr`")
    if module_part.endswith(".py") and base is not None and not Path(module_part).is_absolute():
        module_part = str(base / module_part)
    obj: Any = load_module(module_part)
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TaskDefinitionError(f"{module_part!r} has no attribute {attr!r}") from None
    return obj


def load_pipeline(target: str) -> Pipeline:
    """A pipeline from a YAML/JSON file or a `module:attr` naming a `Pipeline`."""
    if target.endswith((".yaml", ".yml", ".json")):
        return Pipeline.load(target)
    obj = load_object(target)
    if not isinstance(obj, Pipeline):
        raise TaskDefinitionError(f"{target!r} is not a taskloom.Pipeline, got {obj!r}")
    return obj
