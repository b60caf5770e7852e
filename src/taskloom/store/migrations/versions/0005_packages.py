"""Task packages: one row per package, installed in its own virtual environment.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 00:00:00

Written by hand to match `taskloom/store/schema.py` as it was at this revision; the
migration test compares the two. Later revisions change the schema, never this file.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "packages",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("version", sa.String(100), nullable=True),
        sa.Column("venv", sa.Text(), nullable=True),
        sa.Column("python", sa.Text(), nullable=True),
        sa.Column("root", sa.Text(), nullable=True),
        sa.Column("manifest_kind", sa.String(16), nullable=True),
        sa.Column("manifest", sa.Text(), nullable=True),
        sa.Column("frozen", sa.Text(), nullable=True),
        sa.Column("pip_args", sa.Text(), nullable=False),
        sa.Column("log", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_packages"),
    )


def downgrade() -> None:
    op.drop_table("packages")
