"""Defining tasks: `@taskloom.task`, its options, special parameters, classes, registries."""

from __future__ import annotations

import dataclasses
import itertools
import types
from typing import Any

import pytest
from pydantic import BaseModel

import taskloom
from taskloom import DuplicateTaskError, Registry, TaskDefinitionError
from taskloom.tasks import as_task, tasks_in_module
from taskloom.tasks.classes import as_class_task

SPECIALS = ("config", "state", "timestamp", "context")


@taskloom.task
def adder(a: int, b: int) -> int:
    """Add two numbers.

    The longer description is not the summary.
    """
    return a + b


@taskloom.task(name="sum_two", label="Sum of two", description="Adds.", retries=2, timeout=5)
def summed(a: int, b: int = 1) -> int:
    return a + b


@dataclasses.dataclass
class Settings:
    factor: int = 2


class Counter:
    def __init__(self) -> None:
        self.count = 0


class NeedsArgs(BaseModel):
    required: int


class StateNeedsArgs:
    def __init__(self, value: int) -> None:
        self.value = value


# --- the decorator -------------------------------------------------------------------------


def test_bare_decorator_keeps_the_function_callable() -> None:
    assert adder(1, 2) == 3
    assert adder(a=1, b=2) == 3
    assert isinstance(adder, taskloom.TaskDefinition)


def test_bare_decorator_defaults() -> None:
    assert adder.name == "adder"
    assert adder.label == "adder"
    assert adder.description == "Add two numbers."
    assert adder.options == taskloom.TaskOptions()
    assert adder.__doc__ is not None
    assert adder.__doc__.startswith("Add two numbers.")
    assert adder.__name__ == "adder"


def test_decorator_with_options() -> None:
    assert summed(1) == 2
    assert summed.name == "sum_two"
    assert summed.label == "Sum of two"
    assert summed.description == "Adds."
    assert summed.options.retries == 2
    assert summed.options.timeout == 5


def test_no_docstring_means_empty_description() -> None:
    @taskloom.task
    def quiet() -> None:
        return None

    assert quiet.description == ""


def test_label_defaults_to_the_name() -> None:
    @taskloom.task(name="renamed")
    def original() -> None:
        return None

    assert original.name == "renamed"
    assert original.label == "renamed"


def test_all_options_are_accepted() -> None:
    @taskloom.task(
        retries=3,
        retry_backoff=0.5,
        retry_backoff_factor=1.5,
        retry_backoff_max=10,
        retry_jitter=False,
        retry_on=(ConnectionError, TimeoutError),
        timeout=2.5,
        concurrency=4,
        thread_safe=True,
        priority=-2,
        tags=["io", "net"],
        meta={"cpus": 2},
    )
    def busy() -> None:
        return None

    options = busy.options
    assert options.retries == 3
    assert options.retry_on == (ConnectionError, TimeoutError)
    assert options.concurrency == 4
    assert options.thread_safe is True
    assert options.priority == -2
    assert options.tags == ("io", "net")
    assert dict(options.meta) == {"cpus": 2}


def test_a_single_retry_on_type_and_a_single_tag_are_normalised() -> None:
    @taskloom.task(retry_on=KeyError, tags="one")
    def single() -> None:
        return None

    assert single.options.retry_on == (KeyError,)
    assert single.options.tags == ("one",)


def test_unknown_option_fails_at_definition_naming_it() -> None:
    with pytest.raises(TaskDefinitionError, match="unknown option 'retires'") as info:

        @taskloom.task(retires=3)
        def typo() -> None:
            return None

    assert "did you mean 'retries'" in str(info.value)
    assert "'typo'" in str(info.value)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("retries", -1),
        ("retries", "3"),
        ("retries", 1.5),
        ("retries", True),
        ("retry_backoff", -1),
        ("retry_backoff", "1"),
        ("retry_backoff_factor", 0.5),
        ("retry_backoff_max", -2),
        ("timeout", 0),
        ("timeout", -1),
        ("timeout", "10"),
        ("concurrency", 0),
        ("concurrency", 1.5),
        ("priority", 1.5),
        ("retry_on", "ValueError"),
        ("retry_on", [ValueError, 3]),
        ("retry_on", int),
    ],
)
def test_bad_option_values_fail_at_definition(option: str, value: Any) -> None:
    with pytest.raises(TaskDefinitionError, match=f"'{option}'"):

        @taskloom.task(**{option: value})
        def bad() -> None:
            return None


