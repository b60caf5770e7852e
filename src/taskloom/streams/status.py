"""The status of a deployment and of each of its stages, as kept in the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..store.base import StageCounters, StageRecord

__all__ = [
    "DeploymentState",
    "DeploymentStatus",
    "PartState",
    "PartStatus",
    "StageState",
    "StageStatus",
]


class StageState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"  # it raised; its restart policy starts it again
    FAILED = "failed"  # it raised and its restart policy gave up
    FINISHED = "finished"  # a source ran out, or every input ended
    STOPPED = "stopped"


class DeploymentState(StrEnum):
    RUNNING = "running"  # some part (process) runs it
    STOPPED = "stopped"  # every part stopped, or was lost


class PartState(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    LOST = "lost"  # it said running, but has not saved its status for a while


@dataclass(slots=True, kw_only=True)
class PartStatus:
    """One process running some of a deployment's stages."""

    part: str
    host: str
    pid: int
    stages: list[str]
    state: PartState
    started_at: float
    stopped_at: float | None = None
    updated_at: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "part": self.part,
            "host": self.host,
            "pid": self.pid,
            "stages": list(self.stages),
            "state": self.state.value,
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "updated_at": self.updated_at,
        }


@dataclass(slots=True, kw_only=True)
class StageStatus(StageCounters):
    """One stage: its state and its counters since the deployment started (the fields
    of `StageCounters`)."""

    state: StageState

    @classmethod
    def from_record(cls, record: StageRecord) -> StageStatus:
        """The status a saved record holds."""
        return cls(state=StageState(record.state), **record.counters())

    def record(self, deployment: str) -> StageRecord:
        """This status as the record saved for `deployment`."""
        return StageRecord(deployment=deployment, state=self.state.value, **self.counters())

    def as_dict(self) -> dict[str, Any]:
        data = {"state": self.state.value, **self.counters()}
        data["last_error"] = self.last_error.as_dict() if self.last_error else None
        return data


@dataclass(slots=True, kw_only=True)
class DeploymentStatus:
    """A deployment: its pipeline, bus, state, its stages and its parts (the processes
    running them)."""

    name: str
    pipeline: str
    state: DeploymentState
    bus: str
    started_at: float
    stopped_at: float | None = None
    stop_requested: bool = False
    topics: dict[str, Any] = field(default_factory=dict)
    stages: list[StageStatus] = field(default_factory=list)
    parts: list[PartStatus] = field(default_factory=list)

    def stage(self, name: str) -> StageStatus:
        for stage in self.stages:
            if stage.stage == name:
                return stage
        raise KeyError(f"deployment {self.name!r} has no stage {name!r}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pipeline": self.pipeline,
            "state": self.state.value,
            "bus": self.bus,
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "stop_requested": self.stop_requested,
            "topics": self.topics,
            "stages": [s.as_dict() for s in self.stages],
            "parts": [p.as_dict() for p in self.parts],
        }
