"""Service control: requests to the serving process, and the log lines of services.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 00:00:00

Written by hand to match `taskloom/store/schema.py` as it was at this revision; the
migration test compares the two. Later revisions change the schema, never this file.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: 64-bit ids on PostgreSQL; on SQLite an alias of the rowid.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "service_requests",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("service", sa.String(200), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("config", sa.Text(), nullable=True),
        sa.Column("requested_at", sa.Double(), nullable=False),
        sa.Column("handled_at", sa.Double(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_service_requests"),
    )

    op.create_table(
        "service_log_lines",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("service", sa.String(200), nullable=False),
        sa.Column("start_number", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_service_log_lines"),
    )
    op.create_index("ix_service_log_lines_service_id", "service_log_lines", ["service", "id"])


def downgrade() -> None:
    op.drop_index("ix_service_log_lines_service_id", table_name="service_log_lines")
    op.drop_table("service_log_lines")
    op.drop_table("service_requests")
