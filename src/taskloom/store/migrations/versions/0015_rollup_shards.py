"""The rollup's rows per writing session: `shard` joins the primary keys of `run_counts`
and `run_durations`.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 00:00:00

Written by hand to match `taskloom/store/schema.py` as it was at this revision; the
migration test compares the two. Until this revision every worker that ended runs of a
task in the same minute updated the same rows, so a worker paused in the middle of a
commit held up the commits of all the others. From this revision on each PostgreSQL
session adds to rows of its own (`shard` is its backend pid) and readers sum them; the
rows already there become shard 0. SQLite, which has one writer at a time, writes shard 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEYS = {
    "run_counts": ("grain", "bucket_start", "task", "status"),
    "run_durations": ("grain", "bucket_start", "task", "bin"),
}


def upgrade() -> None:
    for table, keys in _KEYS.items():
        _rekey(table, keys, with_shard=True)


def downgrade() -> None:
    for table, keys in _KEYS.items():
        _rekey(table, keys, with_shard=False)


def _rekey(table: str, keys: tuple[str, ...], *, with_shard: bool) -> None:
    """Make `table` again with the new primary key (SQLite cannot change one) and copy its
    rows: as shard 0 going up, the shards summed going down."""
    old = f"{table}_before_0015"
    op.rename_table(table, old)
    if op.get_bind().dialect.name == "postgresql":  # its index keeps the name, renamed too
        op.execute(f"ALTER TABLE {old} RENAME CONSTRAINT pk_{table} TO pk_{old}")
    columns: list[sa.Column[Any]] = [
        sa.Column("grain", sa.Integer(), nullable=False),
        sa.Column("bucket_start", sa.Double(), nullable=False),
        sa.Column("task", sa.String(200), nullable=False),
    ]
    if table == "run_counts":
        columns.append(sa.Column("status", sa.String(16), nullable=False))
    else:
        columns.append(sa.Column("bin", sa.Integer(), nullable=False))
    if with_shard:
        columns.append(sa.Column("shard", sa.Integer(), nullable=False, server_default="0"))
    columns.append(sa.Column("runs", sa.BigInteger(), nullable=False))
    if table == "run_durations":
        columns.append(sa.Column("max_seconds", sa.Double(), nullable=False))
    primary = [*keys, "shard"] if with_shard else list(keys)
    op.create_table(
        table,
        *columns,
        sa.PrimaryKeyConstraint(*primary, name=f"pk_{table}"),
        sqlite_with_rowid=False,
    )
    grouped = ", ".join(keys)
    if table == "run_counts":
        values, merged = "runs", "sum(runs)"
    else:
        values, merged = "runs, max_seconds", "sum(runs), max(max_seconds)"
    if with_shard:
        op.execute(
            f"INSERT INTO {table} ({grouped}, {values}, shard) "
            f"SELECT {grouped}, {values}, 0 FROM {old}"
        )
    else:
        op.execute(
            f"INSERT INTO {table} ({grouped}, {values}) "
            f"SELECT {grouped}, {merged} FROM {old} GROUP BY {grouped}"
        )
    op.drop_table(old)
