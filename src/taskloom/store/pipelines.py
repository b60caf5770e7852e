"""Store methods for stream pipelines, on the SQL and in-memory backends.

Kept apart from `sql.py` and `memory.py` (which take them in as mixins) because they
share nothing with runs and services but the connection.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pydantic_core import PydanticSerializationError, to_json
from sqlalchemy import Table, select, update
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Engine

from ..exceptions import StoreError
from ..runs import ErrorInfo
from .base import DeploymentRecord, StageRecord
from .schema import pipeline_deployments, pipeline_stages

__all__ = ["MemoryPipelines", "SqlPipelines"]


def deployment_row(record: DeploymentRecord) -> dict[str, Any]:
    try:
        topics = to_json(record.topics).decode()
    except PydanticSerializationError as exc:
        raise StoreError(f"could not save a deployment: topics are not JSON: {exc}") from exc
    return {
        "name": record.name,
        "pipeline": record.pipeline,
        "state": str(record.state),
        "bus": record.bus,
        "topics": topics,
        "started_at": record.started_at,
        "stopped_at": record.stopped_at,
        "stop_requested": bool(record.stop_requested),
        "updated_at": record.updated_at,
    }


def deployment_from_row(row: Sequence[Any]) -> DeploymentRecord:
    name, pipeline, state, bus, topics, started_at, stopped_at, stop_requested, updated = row
    return DeploymentRecord(
        name=name,
        pipeline=pipeline,
        state=state,
        bus=bus,
        topics=json.loads(topics),
        started_at=started_at,
        stopped_at=stopped_at,
        stop_requested=bool(stop_requested),
        updated_at=updated,
    )


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


class MemoryPipelines:
    """The pipeline methods of `MemoryStore`."""

    _lock: AbstractContextManager[Any]
    _deployments: dict[str, DeploymentRecord]
    _stages: dict[str, dict[str, StageRecord]]

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
