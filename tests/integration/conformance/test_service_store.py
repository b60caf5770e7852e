"""The `ServiceStore` contract, on every backend: memory, a SQLite file and PostgreSQL.

Service records and their starts, requests left by other processes, service log lines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from conformance.records import T0, Point
from taskloom.exceptions import StoreError
from taskloom.runs import ErrorInfo
from taskloom.store import ServiceLogLine, ServiceRecord, ServiceStartRecord, ServiceStore

if TYPE_CHECKING:
    from conftest import Backend


@pytest.fixture
def store(backend: Backend) -> ServiceStore:
    """The backend's store, as a `ServiceStore`."""
    return backend.open()


# --- records and starts -------------------------------------------------------------------


def make_service(**fields: Any) -> ServiceRecord:
    fields.setdefault("name", "sensor")
    fields.setdefault("state", "failed")
    fields.setdefault("since", T0 + 5.5)
    fields.setdefault("updated_at", T0 + 5.5)
    return ServiceRecord(**fields)


def test_service_record_round_trips(store: ServiceStore) -> None:
    record = make_service(
        starts=6,
        restarts=5,
        restart_times=[T0 + 1.0, T0 + 2.25],
        last_error=ErrorInfo("RuntimeError", "unplugged", traceback="Traceback ..."),
        stop_timed_out=True,
        config={"period": 0.5, "ports": [1, 2], "name": "héllo"},
    )
    store.save_service(record)
    assert store.get_service("sensor") == record
    minimal = make_service(name="idle", state="stopped")
    store.save_service(minimal)
    got = store.get_service("idle")
    assert got == minimal
    assert got is not None
    assert (got.starts, got.restart_times, got.last_error, got.config) == (0, [], None, None)


def test_saving_a_service_again_replaces_its_record(store: ServiceStore) -> None:
    store.save_service(make_service(state="running", starts=1, config={"a": 1}))
    later = make_service(state="stopped", starts=2, restarts=1, last_error=None, config=None)
    store.save_service(later)
    assert store.get_service("sensor") == later
    assert [r.name for r in store.list_services()] == ["sensor"]


def test_services_are_listed_by_name_and_unknown_is_none(store: ServiceStore) -> None:
    assert store.get_service("nothing") is None
    assert store.list_services() == []
    assert store.get_service_starts("nothing") == []
    for name in ("b", "c", "a"):
        store.save_service(make_service(name=name))
    assert [r.name for r in store.list_services()] == ["a", "b", "c"]


def test_service_config_is_stored_as_json(store: ServiceStore) -> None:
    store.save_service(make_service(config={"pair": (1, 2), "point": Point(x=1, y=2)}))
    got = store.get_service("sensor")
    assert got is not None
    assert got.config == {"pair": [1, 2], "point": {"x": 1, "y": 2}}
    with pytest.raises(StoreError, match="not JSON"):
        store.save_service(make_service(name="bad", config={"thing": object()}))
    assert store.get_service("bad") is None


def test_service_starts_are_upserted_and_read_newest_first(store: ServiceStore) -> None:
    error = ErrorInfo("RuntimeError", "boom", traceback="Traceback ...")
    first = ServiceStartRecord(number=1, started_at=T0)
    store.save_service_start("sensor", first)
    assert store.get_service_starts("sensor") == [first]
    ended = ServiceStartRecord(
        number=1, started_at=T0, finished_at=T0 + 0.5, exit_reason="failed", error=error
    )
    store.save_service_start("sensor", ended)
    second = ServiceStartRecord(number=2, started_at=T0 + 1.5, restart=True)
    store.save_service_start("sensor", second)
    store.save_service_start("other", ServiceStartRecord(number=1, started_at=T0 + 9))
    assert store.get_service_starts("sensor") == [second, ended]
    assert store.get_service_starts("sensor", limit=1) == [second]
    assert store.get_service_starts("sensor", limit=0) == []
    assert [s.started_at for s in store.get_service_starts("other")] == [T0 + 9]


