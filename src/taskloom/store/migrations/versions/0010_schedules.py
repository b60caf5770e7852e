"""Schedules and webhooks.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 00:00:00

Written by hand to match `taskloom/store/schema.py` as it was at this revision; the
migration test compares the two.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_IN_FORCE = "NOT paused"
_TRIGGERED = "trigger_requested_at IS NOT NULL"


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("task", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("inputs", sa.Text(), nullable=False),
        sa.Column("start_at", sa.Double(), nullable=True),
        sa.Column("end_at", sa.Double(), nullable=True),
        sa.Column("jitter", sa.Double(), nullable=False),
        sa.Column("catch_up", sa.String(8), nullable=False),
        sa.Column("max_catch_up", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("next_fire_at", sa.Double(), nullable=True),
        sa.Column("last_fire_at", sa.Double(), nullable=True),
        sa.Column("trigger_requested_at", sa.Double(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_schedules"),
    )
    op.create_index(
        "ix_schedules_due",
        "schedules",
        ["next_fire_at"],
        sqlite_where=sa.text(_IN_FORCE),
        postgresql_where=sa.text(_IN_FORCE),
    )
    op.create_index(
        "ix_schedules_triggered",
        "schedules",
        ["name"],
        sqlite_where=sa.text(_TRIGGERED),
        postgresql_where=sa.text(_TRIGGERED),
    )
    op.create_table(
        "hooks",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("task", sa.String(200), nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_hooks"),
    )


def downgrade() -> None:
    op.drop_table("hooks")
    op.drop_index("ix_schedules_due", table_name="schedules")
    op.drop_index("ix_schedules_triggered", table_name="schedules")
    op.drop_table("schedules")
