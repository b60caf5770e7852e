"""The trace context a run was submitted under.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 00:00:00

Written by hand to match `taskloom/store/schema.py` as it was at this revision; the
migration test compares the two. `trace_context` holds the W3C `traceparent` and
`tracestate` of the span that submitted a run (JSON text), so the spans of its attempts
are children of that span in whichever process executes them. Runs recorded before it,
and runs submitted while tracing is off, have none.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("trace_context", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("trace_context")
