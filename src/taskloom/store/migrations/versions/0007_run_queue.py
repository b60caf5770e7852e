"""The shared run queue: a run's queue and lease, workers' leases and what they serve.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 00:00:00

Written by hand to match `taskloom/store/schema.py` as it was at this revision; the
migration test compares the two. Runs recorded before it keep their owner and get the
queue `default` and lease 0; a worker recorded before it has no lease, so a reaper judges
it by its lock alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_HELD = "worker_id IS NOT NULL AND status IN ('pending', 'running')"
_CLAIMABLE = "status = 'pending' AND worker_id IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(
            sa.Column("queue", sa.String(100), nullable=False, server_default="default")
        )
        batch.add_column(sa.Column("lease", sa.Integer(), nullable=False, server_default="0"))
    op.create_index(
        "ix_runs_claimable",
        "runs",
        ["queue", sa.text("priority DESC"), "created_at", "id"],
        sqlite_where=sa.text(_CLAIMABLE),
        postgresql_where=sa.text(_CLAIMABLE),
    )
    op.create_index(
        "ix_runs_held",
        "runs",
        ["worker_id", "task"],
        sqlite_where=sa.text(_HELD),
        postgresql_where=sa.text(_HELD),
    )
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("name", sa.String(200), nullable=True))
        batch.add_column(sa.Column("queues", sa.Text(), nullable=True))
        batch.add_column(sa.Column("concurrency", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("expires_at", sa.Double(), nullable=True))
        batch.add_column(sa.Column("lost_at", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        for column in ("lost_at", "expires_at", "concurrency", "queues", "name"):
            batch.drop_column(column)
    op.drop_index("ix_runs_held", table_name="runs")
    op.drop_index("ix_runs_claimable", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("lease")
        batch.drop_column("queue")