def test_inline_is_for_sync_functions_only() -> None:
    with pytest.raises(TaskDefinitionError, match="inline"):

        @taskloom.task(inline=True)
        async def on_loop() -> None:
            return None


def test_inline_cannot_have_a_timeout() -> None:
    # An inline call runs on the event loop, where nothing can interrupt it.
    with pytest.raises(TaskDefinitionError, match="timeout"):

        @taskloom.task(inline=True, timeout=1)
        def quick() -> None:
            return None


def test_bare_form_with_options_is_refused() -> None:
    def plain() -> None:
        return None

    with pytest.raises(TaskDefinitionError):
        taskloom.task(plain, retries=1)  # type: ignore[call-overload]


def test_a_task_cannot_be_decorated_twice() -> None:
    with pytest.raises(TaskDefinitionError, match="already a task"):
        taskloom.task(adder)


def test_star_args_cannot_be_inputs() -> None:
    with pytest.raises(TaskDefinitionError, match="args"):

        @taskloom.task
        def star(*values: int) -> int:
            return sum(values)

    with pytest.raises(TaskDefinitionError, match="kwargs"):

        @taskloom.task
        def double_star(**values: int) -> int:
            return sum(values.values())


def test_async_tasks_are_recognised() -> None:
    @taskloom.task
    async def later(x: int) -> int:
        return x

    assert later.is_async
    assert not adder.is_async


# --- special parameters --------------------------------------------------------------------


def _special_function(specials: tuple[str, ...]) -> Any:
    """A function taking `a` and the given special parameters, made into a task."""
    annotations = {
        "config": "Settings",
        "state": "Counter",
        "timestamp": "int",
        "context": "taskloom.Context",
    }
    params = ", ".join(["a: int", *(f"{name}: {annotations[name]}" for name in specials)])
    name = "special_" + ("_".join(specials) or "none")
    source = f"def {name}({params}) -> int:\n    return a\n"
    namespace: dict[str, Any] = {"Settings": Settings, "Counter": Counter, "taskloom": taskloom}
    exec(source, namespace)
    return taskloom.task(namespace[name])


COMBINATIONS = [
    combo for size in range(len(SPECIALS) + 1) for combo in itertools.combinations(SPECIALS, size)
]


@pytest.mark.parametrize("specials", COMBINATIONS, ids=lambda c: "+".join(c) or "none")
def test_every_combination_of_special_parameters_is_accepted(specials: tuple[str, ...]) -> None:
    defined = _special_function(specials)
    schema = defined.input_schema
    assert list(schema["properties"]) == ["a"]
    assert schema["required"] == ["a"]
    assert list(defined.inputs) == ["a"]
    found = defined.specials
    assert (found.config is Settings) == ("config" in specials)
    assert (found.state is Counter) == ("state" in specials)
    assert found.timestamp == ("timestamp" in specials)
    assert (found.context == "context") == ("context" in specials)


def test_special_parameters_are_never_inputs() -> None:
    @taskloom.task
    def uses_all(
        a: int, config: Settings, state: Counter, timestamp: int, context: taskloom.Context
    ) -> int:
        return a

    assert set(uses_all.input_schema["properties"]) == {"a"}
    with pytest.raises(taskloom.InputValidationError, match="'config'"):
        uses_all.validate_inputs({"a": 1, "config": {"factor": 3}})


def test_context_is_found_by_annotation_under_any_name() -> None:
    @taskloom.task
    def logs(a: int, ctx: taskloom.Context) -> int:
        return a

    assert logs.specials.context == "ctx"
    assert set(logs.input_schema["properties"]) == {"a"}


def test_state_without_config_and_timestamp_alone() -> None:
    @taskloom.task
    def stateful(state: Counter) -> int:
        return state.count

    @taskloom.task
    def stamped(timestamp: int) -> int:
        return timestamp

    assert stateful.specials.state is Counter
    assert stateful.specials.config is None
    assert stamped.specials.timestamp
    assert stamped.specials.state is None
    assert stateful.input_schema["properties"] == {}
    assert stamped.input_schema["properties"] == {}


