"""Input and output JSON Schemas from signatures, and validating inputs against them."""

from __future__ import annotations

import dataclasses
import enum
from typing import Annotated, Any, Literal

import jsonschema
import pytest
from pydantic import BaseModel, Field

import taskloom
from support import load_helper
from taskloom import InputValidationError
from taskloom.tasks import as_task

DIALECT = "https://json-schema.org/draft/2020-12/schema"


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Point(BaseModel):
    x: int
    y: int = 0


@dataclasses.dataclass
class Size:
    width: int
    height: int = 1


class Area(BaseModel):
    value: float
    unit: str = "m2"


@taskloom.task
def adder(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@taskloom.task
def google_style(
    count: int,
    mode: Literal["fast", "slow"] = "fast",
    color: Color = Color.RED,
    origin: Point | None = None,
    size: Size | None = None,
    label: str = "x",
) -> Area:
    """Compute an area.

    A longer description that is not the summary.

    Args:
        count: How many shapes.
        mode: How hard to try.
        label: A free text.

    Returns:
        The area covered.
    """
    return Area(value=float(count))


@taskloom.task
def numpy_style(a: int, b: float = 0.5) -> float:
    """Scale a number.

    Parameters
    ----------
    a : int
        The number to scale.
    b : float
        The factor.

    Returns
    -------
    float
        The scaled number.
    """
    return a * b


@taskloom.task
def media(
    video: Annotated[bytes, {"content": "video", "codec": "h264"}],
    level: Annotated[int, "a note", {"unit": "dB"}] = 0,
) -> Annotated[bytes, {"content": "video"}]:
    return video


def check_schema(schema: dict[str, Any]) -> None:
    assert schema["$schema"] == DIALECT
    jsonschema.Draft202012Validator.check_schema(schema)


# --- input schemas ---------------------------------------------------------------------------


def test_simple_schema() -> None:
    schema = adder.input_schema
    check_schema(schema)
    assert schema["type"] == "object"
    assert schema["title"] == "adder"
    assert schema["properties"]["a"]["type"] == "integer"
    assert schema["properties"]["b"]["type"] == "integer"
    assert schema["required"] == ["a", "b"]
    assert schema["additionalProperties"] is False


def test_defaults_and_required() -> None:
    schema = google_style.input_schema
    check_schema(schema)
    assert schema["required"] == ["count"]
    props = schema["properties"]
    assert props["mode"]["default"] == "fast"
    assert props["color"]["default"] == "red"
    assert props["origin"]["default"] is None
    assert props["label"]["default"] == "x"


def test_literal_and_enum_choices() -> None:
    schema = google_style.input_schema
    assert schema["properties"]["mode"]["enum"] == ["fast", "slow"]
    color = schema["properties"]["color"]
    if "$ref" in color:
        color = schema["$defs"][color["$ref"].rsplit("/", 1)[-1]]
    assert color["enum"] == ["red", "blue"]


def test_nested_pydantic_models_and_dataclasses() -> None:
    schema = google_style.input_schema
    defs = schema["$defs"]
    assert defs["Point"]["properties"]["x"]["type"] == "integer"
    assert defs["Point"]["required"] == ["x"]
    assert defs["Size"]["properties"]["width"]["type"] == "integer"
    assert defs["Size"]["properties"]["height"]["default"] == 1
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid({"count": 1, "origin": {"x": 1}, "size": {"width": 2}})
    assert not validator.is_valid({"count": 1, "origin": {"y": 1}})
    assert not validator.is_valid({"count": 1, "mode": "medium"})
    assert not validator.is_valid({"count": 1, "color": "green"})


def test_descriptions_from_a_google_docstring() -> None:
    props = google_style.input_schema["properties"]
    assert props["count"]["description"] == "How many shapes."
    assert props["mode"]["description"] == "How hard to try."
    assert props["label"]["description"] == "A free text."
    assert "description" not in props["origin"]
    assert google_style.description == "Compute an area."
    assert google_style.inputs["count"].description == "How many shapes."


def test_descriptions_from_a_numpy_docstring() -> None:
    props = numpy_style.input_schema["properties"]
    assert props["a"]["description"] == "The number to scale."
    assert props["b"]["description"] == "The factor."
    assert numpy_style.description == "Scale a number."
    assert numpy_style.output_schema["description"] == "The scaled number."


def test_annotated_field_constraints_and_description_are_kept() -> None:
    @taskloom.task
    def bounded(n: Annotated[int, Field(ge=1, le=10, description="How many.")] = 1) -> int:
        return n

    prop = bounded.input_schema["properties"]["n"]
    assert prop["minimum"] == 1
    assert prop["maximum"] == 10
    assert prop["default"] == 1
    assert prop["description"] == "How many."


def test_annotated_metadata_is_kept_on_the_input_and_in_the_schema() -> None:
    check_schema(media.input_schema)
    video = media.inputs["video"]
    assert video.annotation is bytes
    assert video.metadata == ({"content": "video", "codec": "h264"},)
    props = media.input_schema["properties"]
    assert props["video"]["x-io"] == {"content": "video", "codec": "h264"}
    assert media.inputs["level"].metadata == ("a note", {"unit": "dB"})
    assert props["level"]["x-io"] == {"unit": "dB"}
    assert media.outputs["result"].metadata == ({"content": "video"},)


def test_no_inputs_is_an_empty_object() -> None:
    @taskloom.task
    def nothing() -> None:
        return None

    schema = nothing.input_schema
    check_schema(schema)
    assert schema["properties"] == {}
    assert "required" not in schema


# --- output schemas --------------------------------------------------------------------------


def test_output_schema_from_the_return_annotation() -> None:
    assert adder.output_schema == {"type": "integer"}
    schema = google_style.output_schema
    assert schema["properties"]["value"]["type"] == "number"
    assert schema["required"] == ["value"]
    assert schema["description"] == "The area covered."


def test_output_schema_of_none_and_of_no_annotation() -> None:
    @taskloom.task
    def returns_none() -> None:
        return None

    @taskloom.task
    def unannotated():  # type: ignore[no-untyped-def]
        return 1

    assert returns_none.output_schema == {"type": "null"}
    assert unannotated.output_schema == {}


def test_tuple_returns_are_numbered_outputs() -> None:
    @taskloom.task
    def pair() -> tuple[int, str]:
        return 1, "a"

    assert list(pair.outputs) == ["out0", "out1"]
    assert pair.outputs["out1"].annotation is str
    assert pair.output_schema["prefixItems"] == [{"type": "integer"}, {"type": "string"}]


def test_describe_is_json_compatible() -> None:
    summary = adder.describe()
    assert summary["name"] == "adder"
    assert summary["input_schema"] == adder.input_schema
    assert summary["output_schema"] == {"type": "integer"}
    assert summary["kind"] == "function"


# --- validation ------------------------------------------------------------------------------


def test_text_is_coerced_to_the_declared_type() -> None:
    call, stored = adder.validate_inputs({"a": "1", "b": 2})
    assert call == {"a": 1, "b": 2}
    assert stored == {"a": 1, "b": 2}


def test_wrong_type_names_task_field_and_value() -> None:
    with pytest.raises(InputValidationError) as info:
        adder.validate_inputs({"a": "one", "b": 2})
    assert str(info.value) == "task 'adder': input 'a': expected an integer, got 'one'"
    assert [e.field for e in info.value.errors] == ["a"]
    assert info.value.task == "adder"
    assert info.value.errors[0].value == "one"


def test_missing_required_input() -> None:
    with pytest.raises(InputValidationError) as info:
        adder.validate_inputs({"a": 1})
    assert str(info.value) == "task 'adder': input 'b': missing required input"
    assert [e.field for e in info.value.errors] == ["b"]


def test_unknown_input() -> None:
    with pytest.raises(InputValidationError) as info:
        adder.validate_inputs({"a": 1, "b": 2, "c": 3})
    assert [e.field for e in info.value.errors] == ["c"]
    assert str(info.value).startswith("task 'adder': input 'c': unknown input")
    assert "a, b" in str(info.value)


def test_every_invalid_field_is_reported() -> None:
    with pytest.raises(InputValidationError) as info:
        adder.validate_inputs({"a": "one", "c": 3})
    assert sorted(e.field for e in info.value.errors) == ["a", "b", "c"]
    assert len(str(info.value).splitlines()) == 3
    assert info.value.as_dict()["task"] == "adder"


def test_inputs_must_be_a_mapping() -> None:
    with pytest.raises(InputValidationError, match="expected an object"):
        adder.validate_inputs([1, 2])  # type: ignore[arg-type]


def test_choices_are_enforced() -> None:
    with pytest.raises(InputValidationError) as info:
        google_style.validate_inputs({"count": 1, "mode": "medium"})
    assert [e.field for e in info.value.errors] == ["mode"]
    assert "'medium'" in str(info.value)
    call, stored = google_style.validate_inputs({"count": 1, "color": "blue"})
    assert call["color"] is Color.BLUE
    assert stored["color"] == "blue"


def test_nested_values_are_validated_and_stored_as_json() -> None:
    call, stored = google_style.validate_inputs(
        {"count": "2", "origin": {"x": "3"}, "size": {"width": 4}}
    )
    assert call["origin"] == Point(x=3, y=0)
    assert call["size"] == Size(width=4, height=1)
    assert stored["origin"] == {"x": 3, "y": 0}
    assert stored["size"] == {"width": 4, "height": 1}
    with pytest.raises(InputValidationError) as info:
        google_style.validate_inputs({"count": 1, "origin": {"x": "left"}})
    assert [e.field for e in info.value.errors] == ["origin.x"]


def test_defaults_are_filled() -> None:
    call, stored = numpy_style.validate_inputs({"a": 2})
    assert call == {"a": 2, "b": 0.5}
    assert stored == {"a": 2, "b": 0.5}


def test_parse_cli_inputs_keeps_text_for_string_fields() -> None:
    parsed = google_style.parse_cli_inputs({"count": "3", "label": "42", "mode": "slow"})
    assert parsed == {"count": 3, "label": "42", "mode": "slow"}


def test_parse_cli_inputs_reads_json_for_other_fields() -> None:
    parsed = google_style.parse_cli_inputs({"origin": '{"x": 1}', "count": "7"})
    assert parsed == {"origin": {"x": 1}, "count": 7}
    call, _ = google_style.validate_inputs(parsed)
    assert call["origin"] == Point(x=1)


def test_parse_cli_inputs_keeps_bad_text_so_validation_names_the_field() -> None:
    parsed = adder.parse_cli_inputs({"a": "x", "b": "2"})
    assert parsed == {"a": "x", "b": 2}
    with pytest.raises(InputValidationError) as info:
        adder.validate_inputs(parsed)
    assert str(info.value) == "task 'adder': input 'a': expected an integer, got 'x'"


# --- class tasks -----------------------------------------------------------------------------


def test_executor_schema_is_kept_and_enforced() -> None:
    greeting = load_helper("greeting_executor")
    definition = as_task(greeting.GreetingExecutor)
    assert definition.name == "greeting_executor"
    assert definition.label == "Greeting Executor"
    assert definition.description == "Creates personalized greeting messages"
    schema = definition.input_schema
    assert schema["properties"]["language"]["enum"] == ["en", "es", "fr", "zh"]
    assert schema["required"] == ["name"]

    _, stored = definition.validate_inputs({"name": "Ada"})
    assert stored == {"name": "Ada", "language": "en"}

    with pytest.raises(InputValidationError) as info:
        definition.validate_inputs({"language": "fr"})
    assert [e.field for e in info.value.errors] == ["name"]
    assert "missing required input" in str(info.value)

    with pytest.raises(InputValidationError) as info:
        definition.validate_inputs({"name": "Ada", "language": "de"})
    assert [e.field for e in info.value.errors] == ["language"]
    assert "'de'" in str(info.value)

    with pytest.raises(InputValidationError) as info:
        definition.validate_inputs({"name": 3})
    assert str(info.value) == "task 'greeting_executor': input 'name': expected a string, got 3"

    with pytest.raises(InputValidationError) as info:
        definition.validate_inputs({"name": "Ada", "mood": "happy"})
    assert [e.field for e in info.value.errors] == ["mood"]


def test_class_inputs_model_gives_the_schema_and_validates() -> None:
    class Resize(taskloom.Task):
        id = "resize"

        class Inputs(BaseModel):
            width: int = Field(description="Pixels.")
            height: int = 100

        async def execute(self, inputs: Any) -> int:
            return int(inputs.width * inputs.height)

    definition = as_task(Resize)
    schema = definition.input_schema
    check_schema(schema)
    assert schema["required"] == ["width"]
    assert schema["properties"]["width"]["description"] == "Pixels."
    call, stored = definition.validate_inputs({"width": "3"})
    assert call["inputs"].width == 3
    assert stored == {"width": 3, "height": 100}
    with pytest.raises(InputValidationError) as info:
        definition.validate_inputs({"height": 1, "depth": 2})
    assert sorted(e.field for e in info.value.errors) == ["depth", "width"]


def test_an_invalid_executor_schema_fails_at_definition() -> None:
    class Broken(taskloom.Task):
        id = "broken_schema"

        async def execute(self, inputs: dict[str, Any]) -> dict[str, Any]:
            return {}

        def get_input_schema(self) -> dict[str, Any]:
            return {"type": "object", "properties": {"x": {"type": "integr"}}}

    with pytest.raises(taskloom.TaskDefinitionError, match="broken_schema"):
        as_task(Broken)
