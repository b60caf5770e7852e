"""Live attributes of service classes, their changes, and who asked for a request.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 00:00:00

Written by hand to match `taskloom/store/schema.py` as it was at this revision; the
migration test compares the two. `service_attributes` holds the current value of each
public attribute of a `Service` class with loops (one row per class and attribute; a row
whose `updated_by` is NULL holds the class's default), `service_attribute_changes` every
change made from outside the service, with who made it and when. `service_requests`
gains `requested_by`: who left a request (`cli:<user>`), now that a request may set
attributes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: 64-bit ids on PostgreSQL; on SQLite an alias of the rowid.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "service_attributes",
        sa.Column("service", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("service", "name", name="pk_service_attributes"),
    )
    op.create_table(
        "service_attribute_changes",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("service", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("changed_at", sa.Double(), nullable=False),
        sa.Column("changed_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_service_attribute_changes"),
    )
    op.create_index(
        "ix_service_attribute_changes_service_id",
        "service_attribute_changes",
        ["service", "id"],
    )
    with op.batch_alter_table("service_requests") as batch:
        batch.add_column(sa.Column("requested_by", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("service_requests") as batch:
        batch.drop_column("requested_by")
    op.drop_index("ix_service_attribute_changes_service_id", table_name="service_attribute_changes")
    op.drop_table("service_attribute_changes")
    op.drop_table("service_attributes")
