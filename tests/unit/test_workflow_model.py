"""The workflow model without a database: references, the data form, validation."""

from __future__ import annotations

import pytest

import taskloom
from taskloom import Workflow, WorkflowValidationError
from taskloom.tasks.definition import TaskDefinition
from taskloom.workflows.model import Step
from taskloom.workflows.references import (
    Interpolation,
    Ref,
    ReferenceSyntaxError,
    dump_value,
    parse_value,
    resolve_value,
)
from taskloom.workflows.validation import check_workflow


@taskloom.task
def numbers(n: int) -> list[int]:
    return list(range(n))


@taskloom.task
def square(x: int) -> int:
    return x * x


@taskloom.task
def label(value: int) -> str:
    return str(value)


@taskloom.task
def shout(text: str) -> str:
    return text.upper()


TASKS = {t.name: t for t in (numbers, square, label, shout)}


def resolve(step: Step) -> TaskDefinition:
    if step.definition is not None:
        return step.definition
    if step.task not in TASKS:
        raise taskloom.UnknownTaskError(step.task, list(TASKS))
    return TASKS[step.task]


# --- references --------------------------------------------------------------------------


def test_a_whole_string_reference_becomes_a_ref_with_its_path() -> None:
    ref = parse_value("${steps.listing.result.paths[2].name}")
    assert ref == Ref("steps", "listing", ("paths", 2, "name"))
    assert ref.text == "${steps.listing.result.paths[2].name}"


def test_a_reference_inside_text_is_interpolated() -> None:
    value = parse_value("${inputs.folder}/out-${steps.a.result}.png")
    assert isinstance(value, Interpolation)
    resolved = resolve_value(value, lambda ref: "/data" if ref.source == "inputs" else 7)
    assert resolved == "/data/out-7.png"
    assert dump_value(value) == "${inputs.folder}/out-${steps.a.result}.png"


def test_references_nest_in_lists_and_objects_and_round_trip() -> None:
    data = {"a": ["${steps.x.result}", 3], "b": {"c": "${inputs.n}"}}
    parsed = parse_value(data)
    assert parsed["a"][0] == Ref("steps", "x")
    assert dump_value(parsed) == data
    assert resolve_value(parsed, lambda ref: ref.name) == {"a": ["x", 3], "b": {"c": "n"}}


@pytest.mark.parametrize(
    "text", ["${steps.x}", "${step.x.result}", "${inputs.}", "${steps.x.result.}"]
)
def test_an_unreadable_reference_says_what_is_expected(text: str) -> None:
    with pytest.raises(ReferenceSyntaxError, match="cannot read reference"):
        parse_value(text)


def test_following_a_path_names_what_is_missing() -> None:
    with pytest.raises(LookupError, match="no key 'b'"):
        Ref("steps", "x", ("b",)).follow({"a": 1})
    with pytest.raises(LookupError, match="index 5 is out of range"):
        Ref("steps", "x", (5,)).follow([1, 2])


# --- the data form -----------------------------------------------------------------------


def test_python_and_data_forms_are_one_model() -> None:
    wf = Workflow("squares", inputs={"n": int, "scale": (int, 2)})
    listing = wf.step(numbers, n=wf.input("n"))
    squares = wf.map(square, x=listing.result, concurrency=4, on_failure="continue")
    wf.step(label, value=squares.result[0], after=[listing], retries=2, timeout=5, priority=3)
    data = wf.to_dict()
    assert data["steps"]["square"] == {
        "task": f"{__name__}:square",
        "inputs": {"x": "${steps.numbers.result}"},
        "map": "x",
        "concurrency": 4,
        "on_failure": "continue",
    }
    assert data["inputs"]["scale"] == {"type": "integer", "default": 2}
    again = Workflow.from_dict(data)
    assert again.to_dict() == data
    assert again.steps["label"].dependencies == ["square", "numbers"]


def test_map_needs_over_when_several_inputs_could_be_mapped() -> None:
    wf = Workflow("ambiguous")
    with pytest.raises(WorkflowValidationError, match="over="):
        wf.map(square, x=[1, 2], y=[3])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"steps": {}}, "'name' is missing"),
        ({"name": "w", "steps": {"a": {"task": "numbers", "retry": 1}}}, "step 'a': unknown keys"),
        ({"name": "w", "steps": {"a": {"inputs": {}}}}, "step 'a': 'task' is missing"),
        ({"name": "w", "steps": {"a": {"task": "x", "timeout": "soon"}}}, "'timeout'"),
        ({"name": "w", "steps": {"a": {"task": "x", "inputs": {"n": "${nope}"}}}}, "step 'a'"),
    ],
)
def test_a_malformed_data_form_names_the_place(data: dict[str, object], message: str) -> None:
    with pytest.raises(WorkflowValidationError, match=message.replace("(", r"\(")):
        Workflow.from_dict(data)


# --- validation ----------------------------------------------------------------------------


def test_a_valid_workflow_resolves_every_step() -> None:
    wf = Workflow("ok")
    listing = wf.step("numbers", n=3, name="listing")
    wf.map("square", x=listing.result, name="squares")
    assert set(check_workflow(wf, resolve)) == {"listing", "squares"}


def test_a_missing_required_input_is_named() -> None:
    wf = Workflow("missing")
    wf.step(square, name="lonely")
    with pytest.raises(WorkflowValidationError, match="step 'lonely': input 'x': missing"):
        check_workflow(wf, resolve)


def test_an_unknown_input_is_named() -> None:
    wf = Workflow("extra")
    wf.step(square, x=1, y=2, name="extra_input")
    with pytest.raises(WorkflowValidationError, match="step 'extra_input': input 'y'"):
        check_workflow(wf, resolve)


def test_a_map_over_a_list_of_the_wrong_items_is_rejected() -> None:
    wf = Workflow("items")
    words = wf.step(shout, text="a", name="words")
    wf.map(square, x=words.result, name="squares")
    with pytest.raises(WorkflowValidationError, match=r"step 'squares'.*gives string"):
        check_workflow(wf, resolve)


def test_an_optional_dependency_must_be_a_dependency() -> None:
    wf = Workflow("optional")
    wf.step(numbers, n=1, name="a")
    wf.step(numbers, n=1, name="b", optional=["a"])
    with pytest.raises(WorkflowValidationError, match=r"step 'b'.*'a' is optional"):
        check_workflow(wf, resolve)


def test_an_undeclared_workflow_input_is_rejected() -> None:
    wf = Workflow("inputs")
    wf.step(numbers, n="${inputs.count}", name="a")
    with pytest.raises(WorkflowValidationError, match="undeclared workflow input"):
        check_workflow(wf, resolve)


def test_integers_may_feed_numbers_but_text_may_not_feed_integers() -> None:
    wf = Workflow("numbers")
    listing = wf.step(numbers, n=2, name="listing")
    wf.step(square, x=listing.result[0], name="fine")
    check_workflow(wf, resolve)
    wf.step(square, x=wf.step(label, value=1, name="text").result, name="bad")
    with pytest.raises(WorkflowValidationError, match="step 'bad'"):
        check_workflow(wf, resolve)


def test_a_map_over_something_that_is_not_a_list_is_rejected() -> None:
    wf = Workflow("scalar")
    wf.map(square, x=[1, 2], over="x", name="fine")
    check_workflow(wf, resolve)
    wf.map(square, x=3, over="x", name="scalar")
    with pytest.raises(WorkflowValidationError, match=r"step 'scalar': input 'x': a map needs"):
        check_workflow(wf, resolve)
