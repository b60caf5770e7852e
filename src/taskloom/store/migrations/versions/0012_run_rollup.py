"""The rollup of run ends: counts per time bucket and duration histograms.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 00:00:00

Written by hand to match `taskloom/store/schema.py` as it was at this revision; the
migration test compares the two. From this revision on, every commit that ends runs adds
them to `run_counts` and `run_durations` (see `taskloom/store/rollup.py`). The runs that
finished in the last seven days (the longest window of statistics) before it are added
here, read in pages of 10,000 rows; older ones are not.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import context, op

from taskloom.store.rollup import duration_bin

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: As `rollup.GRAINS` was at this revision.
_GRAINS = (60, 900, 3600, 21600)
_BACKFILL_SECONDS = 7 * 86400
_PAGE = 10_000


def upgrade() -> None:
    counts = op.create_table(
        "run_counts",
        sa.Column("grain", sa.Integer(), nullable=False),
        sa.Column("bucket_start", sa.Double(), nullable=False),
        sa.Column("task", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("runs", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("grain", "bucket_start", "task", "status", name="pk_run_counts"),
        sqlite_with_rowid=False,
    )
    durations = op.create_table(
        "run_durations",
        sa.Column("grain", sa.Integer(), nullable=False),
        sa.Column("bucket_start", sa.Double(), nullable=False),
        sa.Column("task", sa.String(200), nullable=False),
        sa.Column("bin", sa.Integer(), nullable=False),
        sa.Column("runs", sa.BigInteger(), nullable=False),
        sa.Column("max_seconds", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("grain", "bucket_start", "task", "bin", name="pk_run_durations"),
        sqlite_with_rowid=False,
    )
    if not context.is_offline_mode():  # SQL rendered for later has no runs to read
        _backfill(counts, durations)


def _backfill(counts: sa.Table, durations: sa.Table) -> None:
    """Add the runs that finished in the last seven days, grouped as the rollup holds
    them (the groups, not the runs, are kept in memory)."""
    ended: dict[tuple[int, float, str, str], int] = {}
    timed: dict[tuple[int, float, str, int], list[float]] = {}
    query = sa.text(
        "SELECT task, status, started_at, finished_at FROM runs "
        "WHERE status IN ('completed', 'failed', 'cancelled') AND finished_at >= :cutoff"
    ).execution_options(yield_per=_PAGE)
    cutoff = math.floor(time.time() / 3600) * 3600 - _BACKFILL_SECONDS
    result = op.get_bind().execute(query, {"cutoff": cutoff})
    for page in result.partitions():
        for task, status, started_at, finished_at in page:
            index = None if started_at is None else duration_bin(finished_at - started_at)
            for grain in _GRAINS:
                start = finished_at - finished_at % grain
                key = (grain, start, task, status)
                ended[key] = ended.get(key, 0) + 1
                if index is None:
                    continue
                seconds = finished_at - started_at
                held = timed.setdefault((grain, start, task, index), [0, seconds])
                held[0] += 1
                held[1] = max(held[1], seconds)
    names = ("grain", "bucket_start", "task", "status")
    rows: list[dict[str, Any]] = [
        {**dict(zip(names, key, strict=True)), "runs": n} for key, n in ended.items()
    ]
    for start in range(0, len(rows), _PAGE):
        op.bulk_insert(counts, rows[start : start + _PAGE])
    names = ("grain", "bucket_start", "task", "bin")
    rows = [
        {**dict(zip(names, key, strict=True)), "runs": int(n), "max_seconds": longest}
        for key, (n, longest) in timed.items()
    ]
    for start in range(0, len(rows), _PAGE):
        op.bulk_insert(durations, rows[start : start + _PAGE])


def downgrade() -> None:
    op.drop_table("run_durations")
    op.drop_table("run_counts")
