"""The `TokenStore` contract, on every backend: memory, a SQLite file and PostgreSQL."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from conformance.records import T0
from taskloom.exceptions import StoreError
from taskloom.store import ApiTokenRecord, TokenStore

if TYPE_CHECKING:
    from conftest import Backend


@pytest.fixture
def store(backend: Backend) -> TokenStore:
    """The backend's store, as a `TokenStore`."""
    return backend.open()


def test_api_tokens_are_found_by_hash_listed_and_revoked_once(store: TokenStore) -> None:
    first = ApiTokenRecord(id="t1", name="ci", role="operator", token_hash="a" * 64, created_at=T0)
    second = ApiTokenRecord(
        id="t2", name="desk", role="viewer", token_hash="b" * 64, created_at=T0 + 1
    )
    store.add_api_token(second)
    store.add_api_token(first)
    assert store.find_api_token("a" * 64) == first
    assert store.find_api_token("c" * 64) is None
    assert [t.id for t in store.list_api_tokens()] == ["t1", "t2"]

    assert store.revoke_api_token("t1", revoked_at=T0 + 5) is True
    assert store.revoke_api_token("t1") is False  # revoked already
    assert store.revoke_api_token("missing") is False
    found = store.find_api_token("a" * 64)
    assert found is not None
    assert found.revoked_at == T0 + 5
    assert store.list_api_tokens()[1].revoked_at is None


def test_an_api_token_id_or_hash_is_never_taken_twice(store: TokenStore) -> None:
    record = ApiTokenRecord(id="t1", name="a", role="admin", token_hash="a" * 64, created_at=T0)
    store.add_api_token(record)
    same_id = ApiTokenRecord(id="t1", name="b", role="admin", token_hash="b" * 64, created_at=T0)
    with pytest.raises(StoreError, match="exists already"):
        store.add_api_token(same_id)
    same_hash = ApiTokenRecord(id="t2", name="b", role="admin", token_hash="a" * 64, created_at=T0)
    with pytest.raises(StoreError):
        store.add_api_token(same_hash)
    assert [t.id for t in store.list_api_tokens()] == ["t1"]


def test_another_store_sees_a_token_and_its_revocation(shared_backend: Backend) -> None:
    one: TokenStore = shared_backend.open()
    two: TokenStore = shared_backend.open()
    one.add_api_token(
        ApiTokenRecord(id="t1", name="ci", role="viewer", token_hash="a" * 64, created_at=T0)
    )
    found = two.find_api_token("a" * 64)
    assert found is not None
    assert found.revoked_at is None
    assert two.revoke_api_token("t1", revoked_at=T0 + 1) is True
    revoked = one.find_api_token("a" * 64)
    assert revoked is not None
    assert revoked.revoked_at == T0 + 1
    assert one.revoke_api_token("t1") is False