def test_a_config_that_cannot_be_built_is_rejected_at_definition() -> None:
    with pytest.raises(TaskDefinitionError, match="'config'"):

        @taskloom.task
        def configured(a: int, config: NeedsArgs) -> int:
            return a


def test_a_state_that_cannot_be_built_is_rejected_at_definition() -> None:
    with pytest.raises(TaskDefinitionError, match="'state'"):

        @taskloom.task
        def stateful(a: int, state: StateNeedsArgs) -> int:
            return a


def test_a_config_annotation_that_is_not_a_class_is_rejected() -> None:
    with pytest.raises(TaskDefinitionError, match="'config'"):

        @taskloom.task
        def configured(a: int, config: list[int]) -> int:
            return a


def test_timestamp_must_be_an_int() -> None:
    with pytest.raises(TaskDefinitionError, match="timestamp"):

        @taskloom.task
        def stamped(timestamp: str) -> str:
            return timestamp


# --- class tasks ---------------------------------------------------------------------------


class ResizeImage(taskloom.Task, retries=2, timeout=30):
    """Resize an image.

    More words.
    """

    id = "resize_image"
    name = "Resize an image"

    class Inputs(BaseModel):
        width: int
        height: int = 100

    async def execute(self, inputs: Any) -> dict[str, int]:
        return {"area": inputs.width * inputs.height}


