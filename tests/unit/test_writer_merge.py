"""How the batch writer folds changes of one attempt made within one batch."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from taskloom.engine.writer import _attempt_change
from taskloom.runs import Attempt


def test_an_attempt_started_and_ended_in_one_batch_keeps_what_its_start_recorded() -> None:
    # Every field of the start set to something of its own, whatever fields it has.
    values: dict[str, Any] = {"run_id": "run-1", "number": 1, "started_at": 1.0}
    start = Attempt(
        **{
            f.name: values.get(f.name, f"{f.name} of the start")
            for f in fields(Attempt)
            if f.name not in ("finished_at", "error")
        }
    )
    new = {("run-1", 1): start}
    updates: dict[tuple[str, int], dict[str, Any]] = {}
    _attempt_change(
        new, updates, ("run-1", 1), {"finished_at": 2.0, "status": "cancelled", "error": None}
    )
    assert new[("run-1", 1)] == replace(start, finished_at=2.0, status="cancelled")
    assert updates == {}


def test_changes_of_an_attempt_started_in_an_earlier_batch_are_merged() -> None:
    updates: dict[tuple[str, int], dict[str, Any]] = {}
    _attempt_change({}, updates, ("run-1", 1), {"status": "failed"})
    _attempt_change({}, updates, ("run-1", 1), {"finished_at": 3.0})
    assert updates == {("run-1", 1): {"status": "failed", "finished_at": 3.0}}
