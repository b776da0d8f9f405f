"""Cinder's QoS specs (qos_specs, volume_types.qos_specs_id) and volume type encryption
(volume_types.encryption), stored and shown only (api/volume/qos.py, api/volume/encryption.py).

Revision ID: a0015_qos_encryption
Revises: a0014_volume_transfers
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0015_qos_encryption"
down_revision: str | None = "a0014_volume_transfers"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table("qos_specs",
                    sa.Column("id", sa.String(length=36), nullable=False),
                    sa.Column("name", sa.String(length=255), nullable=False),
                    sa.Column("consumer", sa.String(length=16), nullable=False),
                    sa.Column("specs", sa.JSON(), nullable=False),
                    sa.Column("created_at", sa.DateTime(), nullable=False),
                    sa.Column("updated_at", sa.DateTime(), nullable=False),
                    sa.PrimaryKeyConstraint("id"),
                    sa.UniqueConstraint("name"))
    with op.batch_alter_table("volume_types") as batch:
        batch.add_column(sa.Column("qos_specs_id", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("encryption", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("volume_types") as batch:
        batch.drop_column("encryption")
        batch.drop_column("qos_specs_id")
    op.drop_table("qos_specs")