class PlainExecutor(taskloom.Task):
    async def execute(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return dict(inputs)


def test_class_id_is_the_task_name_and_name_the_label() -> None:
    definition = as_task(ResizeImage)
    assert definition.name == "resize_image"
    assert definition.label == "Resize an image"
    assert definition.description == "Resize an image."
    assert definition.options.retries == 2
    assert definition.options.timeout == 30
    assert as_task(ResizeImage) is definition  # cached


def test_class_description_attribute_wins_over_the_docstring() -> None:
    class Described(taskloom.Task):
        """Docstring summary."""

        id = "described"
        description = "From the attribute."

        async def execute(self, inputs: dict[str, Any]) -> dict[str, Any]:
            return {}

    assert as_task(Described).description == "From the attribute."


def test_property_style_id_name_and_description_are_read_from_an_instance() -> None:
    # aipartnerupflow's lower-level `ExecutableTask` declares them as properties.
    class MyTask(taskloom.ExecutableTask):
        @property
        def id(self) -> str:  # type: ignore[override]
            return "my_task"

        @property
        def name(self) -> str:  # type: ignore[override]
            return "My Task"

        @property
        def description(self) -> str:  # type: ignore[override]
            return "Does my thing"

        async def execute(self, inputs: dict[str, Any]) -> dict[str, Any]:
            return {}

    definition = as_class_task(MyTask)
    assert (definition.name, definition.label) == ("my_task", "My Task")
    assert definition.description == "Does my thing"


def test_a_property_id_that_is_not_text_is_refused_at_definition() -> None:
    class Numbered(taskloom.ExecutableTask):
        @property
        def id(self) -> int:  # type: ignore[override]
            return 7

        async def execute(self, inputs: dict[str, Any]) -> dict[str, Any]:
            return {}

    with pytest.raises(TaskDefinitionError, match="`id` must be text, not int"):
        as_class_task(Numbered)


def test_a_class_without_a_docstring_has_no_description_of_taskloom_s_own() -> None:
    class Quiet(taskloom.Task):
        async def execute(self, inputs: dict[str, Any]) -> dict[str, Any]:
            return {}

    class Documented(taskloom.Task):
        """Reads the sensors.

        More words."""

        async def execute(self, inputs: dict[str, Any]) -> dict[str, Any]:
            return {}

    class Inherits(Documented):
        pass

    assert as_class_task(Quiet).description == ""
    assert as_class_task(Documented).description == "Reads the sensors."
    assert as_class_task(Inherits).description == "Reads the sensors."


def test_class_without_id_is_named_from_the_class() -> None:
    definition = as_task(PlainExecutor)
    assert definition.name == "plain_executor"
    assert definition.label == "plain_executor"


def test_class_options_are_checked_at_definition() -> None:
    with pytest.raises(TaskDefinitionError, match="unknown option 'timout'"):

        class Typo(taskloom.Task, timout=3):
            async def execute(self, inputs: dict[str, Any]) -> dict[str, Any]:
                return {}


def test_class_without_execute_is_not_a_task() -> None:
    class Empty(taskloom.Task):
        id = "empty"

    with pytest.raises(TaskDefinitionError, match="execute"):
        as_task(Empty)


def test_a_plain_function_is_not_a_task() -> None:
    def plain() -> None:
        return None

    with pytest.raises(TaskDefinitionError, match=r"@taskloom\.task"):
        as_task(plain)


# --- registries ------------------------------------------------------------------------------

MODULE_SOURCE = '''
import taskloom

@taskloom.task
def local_function(x: int) -> int:
    """Defined here."""
    return x

class LocalClass(taskloom.Task):
    id = "local_class"

    async def execute(self, inputs):
        return {}

class Helper:
    """Not a task."""

def not_a_task():
    return None
'''


def _module_with_tasks() -> types.ModuleType:
    module = types.ModuleType("taskloom_test_registry_module")
    exec(MODULE_SOURCE, module.__dict__)
    # Imported into the module, defined elsewhere: must not be registered with it.
    module.adder = adder  # type: ignore[attr-defined]
    module.ResizeImage = ResizeImage  # type: ignore[attr-defined]
    module.Task = taskloom.Task  # type: ignore[attr-defined]
    return module


def test_module_registration_takes_tasks_defined_in_it_only() -> None:
    module = _module_with_tasks()
    registry = Registry()
    added = registry.register(module)
    assert [d.name for d in added] == ["local_function", "local_class"]
    assert registry.names == ["local_function", "local_class"]
    assert "adder" not in registry
    assert "resize_image" not in registry
    assert [d.name for d in tasks_in_module(module)] == ["local_function", "local_class"]


def test_registry_lookup() -> None:
    registry = Registry()
    registry.register([adder, ResizeImage])
    assert registry.get("adder") is adder
    assert registry.get("resize_image") is as_task(ResizeImage)
    assert len(registry) == 2
    assert registry.find("missing") is None
    with pytest.raises(taskloom.UnknownTaskError, match="'missing'") as info:
        registry.get("missing")
    assert "adder" in str(info.value)


def test_duplicate_names_raise() -> None:
    @taskloom.task(name="adder")
    def impostor(a: int, b: int) -> int:
        return a - b

    registry = Registry()
    registry.register(adder)
    with pytest.raises(DuplicateTaskError, match="'adder'"):
        registry.register(impostor)
    assert registry.get("adder") is adder


def test_duplicate_class_ids_raise() -> None:
    class OtherResize(taskloom.Task):
        id = "resize_image"

        async def execute(self, inputs: dict[str, Any]) -> dict[str, Any]:
            return {}

    registry = Registry()
    registry.register(ResizeImage)
    with pytest.raises(DuplicateTaskError):
        registry.register(OtherResize)


def test_registering_the_same_task_again_is_fine() -> None:
    registry = Registry()
    registry.register(adder)
    registry.register(adder)
    registry.register(ResizeImage)
    registry.register(ResizeImage)
    assert len(registry) == 2


def test_registering_a_module_twice_is_fine() -> None:
    module = _module_with_tasks()
    registry = Registry()
    registry.register(module)
    registry.register(module)
    assert len(registry) == 2


def test_the_same_code_reimported_counts_as_the_same_task() -> None:
    registry = Registry()
    registry.register(_module_with_tasks())
    registry.register(_module_with_tasks())  # a fresh module object, same definitions
    assert len(registry) == 2


def test_engine_register_uses_the_same_rules() -> None:
    engine = taskloom.Engine("memory://")
    assert [d.name for d in engine.register(_module_with_tasks())] == [
        "local_function",
        "local_class",
    ]

    @taskloom.task(name="local_function")
    def clash(x: int) -> int:
        return x

    with pytest.raises(DuplicateTaskError):
        engine.register(clash)
