"""instances.locked_by and instances.locked_reason: a locked server (Nova's lock/unlock, 2.73's reason).

Revision ID: c0003_instance_lock
Revises: c0002_snapshots
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0003_instance_lock"
down_revision: str | None = "c0002_snapshots"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("locked_by", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("locked_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("locked_reason")
        batch.drop_column("locked_by")
