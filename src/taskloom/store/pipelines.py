"""Store methods for stream pipelines, on the SQL and in-memory backends.

Kept apart from `sql.py` and `memory.py` (which take them in as mixins) because they
share nothing with runs and services but the connection.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pydantic_core import PydanticSerializationError, to_json
from sqlalchemy import Table, select, update
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine

from ..exceptions import StoreError
from ..runs import ErrorInfo
from .base import DeploymentPartRecord, DeploymentRecord, StageRecord
from .schema import pipeline_deployments, pipeline_parts, pipeline_stages

__all__ = ["MemoryPipelines", "SqlPipelines"]


def _json_text(value: Any, what: str) -> str:
    try:
        return to_json(value).decode()
    except PydanticSerializationError as exc:
        raise StoreError(f"could not save a deployment: {what} are not JSON: {exc}") from exc


def deployment_row(record: DeploymentRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "pipeline": record.pipeline,
        "state": str(record.state),
        "bus": record.bus,
        "topics": _json_text(record.topics, "topics"),
        "started_at": record.started_at,
        "stopped_at": record.stopped_at,
        "stop_requested": bool(record.stop_requested),
        "updated_at": record.updated_at,
        "stages": None if record.stages is None else _json_text(record.stages, "stages"),
    }


def deployment_from_row(row: Sequence[Any]) -> DeploymentRecord:
    values = dict(zip((c.name for c in pipeline_deployments.columns), row, strict=True))
    stages = values.pop("stages")
    values["topics"] = json.loads(values["topics"])
    values["stop_requested"] = bool(values["stop_requested"])
    return DeploymentRecord(**values, stages=None if stages is None else json.loads(stages))


def part_row(part: DeploymentPartRecord) -> dict[str, Any]:
    return {
        "deployment": part.deployment,
        "part": part.part,
        "host": part.host,
        "pid": part.pid,
        "stages": _json_text(part.stages, "stage names"),
        "state": part.state,
        "started_at": part.started_at,
        "stopped_at": part.stopped_at,
        "updated_at": part.updated_at,
        "status_interval": part.status_interval,
    }


def part_from_row(row: Sequence[Any]) -> DeploymentPartRecord:
    values = dict(zip((c.name for c in pipeline_parts.columns), row, strict=True))
    return DeploymentPartRecord(**{**values, "stages": json.loads(values["stages"])})


def stage_row(deployment: str, record: StageRecord) -> dict[str, Any]:
    error = record.last_error
    return {
        "deployment": deployment,
        "stage": record.stage,
        "task": record.task,
        "state": str(record.state),
        "messages_in": record.messages_in,
        "messages_out": record.messages_out,
        "dropped": record.dropped,
        "errors": record.errors,
        "restarts": record.restarts,
        "last_timestamp": record.last_timestamp,
        "last_error": None if error is None else to_json(error.as_dict()).decode(),
        "updated_at": record.updated_at,
    }


def stage_from_row(row: Sequence[Any]) -> StageRecord:
    values = dict(zip((c.name for c in pipeline_stages.columns), row, strict=True))
    error = values.pop("last_error")
    return StageRecord(
        **values, last_error=None if error is None else ErrorInfo.from_dict(json.loads(error))
    )


class SqlPipelines:
    """The pipeline methods of `SqlStore`."""

    if TYPE_CHECKING:

        def _use(self, what: str) -> AbstractContextManager[Engine]: ...

        def _upsert(self, what: str, table: Table, values: dict[str, Any]) -> None: ...

        def _writer(self) -> Engine: ...

    def save_deployment(self, record: DeploymentRecord) -> None:
        self._upsert("save a deployment", pipeline_deployments, deployment_row(record))

    def get_deployment(self, name: str) -> DeploymentRecord | None:
        query = select(pipeline_deployments).where(pipeline_deployments.c.name == name)
        with self._use("read a deployment") as engine, engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else deployment_from_row(row)

    def list_deployments(self) -> list[DeploymentRecord]:
        query = select(pipeline_deployments).order_by(pipeline_deployments.c.name)
        with self._use("list deployments") as engine, engine.connect() as conn:
            rows = conn.execute(query).all()
        return [deployment_from_row(r) for r in rows]

    def request_deployment_stop(self, name: str) -> bool:
        stmt = (
            update(pipeline_deployments)
            .where(pipeline_deployments.c.name == name)
            .values(stop_requested=True)
        )
        with self._use("request a deployment stop"), self._writer().begin() as conn:
            return conn.execute(stmt).rowcount > 0

    def save_stage_records(self, deployment: str, records: Collection[StageRecord]) -> None:
        if not records:
            return
        rows = [stage_row(deployment, r) for r in records]
        with self._use("save stage statuses") as engine:
            dialect = pg_dialect if engine.dialect.name == "postgresql" else sqlite_dialect
            stmt = dialect.insert(pipeline_stages)
            stmt = stmt.on_conflict_do_update(
                index_elements=["deployment", "stage"],
                set_={k: stmt.excluded[k] for k in rows[0] if k not in ("deployment", "stage")},
            )
            with self._writer().begin() as conn:
                conn.execute(stmt, rows)

    def get_stage_records(self, deployment: str) -> list[StageRecord]:
        query = (
            select(pipeline_stages)
            .where(pipeline_stages.c.deployment == deployment)
            .order_by(pipeline_stages.c.stage)
        )
        with self._use("read stage statuses") as engine, engine.connect() as conn:
            rows = conn.execute(query).all()
        return [stage_from_row(r) for r in rows]

    # parts: the processes running a deployment ------------------------------------------
    def join_deployment(
        self, record: DeploymentRecord, part: DeploymentPartRecord
    ) -> DeploymentRecord:
        with self._use("join a deployment") as engine, self._writer().begin() as conn:
            # The deployment's row locked first (PostgreSQL; SQLite's write transaction
            # is one at a time): joins and leaves of one deployment take turns.
            row = conn.execute(
                select(pipeline_deployments)
                .where(pipeline_deployments.c.name == record.name)
                .with_for_update()
            ).first()
            others = [p for p in _parts(conn, record.name) if p.part != part.part]
            if row is not None and any(p.alive(time.time()) for p in others):
                stored = deployment_from_row(row)
                stored.state, stored.stopped_at = "running", None
                conn.execute(
                    update(pipeline_deployments)
                    .where(pipeline_deployments.c.name == record.name)
                    .values(state="running", stopped_at=None, updated_at=record.updated_at)
                )
            else:
                stored = replace(record, state="running", stop_requested=False)
                conn.execute(
                    _upsert_statement(engine, pipeline_deployments, deployment_row(stored))
                )
            conn.execute(_upsert_statement(engine, pipeline_parts, part_row(part)))
        return stored

    def save_deployment_part(self, part: DeploymentPartRecord) -> None:
        self._upsert("save a deployment part", pipeline_parts, part_row(part))

    def leave_deployment(self, name: str, part: str, *, stopped_at: float) -> str:
        with self._use("leave a deployment"), self._writer().begin() as conn:
            row = conn.execute(
                select(pipeline_deployments.c.state)
                .where(pipeline_deployments.c.name == name)
                .with_for_update()
            ).first()
            conn.execute(
                update(pipeline_parts)
                .where(pipeline_parts.c.deployment == name, pipeline_parts.c.part == part)
                .values(state="stopped", stopped_at=stopped_at, updated_at=stopped_at)
            )
            if row is None:
                return "stopped"
            now = time.time()
            if any(p.alive(now) for p in _parts(conn, name) if p.part != part):
                return "running"
            conn.execute(
                update(pipeline_deployments)
                .where(pipeline_deployments.c.name == name)
                .values(state="stopped", stopped_at=stopped_at, updated_at=stopped_at)
            )
            return "stopped"

    def get_deployment_parts(self, deployment: str) -> list[DeploymentPartRecord]:
        with self._use("read deployment parts") as engine, engine.connect() as conn:
            return _parts(conn, deployment)


def _parts(conn: Connection, deployment: str) -> list[DeploymentPartRecord]:
    query = (
        select(pipeline_parts)
        .where(pipeline_parts.c.deployment == deployment)
        .order_by(pipeline_parts.c.started_at, pipeline_parts.c.part)
    )
    return [part_from_row(r) for r in conn.execute(query).all()]


def _upsert_statement(engine: Engine, table: Table, values: dict[str, Any]) -> Any:
    dialect = pg_dialect if engine.dialect.name == "postgresql" else sqlite_dialect
    keys = [c.name for c in table.primary_key.columns]
    stmt = dialect.insert(table).values(values)
    return stmt.on_conflict_do_update(
        index_elements=keys, set_={k: stmt.excluded[k] for k in values if k not in keys}
    )


class MemoryPipelines:
    """The pipeline methods of `MemoryStore`."""

    _lock: AbstractContextManager[Any]
    _deployments: dict[str, DeploymentRecord]
    _stages: dict[str, dict[str, StageRecord]]
    _parts: dict[str, dict[str, DeploymentPartRecord]]

    def save_deployment(self, record: DeploymentRecord) -> None:
        deployment_row(record)  # the same JSON check as the SQL store
        stored = replace(record, topics=json.loads(to_json(record.topics)))
        with self._lock:
            self._deployments[record.name] = stored

    def get_deployment(self, name: str) -> DeploymentRecord | None:
        with self._lock:
            record = self._deployments.get(name)
            return None if record is None else copy.deepcopy(record)

    def list_deployments(self) -> list[DeploymentRecord]:
        with self._lock:
            return copy.deepcopy([self._deployments[n] for n in sorted(self._deployments)])

    def request_deployment_stop(self, name: str) -> bool:
        with self._lock:
            record = self._deployments.get(name)
            if record is None:
                return False
            record.stop_requested = True
            return True

    def save_stage_records(self, deployment: str, records: Collection[StageRecord]) -> None:
        with self._lock:
            stages = self._stages.setdefault(deployment, {})
            for record in records:
                stages[record.stage] = replace(record, deployment=deployment)

    def get_stage_records(self, deployment: str) -> list[StageRecord]:
        with self._lock:
            stages = self._stages.get(deployment, {})
            return copy.deepcopy([stages[n] for n in sorted(stages)])

    def join_deployment(
        self, record: DeploymentRecord, part: DeploymentPartRecord
    ) -> DeploymentRecord:
        deployment_row(record)
        part_row(part)
        with self._lock:
            parts = self._parts.setdefault(record.name, {})
            stored = self._deployments.get(record.name)
            now = time.time()
            if stored is not None and any(p.alive(now) for n, p in parts.items() if n != part.part):
                stored.state, stored.stopped_at = "running", None
                stored.updated_at = record.updated_at
            else:
                stored = replace(record, state="running", stop_requested=False)
                stored.topics = json.loads(to_json(record.topics))
                stored.stages = (
                    None if record.stages is None else json.loads(to_json(record.stages))
                )
                self._deployments[record.name] = stored
            parts[part.part] = replace(part, stages=list(part.stages))
            return copy.deepcopy(stored)

    def save_deployment_part(self, part: DeploymentPartRecord) -> None:
        with self._lock:
            self._parts.setdefault(part.deployment, {})[part.part] = replace(
                part, stages=list(part.stages)
            )

    def leave_deployment(self, name: str, part: str, *, stopped_at: float) -> str:
        with self._lock:
            parts = self._parts.get(name, {})
            mine = parts.get(part)
            if mine is not None:
                mine.state, mine.stopped_at, mine.updated_at = "stopped", stopped_at, stopped_at
            stored = self._deployments.get(name)
            if stored is None:
                return "stopped"
            now = time.time()
            if any(p.alive(now) for n, p in parts.items() if n != part):
                return "running"
            stored.state, stored.stopped_at, stored.updated_at = "stopped", stopped_at, stopped_at
            return "stopped"

    def get_deployment_parts(self, deployment: str) -> list[DeploymentPartRecord]:
        with self._lock:
            parts = self._parts.get(deployment, {}).values()
            return copy.deepcopy(sorted(parts, key=lambda p: (p.started_at, p.part)))
