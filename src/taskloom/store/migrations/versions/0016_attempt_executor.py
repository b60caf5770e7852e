"""What made each attempt's call: `executor` and `dashboard` on `attempts`.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 00:00:00

Written by hand to match `taskloom/store/schema.py` as it was at this revision; the
migration test compares the two. `executor` names what made the call of an attempt: a
built-in executor (`loop`, `inline`, `thread`, `serial`) or `dask` and its scheduler's
address; `dashboard` is the Dask dashboard's address, when the scheduler serves one.
Attempts recorded before this revision have neither.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("executor", sa.String(200), nullable=True))
        batch.add_column(sa.Column("dashboard", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("dashboard")
        batch.drop_column("executor")
