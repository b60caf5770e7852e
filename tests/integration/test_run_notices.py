"""What a commit tells other processes on PostgreSQL: the NOTIFYs of the runs it changed.

A LISTEN connection of the test's own hears them. While some process asks for them
(`want_records`), the notice of an end the writer knows whole carries the run's record,
which must be the run exactly as it is stored (a server tells it without reading it
back); a record too long, a change the store refused, a run inserted by the batch, and
any end while nobody asks, are told by id alone; a claim that starts runs tells each start.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from taskloom.runs import ErrorInfo, Run, RunStatus, new_run_id
from taskloom.store import WriteBatch, open_store
from taskloom.store.base import ClaimRequest
from taskloom.store.queue import RECORD_MAX, RUNS_CHANNEL
from taskloom.store.sql import SqlStore

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]

AWKWARD = {
    "text": "quotes \" ' and \\ backslash, a\nnewline, \x01 control, emoji \U0001f9f5, é",
    "numbers": [1e308, 5e-324, -0.0, 2**63 - 1],
    "nested": {"empty": {}, "list": [], "none": None, "true": True},
}


@pytest.fixture
def store(migrated_postgres_database: str) -> Iterator[SqlStore]:
    opened = open_store(migrated_postgres_database)
    assert isinstance(opened, SqlStore)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def listener(migrated_postgres_database: str) -> Iterator[psycopg.Connection[Any]]:
    url = migrated_postgres_database.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"LISTEN {RUNS_CHANNEL}")
        yield conn


def heard(conn: psycopg.Connection[Any], marker: str) -> list[str]:
    """The lines told on the runs channel up to the first that names run `marker`."""
    lines: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for notice in conn.notifies(timeout=1.0, stop_after=1):
            lines.extend(notice.payload.split("\n"))
            if any(line.partition(" ")[0] == marker for line in lines):
                return lines
    raise AssertionError(f"no notice named {marker} within 20 s; heard {lines}")


def held(worker: str = "w1", **fields: Any) -> Run:
    values: dict[str, Any] = {
        "inputs": {"given": AWKWARD},
        "created_at": time.time(),
        "worker_id": worker,
        "lease": 1,
        "status": RunStatus.RUNNING,
        "attempts": 1,
        "started_at": time.time(),
        "config": {"option": "value"},
        "trace_context": {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"},
        "progress": 0.5,
        "progress_message": "halfway",
    }
    values.update(fields)
    return Run(id=new_run_id(), task="demo.add", **values)


def end(run: Run, status: RunStatus, **fields: Any) -> tuple[Run, dict[str, Any]]:
    """The engine's record of `run` after its end, and the fields its end writes."""
    changes = {"status": status, "finished_at": time.time(), **fields}
    record = run.copy()
    for name, value in changes.items():
        setattr(record, name, value)
    return record, changes


def record_of(lines: list[str], run_id: str) -> tuple[str, dict[str, Any] | None]:
    (line,) = [line for line in lines if line.partition(" ")[0] == run_id]
    _, status, record = (*line.split(" ", 2), "")[:3]
    return status, json.loads(record) if record else None


@pytest.mark.parametrize(
    ("status", "fields"),
    [
        (RunStatus.COMPLETED, {"result": AWKWARD}),
        (RunStatus.FAILED, {"error": ErrorInfo("ValueError", "bad \u00e9", "Traceback...", True)}),
        (RunStatus.CANCELLED, {"error": ErrorInfo("Cancelled", "cancelled"), "progress": 0.9}),
    ],
)
def test_the_notice_of_an_end_carries_the_run_as_stored(
    store: SqlStore,
    listener: psycopg.Connection[Any],
    status: RunStatus,
    fields: dict[str, Any],
) -> None:
    run = held()
    store.want_records()
    store.write(WriteBatch(new_runs=[run]))
    lines = heard(listener, run.id)  # the insert's notice: `id running`, by id alone
    assert record_of(lines, run.id) == ("running", None)
    record, changes = end(run, status, **fields)
    store.write(
        WriteBatch(
            run_updates={run.id: changes}, fences={run.id: ("w1", 1)}, records={run.id: record}
        )
    )
    told_status, told = record_of(heard(listener, run.id), run.id)
    assert told_status == status.value
    assert told is not None
    stored = store.get_run(run.id)
    assert stored is not None
    assert Run.from_dict(told) == stored
    assert told == json.loads(json.dumps(stored.as_dict()))


