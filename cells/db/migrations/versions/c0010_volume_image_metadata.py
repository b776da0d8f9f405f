"""volumes.image_metadata: Cinder's volume_image_metadata once a user changed it (os-set_image_metadata,
os-unset_image_metadata); None: shown from the volume's image record.

Revision ID: c0010_volume_image_metadata
Revises: c0009_snapshot_progress
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0010_volume_image_metadata"
down_revision: str | None = "c0009_snapshot_progress"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    # a cell DB whose conductor made the volume tables from the code's (cells/db/volumes.py) has it already
    if "image_metadata" not in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("volumes")}:
        with op.batch_alter_table("volumes") as batch:
            batch.add_column(sa.Column("image_metadata", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("volumes") as batch:
        batch.drop_column("image_metadata")
