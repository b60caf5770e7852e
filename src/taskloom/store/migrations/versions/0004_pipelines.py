"""Stream pipelines: deployments and the status of their stages.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 00:00:00

Written by hand to match `taskloom/store/schema.py` as it was at this revision; the
migration test compares the two. Later revisions change the schema, never this file.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pipeline_deployments",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("pipeline", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("bus", sa.Text(), nullable=False),
        sa.Column("topics", sa.Text(), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=False),
        sa.Column("stopped_at", sa.Double(), nullable=True),
        sa.Column("stop_requested", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_pipeline_deployments"),
    )
    op.create_table(
        "pipeline_stages",
        sa.Column("deployment", sa.String(200), nullable=False),
        sa.Column("stage", sa.String(200), nullable=False),
        sa.Column("task", sa.String(400), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("messages_in", sa.BigInteger(), nullable=False),
        sa.Column("messages_out", sa.BigInteger(), nullable=False),
        sa.Column("dropped", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("restarts", sa.BigInteger(), nullable=False),
        sa.Column("last_timestamp", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("deployment", "stage", name="pk_pipeline_stages"),
    )


def downgrade() -> None:
    op.drop_table("pipeline_stages")
    op.drop_table("pipeline_deployments")
