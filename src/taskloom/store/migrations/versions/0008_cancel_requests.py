"""An index of the runs whose cancellation was requested, by worker.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 00:00:00

Written by hand to match `taskloom/store/schema.py` as it was at this revision; the
migration test compares the two. A worker reads its cancel requests whenever another
process may have changed the database: through this index that read touches only runs
whose cancellation was requested, not every run the worker holds.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_REQUESTED = "cancel_requested"


def upgrade() -> None:
    op.create_index(
        "ix_runs_cancel_requested",
        "runs",
        ["worker_id"],
        sqlite_where=sa.text(_REQUESTED),
        postgresql_where=sa.text(_REQUESTED),
    )


def downgrade() -> None:
    op.drop_index("ix_runs_cancel_requested", table_name="runs")
