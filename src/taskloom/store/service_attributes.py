"""Store methods for the live attributes of service classes, on the SQL and in-memory
backends (`ServiceAttributeStore`).

Kept apart from `sql.py` and `memory.py` (which take them in as mixins), as the schedule
methods are: they share nothing with runs but the connection. Values are JSON text in
the database and JSON-compatible values in memory, so both backends give back the same.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pydantic_core import PydanticSerializationError, to_json
from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Engine

from ..exceptions import StoreError
from .base import ServiceAttributeChange, ServiceAttributeRecord
from .schema import service_attribute_changes, service_attributes

__all__ = ["MemoryServiceAttributes", "SqlServiceAttributes"]

#: The most changes one read returns, whatever `limit` asks for.
MAX_CHANGES = 1000


def _encoded(service: str, values: Mapping[str, Any]) -> dict[str, str]:
    """Each value as JSON text; a value JSON cannot hold is refused, naming it."""
    encoded = {}
    for name, value in values.items():
        try:
            encoded[name] = to_json(value).decode()
        except PydanticSerializationError as exc:
            raise StoreError(
                f"could not save attribute {name!r} of service {service!r}: "
                f"the value is not JSON: {exc}"
            ) from exc
    return encoded


def _record_from_row(row: Sequence[Any]) -> ServiceAttributeRecord:
    service, name, value, updated_at, updated_by = row
    return ServiceAttributeRecord(
        service=service,
        name=name,
        value=json.loads(value),
        updated_at=updated_at,
        updated_by=updated_by,
    )


def _change_from_row(row: Sequence[Any]) -> ServiceAttributeChange:
    change_id, service, name, value, changed_at, changed_by = row
    return ServiceAttributeChange(
        id=change_id,
        service=service,
        name=name,
        value=json.loads(value),
        changed_at=changed_at,
        changed_by=changed_by,
    )


_ATTRIBUTE_READ = tuple(service_attributes.c)
_CHANGE_READ = tuple(service_attribute_changes.c)


def _dialect(engine: Engine) -> Any:
    """The dialect module whose `insert` has `on_conflict_do_*`."""
    return pg_dialect if engine.dialect.name == "postgresql" else sqlite_dialect


class SqlServiceAttributes:
    """The attribute methods of `SqlStore`."""

    if TYPE_CHECKING:

        def _use(self, what: str) -> AbstractContextManager[Engine]: ...

        def _writer(self) -> Engine: ...

    def declare_service_attributes(
        self, service: str, defaults: Mapping[str, Any], *, declared_at: float
    ) -> list[ServiceAttributeRecord]:
        encoded = _encoded(service, defaults)
        table = service_attributes
        mine = table.c.service == service
        with self._use("declare service attributes") as engine, self._writer().begin() as conn:
            stored = {row.name: row for row in conn.execute(select(*_ATTRIBUTE_READ).where(mine))}
            gone = sorted(set(stored) - set(encoded))
            if gone:
                conn.execute(delete(table).where(mine, table.c.name.in_(gone)))
            added = [
                {
                    "service": service,
                    "name": name,
                    "value": value,
                    "updated_at": declared_at,
                    "updated_by": None,
                }
                for name, value in encoded.items()
                if name not in stored
            ]
            if added:
                # Another process declaring the same class at once may have added them.
                conn.execute(_dialect(engine).insert(table).on_conflict_do_nothing(), added)
            for name, value in encoded.items():
                row = stored.get(name)
                if row is not None and row.updated_by is None and row.value != value:
                    conn.execute(
                        update(table)
                        .where(mine, table.c.name == name, table.c.updated_by.is_(None))
                        .values(value=value, updated_at=declared_at)
                    )
            rows = conn.execute(select(*_ATTRIBUTE_READ).where(mine).order_by(table.c.name))
            return [_record_from_row(r) for r in rows]

    def set_service_attributes(
        self,
        service: str,
        values: Mapping[str, Any],
        *,
        changed_at: float,
        changed_by: str,
        record: bool = True,
    ) -> None:
        encoded = _encoded(service, values)
        if not encoded:
            return
        rows = [
            {
                "service": service,
                "name": name,
                "value": value,
                "updated_at": changed_at,
                "updated_by": changed_by,
            }
            for name, value in encoded.items()
        ]
        with self._use("save service attributes") as engine, self._writer().begin() as conn:
            stmt = _dialect(engine).insert(service_attributes)
            stmt = stmt.on_conflict_do_update(
                index_elements=["service", "name"],
                set_={k: stmt.excluded[k] for k in ("value", "updated_at", "updated_by")},
            )
            conn.execute(stmt, rows)
            if record:
                conn.execute(
                    insert(service_attribute_changes),
                    [
                        {
                            "service": service,
                            "name": name,
                            "value": value,
                            "changed_at": changed_at,
                            "changed_by": changed_by,
                        }
                        for name, value in encoded.items()
                    ],
                )

    def get_service_attributes(self, service: str) -> list[ServiceAttributeRecord]:
        table = service_attributes
        query = select(*_ATTRIBUTE_READ).where(table.c.service == service).order_by(table.c.name)
        with self._use("read service attributes") as engine, engine.connect() as conn:
            rows = conn.execute(query).all()
        return [_record_from_row(r) for r in rows]

    def get_service_attribute_changes(
        self, service: str, *, limit: int = 100
    ) -> list[ServiceAttributeChange]:
        limit = min(limit, MAX_CHANGES)
        if limit <= 0:
            return []
        table = service_attribute_changes
        query = (
            select(*_CHANGE_READ)
            .where(table.c.service == service)
            .order_by(table.c.id.desc())
            .limit(limit)
        )
        with self._use("read service attribute changes") as engine, engine.connect() as conn:
            rows = conn.execute(query).all()
        return [_change_from_row(r) for r in rows]


class MemoryServiceAttributes:
    """The attribute methods of `MemoryStore`."""

    _lock: AbstractContextManager[Any]
    _service_attributes: dict[str, dict[str, ServiceAttributeRecord]]
    _service_attribute_changes: list[ServiceAttributeChange]

    def declare_service_attributes(
        self, service: str, defaults: Mapping[str, Any], *, declared_at: float
    ) -> list[ServiceAttributeRecord]:
        encoded = _encoded(service, defaults)  # the same check, and values as JSON gives back
        with self._lock:
            stored = self._service_attributes.setdefault(service, {})
            for name in set(stored) - set(encoded):
                del stored[name]
            for name, text in encoded.items():
                row = stored.get(name)
                if row is None or (row.updated_by is None and to_json(row.value).decode() != text):
                    stored[name] = ServiceAttributeRecord(
                        service=service,
                        name=name,
                        value=json.loads(text),
                        updated_at=declared_at,
                        updated_by=None,
                    )
            if not stored:
                del self._service_attributes[service]
            return copy.deepcopy([stored[n] for n in sorted(stored)])

    def set_service_attributes(
        self,
        service: str,
        values: Mapping[str, Any],
        *,
        changed_at: float,
        changed_by: str,
        record: bool = True,
    ) -> None:
        encoded = _encoded(service, values)
        if not encoded:
            return
        with self._lock:
            stored = self._service_attributes.setdefault(service, {})
            changes = self._service_attribute_changes
            for name, text in encoded.items():
                value = json.loads(text)
                stored[name] = ServiceAttributeRecord(
                    service=service,
                    name=name,
                    value=value,
                    updated_at=changed_at,
                    updated_by=changed_by,
                )
                if record:
                    change = ServiceAttributeChange(
                        service=service,
                        name=name,
                        value=copy.deepcopy(value),
                        changed_at=changed_at,
                        changed_by=changed_by,
                        id=len(changes) + 1,
                    )
                    changes.append(change)

    def get_service_attributes(self, service: str) -> list[ServiceAttributeRecord]:
        with self._lock:
            stored = self._service_attributes.get(service, {})
            return copy.deepcopy([stored[n] for n in sorted(stored)])

    def get_service_attribute_changes(
        self, service: str, *, limit: int = 100
    ) -> list[ServiceAttributeChange]:
        limit = min(limit, MAX_CHANGES)
        if limit <= 0:
            return []
        with self._lock:
            mine = [c for c in reversed(self._service_attribute_changes) if c.service == service]
            return [replace(c, value=copy.deepcopy(c.value)) for c in mine[:limit]]
