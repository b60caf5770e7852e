"""A run's record: `Run.copy` copies every field, whatever fields `Run` has."""

from __future__ import annotations

from dataclasses import fields

from taskloom.runs import Run


def test_a_copy_has_every_field_of_the_run_and_is_another_object() -> None:
    # Each field set to an object of its own, so that a field left out (or copied from
    # another) shows.
    values = {f.name: object() for f in fields(Run)}
    run = Run(**values)  # type: ignore[arg-type]
    copy = run.copy()
    assert copy is not run
    assert type(copy) is Run
    for name, value in values.items():
        assert getattr(copy, name) is value, name
    copy.status = "changed"  # type: ignore[assignment]
    assert run.status is values["status"]
