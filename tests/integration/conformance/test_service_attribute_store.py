"""The `ServiceAttributeStore` contract, on every backend: memory, a SQLite file and
PostgreSQL.

The current values of the attributes of service classes (defaults declared, values set by
someone kept across declarations), their history of changes, and who asked for a request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from conformance.records import T0
from taskloom.exceptions import StoreError
from taskloom.store import ServiceAttributeRecord, ServiceStore

if TYPE_CHECKING:
    from conftest import Backend


@pytest.fixture
def store(backend: Backend) -> ServiceStore:
    """The backend's store, as a `ServiceStore` (attributes are part of it)."""
    return backend.open()


def _values(records: list[ServiceAttributeRecord]) -> dict[str, object]:
    return {r.name: r.value for r in records}


def test_declared_defaults_are_stored_with_nobody_as_their_author(store: ServiceStore) -> None:
    declared = store.declare_service_attributes(
        "Sensor", {"rate": 1.5, "label": "héllo", "ports": [1, 2]}, declared_at=T0
    )
    assert [r.name for r in declared] == ["label", "ports", "rate"]
    assert all(r.updated_by is None and r.updated_at == T0 for r in declared)
    assert store.get_service_attributes("Sensor") == declared
    assert _values(declared) == {"rate": 1.5, "label": "héllo", "ports": [1, 2]}
    assert store.get_service_attributes("Other") == []


def test_a_value_someone_set_survives_a_new_declaration(store: ServiceStore) -> None:
    store.declare_service_attributes("Sensor", {"rate": 1.0, "gain": 2}, declared_at=T0)
    store.set_service_attributes("Sensor", {"rate": 4.0}, changed_at=T0 + 1, changed_by="cli:alice")
    # The next process declares new defaults, a new attribute, and drops `gain`.
    again = store.declare_service_attributes(
        "Sensor", {"rate": 9.0, "mode": "fast"}, declared_at=T0 + 2
    )
    by_name = {r.name: r for r in again}
    assert set(by_name) == {"mode", "rate"}
    assert by_name["rate"] == ServiceAttributeRecord(
        service="Sensor", name="rate", value=4.0, updated_at=T0 + 1, updated_by="cli:alice"
    )
    assert (by_name["mode"].value, by_name["mode"].updated_by) == ("fast", None)


def test_a_default_still_unset_takes_the_new_default(store: ServiceStore) -> None:
    store.declare_service_attributes("Sensor", {"rate": 1.0}, declared_at=T0)
    again = store.declare_service_attributes("Sensor", {"rate": 2.0}, declared_at=T0 + 5)
    assert [(r.value, r.updated_at, r.updated_by) for r in again] == [(2.0, T0 + 5, None)]
    same = store.declare_service_attributes("Sensor", {"rate": 2.0}, declared_at=T0 + 9)
    assert [(r.value, r.updated_at) for r in same] == [(2.0, T0 + 5)]


def test_changes_are_kept_newest_first_with_who_made_them(store: ServiceStore) -> None:
    store.declare_service_attributes("Sensor", {"rate": 1.0, "on": True}, declared_at=T0)
    store.set_service_attributes(
        "Sensor", {"rate": 2.0, "on": False}, changed_at=T0 + 1, changed_by="token:ops"
    )
    store.set_service_attributes("Sensor", {"rate": 3.0}, changed_at=T0 + 2, changed_by="http")
    store.set_service_attributes("Other", {"x": 1}, changed_at=T0 + 3, changed_by="http")
    changes = store.get_service_attribute_changes("Sensor")
    # One change a value, in the order they were given.
    assert [(c.name, c.value, c.changed_at, c.changed_by) for c in changes] == [
        ("rate", 3.0, T0 + 2, "http"),
        ("on", False, T0 + 1, "token:ops"),
        ("rate", 2.0, T0 + 1, "token:ops"),
    ]
    ids = [c.id for c in changes if c.id is not None]
    assert len(ids) == 3
    assert ids == sorted(ids, reverse=True)
    assert [c.value for c in store.get_service_attribute_changes("Sensor", limit=1)] == [3.0]
    assert store.get_service_attribute_changes("Sensor", limit=0) == []
    current = {r.name: (r.value, r.updated_by) for r in store.get_service_attributes("Sensor")}
    assert current == {"rate": (3.0, "http"), "on": (False, "token:ops")}


def test_a_value_set_without_record_is_current_but_not_in_the_history(
    store: ServiceStore,
) -> None:
    store.declare_service_attributes("Sensor", {"reading": 0.0}, declared_at=T0)
    store.set_service_attributes(
        "Sensor", {"reading": 21.5}, changed_at=T0 + 1, changed_by="service", record=False
    )
    assert store.get_service_attribute_changes("Sensor") == []
    [reading] = store.get_service_attributes("Sensor")
    assert (reading.value, reading.updated_by, reading.updated_at) == (21.5, "service", T0 + 1)


def test_a_value_json_cannot_hold_is_refused_naming_it(store: ServiceStore) -> None:
    with pytest.raises(StoreError, match="attribute 'handle' of service 'Sensor'"):
        store.set_service_attributes(
            "Sensor", {"handle": object()}, changed_at=T0, changed_by="http"
        )
    assert store.get_service_attributes("Sensor") == []


def test_a_request_keeps_who_asked(store: ServiceStore) -> None:
    asked = store.add_service_request(
        "Sensor", "set", {"rate": 2.0}, requested_at=T0, requested_by="cli:alice"
    )
    anonymous = store.add_service_request("sensor", "start", requested_at=T0)
    request = store.get_service_request(asked)
    assert request is not None
    assert (request.action, request.config, request.requested_by) == (
        "set",
        {"rate": 2.0},
        "cli:alice",
    )
    other = store.get_service_request(anonymous)
    assert other is not None
    assert other.requested_by is None
    assert [r.requested_by for r in store.pending_service_requests()] == ["cli:alice", None]
