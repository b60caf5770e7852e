"""The processes running a deployment (`pipeline_parts`), and its stages' wiring.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 00:00:00

Written by hand to match `taskloom/store/schema.py` as it was at this revision; the
migration test compares the two. A deployment split over several processes keeps one
`pipeline_parts` row per process (its stages, its state, when it last saved its status),
so that it is stopped only once every part is; `pipeline_deployments.stages` holds the
pipeline's stages (task, topics, config, options) as the deploying process read them, for
a process that joins the deployment to wire itself from.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pipeline_parts",
        sa.Column("deployment", sa.String(200), nullable=False),
        sa.Column("part", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("stages", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=False),
        sa.Column("stopped_at", sa.Double(), nullable=True),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("status_interval", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("deployment", "part", name="pk_pipeline_parts"),
    )
    with op.batch_alter_table("pipeline_deployments") as batch:
        batch.add_column(sa.Column("stages", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pipeline_deployments") as batch:
        batch.drop_column("stages")
    op.drop_table("pipeline_parts")
