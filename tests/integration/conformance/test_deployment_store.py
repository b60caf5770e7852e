"""The `DeploymentStore` contract, on every backend: memory, a SQLite file and PostgreSQL.

Deployments of stream pipelines, their stop requests and the saved status of their stages.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from taskloom.runs import ErrorInfo
from taskloom.store import DeploymentPartRecord, DeploymentRecord, DeploymentStore, StageRecord

if TYPE_CHECKING:
    from conftest import Backend


@pytest.fixture
def store(backend: Backend) -> DeploymentStore:
    """The backend's store, as a `DeploymentStore`."""
    return backend.open()


def record(name: str = "demo", **fields: object) -> DeploymentRecord:
    values: dict[str, object] = {
        "name": name,
        "pipeline": "demo",
        "state": "running",
        "bus": "memory://",
        "started_at": 1000.0,
        "topics": {"sums": {"producers": [{"stage": "adder"}], "consumers": []}},
        "updated_at": 1000.5,
    }
    values.update(fields)
    return DeploymentRecord(**values)  # type: ignore[arg-type]


def test_a_deployment_is_saved_replaced_and_listed(store: DeploymentStore) -> None:
    assert store.get_deployment("demo") is None
    store.save_deployment(record())
    store.save_deployment(record("other", bus="nats://127.0.0.1:4222"))
    assert store.get_deployment("demo") == record()
    store.save_deployment(record(state="stopped", stopped_at=1010.0))
    saved = store.get_deployment("demo")
    assert saved is not None
    assert (saved.state, saved.stopped_at) == ("stopped", 1010.0)
    assert [r.name for r in store.list_deployments()] == ["demo", "other"]


def test_a_stop_request_is_kept_until_the_record_is_saved_again(store: DeploymentStore) -> None:
    assert store.request_deployment_stop("demo") is False
    store.save_deployment(record())
    assert store.request_deployment_stop("demo") is True
    saved = store.get_deployment("demo")
    assert saved is not None
    assert saved.stop_requested
    store.save_deployment(record())
    saved = store.get_deployment("demo")
    assert saved is not None
    assert not saved.stop_requested


def test_stage_records_are_upserted_per_stage(store: DeploymentStore) -> None:
    error = ErrorInfo(type="ValueError", message="bad", traceback="tb")
    first = StageRecord(
        deployment="demo", stage="adder", task="adder", state="running", messages_in=3
    )
    second = StageRecord(
        deployment="demo",
        stage="printer",
        task="mod.printer",
        state="restarting",
        messages_in=2,
        messages_out=0,
        dropped=1,
        errors=1,
        restarts=1,
        last_timestamp=1_795_000_000_123,
        last_error=error,
        updated_at=5.0,
    )
    store.save_stage_records("demo", [second, first])
    assert store.get_stage_records("demo") == [first, second]
    store.save_stage_records(
        "demo",
        [
            StageRecord(
                deployment="demo", stage="adder", task="adder", state="stopped", messages_in=9
            )
        ],
    )
    stages = store.get_stage_records("demo")
    assert [(s.stage, s.state, s.messages_in) for s in stages] == [
        ("adder", "stopped", 9),
        ("printer", "restarting", 2),
    ]
    assert store.get_stage_records("other") == []
    store.save_stage_records("demo", [])


def test_another_store_on_the_same_database_sees_it(shared_backend: Backend) -> None:
    one: DeploymentStore = shared_backend.open()
    two: DeploymentStore = shared_backend.open()
    one.save_deployment(record())
    assert two.request_deployment_stop("demo")
    saved = one.get_deployment("demo")
    assert saved is not None
    assert saved.stop_requested


def part(name: str, *stages: str, **fields: object) -> DeploymentPartRecord:
    now = time.time()
    values: dict[str, object] = {
        "deployment": "demo",
        "part": name,
        "host": "box",
        "pid": 100,
        "stages": list(stages),
        "state": "running",
        "started_at": now,
        "updated_at": now,
        "status_interval": 0.5,
    }
    values.update(fields)
    return DeploymentPartRecord(**values)  # type: ignore[arg-type]


def test_a_deployment_over_two_parts_stops_when_both_have(store: DeploymentStore) -> None:
    first = store.join_deployment(record(stages=[{"name": "adder"}]), part("p1", "adder"))
    assert (first.state, first.stop_requested, first.stages) == (
        "running",
        False,
        [{"name": "adder"}],
    )
    # A second process joins: the record stays the first one's, the stop request too.
    assert store.request_deployment_stop("demo")
    joined = store.join_deployment(record(pipeline="other", topics={}), part("p2", "printer"))
    assert (joined.pipeline, joined.stop_requested, joined.stages) == (
        "demo",
        True,
        [{"name": "adder"}],
    )
    parts = store.get_deployment_parts("demo")
    assert [(p.part, p.stages, p.state) for p in parts] == [
        ("p1", ["adder"], "running"),
        ("p2", ["printer"], "running"),
    ]
    assert store.leave_deployment("demo", "p1", stopped_at=2000.0) == "running"
    saved = store.get_deployment("demo")
    assert saved is not None
    assert (saved.state, saved.stopped_at) == ("running", None)
    assert store.leave_deployment("demo", "p2", stopped_at=2001.0) == "stopped"
    saved = store.get_deployment("demo")
    assert saved is not None
    assert (saved.state, saved.stopped_at) == ("stopped", 2001.0)
    assert [(p.part, p.state, p.stopped_at) for p in store.get_deployment_parts("demo")] == [
        ("p1", "stopped", 2000.0),
        ("p2", "stopped", 2001.0),
    ]
    # Joined again once stopped: a fresh deployment, no stop requested.
    again = store.join_deployment(record(pipeline="other"), part("p3", "adder"))
    assert (again.pipeline, again.stop_requested) == ("other", False)


def test_a_lost_part_keeps_nothing_running(store: DeploymentStore) -> None:
    long_ago = time.time() - 3600
    store.join_deployment(record(), part("dead", "adder", updated_at=long_ago))
    # The dead process's part still says running, but it has not been heard from.
    fresh = store.join_deployment(record(pipeline="new"), part("alive", "printer"))
    assert fresh.pipeline == "new"
    assert store.leave_deployment("demo", "alive", stopped_at=5.0) == "stopped"
    assert store.leave_deployment("missing", "alive", stopped_at=5.0) == "stopped"
    assert store.get_deployment_parts("missing") == []


def test_a_part_saves_its_status(store: DeploymentStore) -> None:
    store.join_deployment(record(), part("p1", "adder"))
    later = part("p1", "adder", updated_at=time.time() + 1, pid=7)
    store.save_deployment_part(later)
    assert store.get_deployment_parts("demo") == [later]
