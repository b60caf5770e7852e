"""A journal of the runs each commit changed, for other processes on a SQLite file.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 00:00:00

Written by hand to match `taskloom/store/schema.py` as it was at this revision; the
migration test compares the two. On PostgreSQL a commit's NOTIFY names the runs it
changed; a SQLite file has no NOTIFY, so while another engine uses the file each commit
adds those `id status` lines here, in the same transaction. The table exists on
PostgreSQL too (one schema for both) and stays empty there.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "run_changes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("lines", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_run_changes"),
    )


def downgrade() -> None:
    op.drop_table("run_changes")
