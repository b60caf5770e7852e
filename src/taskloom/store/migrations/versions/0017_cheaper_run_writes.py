"""Cheaper writes of runs and attempts: the idempotency key's index holds only the runs
that have a key, and PostgreSQL leaves half of each `attempts` page free.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04 00:00:00

Written by hand to match `taskloom/store/schema.py` as it was at this revision; the
migration test compares the two.

- `uq_runs_idempotency_key` was a unique constraint over every run, so each insert of a
  run without a key (nearly all of them) wrote a NULL entry, and on PostgreSQL every update
  of a run (its claim, its end) wrote another. It is now a unique index of the runs with a
  key; uniqueness among them is unchanged.
- `attempts` gets `fillfactor = 50` on PostgreSQL: the end of an attempt then fits on the
  page of its start, a HOT update that writes no index entry. Pages written before keep
  their rows; the setting applies to pages filled from here on.

On SQLite a constraint can only be dropped by copying the table (Alembic's batch mode),
which keeps every row but writes `ix_runs_claimable` again without its `DESC`; that index
is made again as it was.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEYED = "idempotency_key IS NOT NULL"
_CLAIMABLE = "status = 'pending' AND worker_id IS NULL"


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _claimable_again() -> None:
    """SQLite, after a copy of `runs`: the claimable index as revision 0007 made it."""
    op.drop_index("ix_runs_claimable", table_name="runs")
    op.create_index(
        "ix_runs_claimable",
        "runs",
        ["queue", sa.text("priority DESC"), "created_at", "id"],
        sqlite_where=sa.text(_CLAIMABLE),
    )


def upgrade() -> None:
    if _postgres():
        op.drop_constraint("uq_runs_idempotency_key", "runs", type_="unique")
        op.execute("ALTER TABLE attempts SET (fillfactor = 50)")
    else:
        with op.batch_alter_table("runs") as batch:
            batch.drop_constraint("uq_runs_idempotency_key", type_="unique")
        _claimable_again()
    op.create_index(
        "uq_runs_idempotency_key",
        "runs",
        ["idempotency_key"],
        unique=True,
        sqlite_where=sa.text(_KEYED),
        postgresql_where=sa.text(_KEYED),
    )


def downgrade() -> None:
    op.drop_index("uq_runs_idempotency_key", table_name="runs")
    if _postgres():
        op.execute("ALTER TABLE attempts RESET (fillfactor)")
        op.create_unique_constraint("uq_runs_idempotency_key", "runs", ["idempotency_key"])
    else:
        with op.batch_alter_table("runs") as batch:
            batch.create_unique_constraint("uq_runs_idempotency_key", ["idempotency_key"])
        _claimable_again()
