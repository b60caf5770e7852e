"""The `PackageStore` contract, on every backend: memory, a SQLite file and PostgreSQL."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from taskloom.exceptions import StoreError
from taskloom.store import PackageRecord, PackageStore

if TYPE_CHECKING:
    from conftest import Backend


@pytest.fixture
def store(backend: Backend) -> PackageStore:
    """The backend's store, as a `PackageStore`."""
    return backend.open()


def make_package(**fields: object) -> PackageRecord:
    values: dict[str, object] = {"name": "mypkg", "state": "pending", "source": "./mypkg"}
    values.update(fields)
    return PackageRecord(**values)  # type: ignore[arg-type]


def test_every_field_round_trips(store: PackageStore) -> None:
    record = make_package(
        state="ready",
        version="1.0",
        venv="/venvs/mypkg-1.0",
        python="/venvs/mypkg-1.0/bin/python",
        root="/venvs/mypkg-1.0/lib/mypkg",
        manifest_kind="fractal",
        manifest={"manifest_version": "2", "task_list": [{"name": "Threshold"}]},
        frozen="mypkg==1.0\npydantic==2.7.0",
        pip_args=["--no-index", "--find-links", "/wheels"],
        log="Collecting mypkg\nSuccessfully installed mypkg-1.0\n",
        error=None,
        created_at=1.5,
        updated_at=2.5,
    )
    store.save_package(record)
    assert store.get_package("mypkg") == record


def test_save_replaces_and_lists_by_name(store: PackageStore) -> None:
    store.save_package(make_package(name="zeta"))
    store.save_package(make_package(name="alpha", state="installing"))
    store.save_package(make_package(name="alpha", state="failed", error="pip failed"))
    listed = store.list_packages()
    assert [(p.name, p.state, p.error) for p in listed] == [
        ("alpha", "failed", "pip failed"),
        ("zeta", "pending", None),
    ]


def test_delete_forgets_a_package(store: PackageStore) -> None:
    store.save_package(make_package())
    assert store.delete_package("mypkg") is True
    assert store.get_package("mypkg") is None
    assert store.delete_package("mypkg") is False
    assert store.list_packages() == []


def test_a_manifest_that_is_not_json_is_a_store_error(store: PackageStore) -> None:
    with pytest.raises(StoreError, match="not JSON"):
        store.save_package(make_package(manifest={"bad": object()}))
    assert store.get_package("mypkg") is None


def test_another_store_sees_a_package_saved_and_deleted(shared_backend: Backend) -> None:
    one: PackageStore = shared_backend.open()
    two: PackageStore = shared_backend.open()
    one.save_package(make_package(state="installing"))
    one.save_package(make_package(state="ready", version="1.0"))
    assert two.get_package("mypkg") == make_package(state="ready", version="1.0")
    assert two.delete_package("mypkg") is True
    assert one.list_packages() == []