def test_another_store_sees_the_services(shared_backend: Backend) -> None:
    writer: ServiceStore = shared_backend.open()
    record = make_service(starts=3, restart_times=[T0])
    writer.save_service(record)
    start = ServiceStartRecord(number=3, started_at=T0, restart=True)
    writer.save_service_start("sensor", start)
    reader: ServiceStore = shared_backend.open()
    assert reader.get_service("sensor") == record
    assert reader.get_service_starts("sensor") == [start]


# --- requests and log lines ---------------------------------------------------------------


def test_service_requests_wait_until_finished(store: ServiceStore) -> None:
    first = store.add_service_request("sensor", "start", {"period": 0.5}, requested_at=T0)
    second = store.add_service_request("sensor", "stop")
    assert second > first
    pending = store.pending_service_requests()
    assert [(r.id, r.service, r.action) for r in pending] == [
        (first, "sensor", "start"),
        (second, "sensor", "stop"),
    ]
    assert pending[0].config == {"period": 0.5}
    assert pending[0].requested_at == T0
    assert pending[0].handled_at is None
    assert pending[0].outcome is None
    assert pending[1].config is None

    assert store.finish_service_request(first, {"ok": True, "state": "running"}, handled_at=T0 + 1)
    assert [r.id for r in store.pending_service_requests()] == [second]
    done = store.get_service_request(first)
    assert done is not None
    assert done.handled_at == T0 + 1
    assert done.outcome == {"ok": True, "state": "running"}
    assert store.get_service_request(10_000) is None
    # A second answer (another serving process, later) changes nothing: the first stands.
    assert not store.finish_service_request(first, {"ok": False}, handled_at=T0 + 2)
    again = store.get_service_request(first)
    assert again is not None
    assert (again.handled_at, again.outcome) == (T0 + 1, {"ok": True, "state": "running"})
    assert not store.finish_service_request(10_000, {"ok": True})


def test_only_an_unhandled_service_request_can_be_withdrawn(store: ServiceStore) -> None:
    waiting = store.add_service_request("sensor", "restart", [1, (2, 3)])
    handled = store.add_service_request("sensor", "stop")
    store.finish_service_request(handled, {"ok": True})
    request = store.get_service_request(waiting)
    assert request is not None
    assert request.config == [1, [2, 3]]
    assert store.cancel_service_request(waiting) is True
    assert store.get_service_request(waiting) is None
    assert store.cancel_service_request(waiting) is False
    assert store.cancel_service_request(handled) is False
    assert store.get_service_request(handled) is not None
    assert store.pending_service_requests() == []


def test_service_request_config_that_is_not_json_is_a_store_error(store: ServiceStore) -> None:
    with pytest.raises(StoreError):
        store.add_service_request("sensor", "start", {"x": object()})
    assert store.pending_service_requests() == []


def test_service_logs_are_kept_per_service_and_paged_by_id(store: ServiceStore) -> None:
    def line(service: str, i: int) -> ServiceLogLine:
        return ServiceLogLine(
            service=service, start_number=1 + i // 3, created_at=T0 + i, level="INFO",
            message=f"line {i}",
        )  # fmt: skip

    store.add_service_log_lines([])
    store.add_service_log_lines([line("a", i) for i in range(5)] + [line("b", 0)])
    store.add_service_log_lines([line("a", 5)])
    lines = store.get_service_logs("a")
    assert [g.message for g in lines] == [f"line {i}" for i in range(6)]
    assert [g.start_number for g in lines] == [1, 1, 1, 2, 2, 2]
    assert lines[0].created_at == T0
    assert lines[0].level == "INFO"
    ids = [g.id for g in lines if g.id is not None]
    assert len(ids) == len(lines)  # every line has an id
    assert ids == sorted(ids)
    assert len(set(ids)) == 6
    after = store.get_service_logs("a", after_id=lines[1].id or 0, limit=2)
    assert [g.message for g in after] == ["line 2", "line 3"]
    assert store.get_service_logs("a", limit=0) == []
    assert [g.message for g in store.get_service_logs("b")] == ["line 0"]
    assert store.get_service_logs("nobody") == []
