"""Volume types (issue 18): the volume_types table and the type of each volume quota reservation.

Revision ID: a0006_volume_types
Revises: a0005_server_group_rules
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0006_volume_types"
down_revision: str | None = "a0005_server_group_rules"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    # a DB from before Alembic got its volume_reservations from the code's table (api/db/schema.py _v7)
    if "volume_type" not in {c["name"] for c in inspector.get_columns("volume_reservations")}:
        with op.batch_alter_table('volume_reservations') as batch:
            batch.add_column(sa.Column('volume_type', sa.String(length=255), nullable=True))
    if not inspector.has_table("volume_types"):
        op.create_table('volume_types',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('description', sa.Text(), nullable=True),
        sa.Column('is_public', sa.Boolean(), nullable=False),
        sa.Column('extra_specs', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name')
        )


def downgrade() -> None:
    op.drop_table('volume_types')
    with op.batch_alter_table('volume_reservations') as batch:
        batch.drop_column('volume_type')
