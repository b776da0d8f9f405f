"""volume_transfers: Cinder's volume transfers between projects (issue 18/16; api/volume/transfers.py).

Revision ID: a0014_volume_transfers
Revises: a0013_identity_domains_hierarchy
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0014_volume_transfers"
down_revision: str | None = "a0013_identity_domains_hierarchy"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table("volume_transfers",
                    sa.Column("id", sa.String(length=36), nullable=False),
                    sa.Column("volume_id", sa.String(length=36), nullable=False),
                    sa.Column("project_id", sa.String(length=64), nullable=False),
                    sa.Column("name", sa.String(length=255), nullable=True),
                    sa.Column("salt", sa.String(length=64), nullable=False),
                    sa.Column("crypt_hash", sa.String(length=64), nullable=False),
                    sa.Column("no_snapshots", sa.Boolean(), nullable=False),
                    sa.Column("created_at", sa.DateTime(), nullable=False),
                    sa.PrimaryKeyConstraint("id"),
                    sa.UniqueConstraint("volume_id"))
    op.create_index("ix_volume_transfers_project_id", "volume_transfers", ["project_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_volume_transfers_project_id", table_name="volume_transfers")
    op.drop_table("volume_transfers")
