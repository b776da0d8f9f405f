"""instance_mappings.tags: a server's tags (Nova's microversion 2.26), kept where the API reads them.

Revision ID: a0008_server_tags
Revises: a0007_identity_images
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0008_server_tags"
down_revision: str | None = "a0007_identity_images"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    with op.batch_alter_table("instance_mappings") as batch:
        batch.add_column(sa.Column("tags", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instance_mappings") as batch:
        batch.drop_column("tags")
