"""Volumes made from images (issue 18): volumes.image, the image record the volume was made from.

A DB from before Alembic had its missing volume tables made by the old runner from the code's tables
(cells/db/schema.py legacy_upgrade), so this revision adds only what is missing.

Revision ID: c0005_volume_images
Revises: c0004_volume_backend_names
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0005_volume_images"
down_revision: str | None = "c0004_volume_backend_names"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    if "image" not in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("volumes")}:
        with op.batch_alter_table('volumes') as batch:
            batch.add_column(sa.Column('image', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('volumes') as batch:
        batch.drop_column('image')
