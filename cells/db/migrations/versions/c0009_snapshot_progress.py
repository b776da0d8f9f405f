"""volume_snapshots.progress: what the last os-update_snapshot_status reported ("80%"; None: from the status).

Revision ID: c0009_snapshot_progress
Revises: c0008_instance_password
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0009_snapshot_progress"
down_revision: str | None = "c0008_instance_password"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    # a cell DB whose conductor made the volume tables from the code's (cells/db/volumes.py) has it already
    if "progress" not in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("volume_snapshots")}:
        with op.batch_alter_table("volume_snapshots") as batch:
            batch.add_column(sa.Column("progress", sa.String(length=8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("volume_snapshots") as batch:
        batch.drop_column("progress")
