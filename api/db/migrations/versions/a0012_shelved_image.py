"""instance_mappings.shelved_image_id: the image a shelved server's disk is kept in (Nova's
system_metadata shelved_image_id), kept where the API that owns images reads it.

Revision ID: a0012_shelved_image
Revises: a0011_flavor_access_quotas
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0012_shelved_image"
down_revision: str | None = "a0011_flavor_access_quotas"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    with op.batch_alter_table("instance_mappings") as batch:
        batch.add_column(sa.Column("shelved_image_id", sa.String(36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instance_mappings") as batch:
        batch.drop_column("shelved_image_id")