def test_an_end_whose_record_is_too_long_is_told_by_id(
    store: SqlStore, listener: psycopg.Connection[Any]
) -> None:
    run = held(inputs={"text": "x" * RECORD_MAX})
    store.want_records()
    store.write(WriteBatch(new_runs=[run]))
    heard(listener, run.id)
    record, changes = end(run, RunStatus.COMPLETED, result=1)
    store.write(WriteBatch(run_updates={run.id: changes}, records={run.id: record}))
    assert record_of(heard(listener, run.id), run.id) == ("completed", None)


def test_a_refused_end_is_not_told_and_the_rest_of_its_batch_is(
    store: SqlStore, listener: psycopg.Connection[Any]
) -> None:
    kept, lost = held(), held()
    store.write(WriteBatch(new_runs=[kept, lost]))
    heard(listener, lost.id)
    # `lost` was taken over by w2: the end w1 writes under its fence is refused.
    store.write(WriteBatch(run_updates={lost.id: {"worker_id": "w2"}}))
    ends = [end(kept, RunStatus.COMPLETED, result=1), end(lost, RunStatus.COMPLETED, result=2)]
    result = store.write(
        WriteBatch(
            run_updates={kept.id: ends[0][1], lost.id: ends[1][1]},
            fences={kept.id: ("w1", 1), lost.id: ("w1", 1)},
            records={kept.id: ends[0][0], lost.id: ends[1][0]},
        )
    )
    assert result.rejected == {lost.id}
    lines = heard(listener, kept.id)
    assert [line.partition(" ")[0] for line in lines] == [kept.id]
    stored_lost = store.get_run(lost.id)
    assert stored_lost is not None
    assert stored_lost.status is RunStatus.RUNNING


def test_a_claim_that_starts_runs_tells_each_start(
    store: SqlStore, listener: psycopg.Connection[Any]
) -> None:
    started = Run(id=new_run_id(), task="demo.add", inputs={}, created_at=time.time() - 2)
    claimed_only = Run(id=new_run_id(), task="demo.mul", inputs={}, created_at=time.time() - 1)
    store.write(WriteBatch(new_runs=[started, claimed_only]))
    assert record_of(heard(listener, claimed_only.id), started.id) == ("pending", None)
    request = ClaimRequest(
        worker_id="w1",
        tasks=["demo.add", "demo.mul"],
        queues=["default"],
        limit=10,
        now=time.time(),
        start={"demo.add": "loop"},
    )
    claimed = store.write(WriteBatch(claim=request)).claimed
    assert {r.id for r in claimed} == {started.id, claimed_only.id}
    lines = heard(listener, started.id)
    assert lines == [f"{started.id} running"]


def test_ends_carry_records_only_while_another_process_asks(
    store: SqlStore, listener: psycopg.Connection[Any], migrated_postgres_database: str
) -> None:
    heard_by_store: list[str] = []
    feed = store.watch(lambda channel, payload: heard_by_store.append(channel))
    assert feed is not None
    try:
        run = held()
        store.write(WriteBatch(new_runs=[run]))
        heard(listener, run.id)
        record, changes = end(run, RunStatus.COMPLETED, result=1)
        store.write(
            WriteBatch(
                run_updates={run.id: changes}, fences={run.id: ("w1", 1)}, records={run.id: record}
            )
        )
        assert record_of(heard(listener, run.id), run.id) == ("completed", None)  # nobody asks

        # The server with listeners asks again and again (the store's feed may not listen
        # yet at first); each end is tried until one carries its record.
        other = open_store(migrated_postgres_database)
        deadline = time.monotonic() + 20
        told = None
        try:
            while told is None:
                assert time.monotonic() < deadline, "no end carried its record within 20 s"
                other.want_records()
                run = held()
                record, changes = end(run, RunStatus.COMPLETED, result=2)
                store.write(WriteBatch(new_runs=[run]))
                heard(listener, run.id)  # the insert's notice
                store.write(
                    WriteBatch(
                        run_updates={run.id: changes},
                        fences={run.id: ("w1", 1)},
                        records={run.id: record},
                    )
                )
                _, told = record_of(heard(listener, run.id), run.id)
        finally:
            other.close()
        assert told["result"] == 2
        assert "taskloom_listening" not in heard_by_store  # the store's own, not the caller's
    finally:
        feed.stop()
