"""Volume snapshots and what a volume was made from (issue 18): the volume_snapshots table and
volumes.snapshot_id / volumes.source_volid.

A DB from before Alembic had its missing volume tables made by the old runner from the code's tables
(cells/db/schema.py legacy_upgrade), so this revision adds only what is missing.

Revision ID: c0002_snapshots
Revises: c0001_baseline
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0002_snapshots"
down_revision: str | None = "c0001_baseline"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    columns = {c["name"] for c in inspector.get_columns("volumes")}
    missing = [name for name in ("snapshot_id", "source_volid") if name not in columns]
    if missing:
        with op.batch_alter_table('volumes') as batch:
            for name in missing:
                batch.add_column(sa.Column(name, sa.String(length=36), nullable=True))
    if inspector.has_table("volume_snapshots"):
        return
    op.create_table('volume_snapshots',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('volume_id', sa.String(length=36), nullable=False),
    sa.Column('project_id', sa.String(length=255), nullable=False),
    sa.Column('user_id', sa.String(length=255), nullable=True),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=True),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('updated_at', sa.String(length=32), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('deleted_at', sa.String(length=32), nullable=True),
    sa.Column('conductor_id', sa.String(length=255), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_volume_snapshots_volume_id'), 'volume_snapshots', ['volume_id'], unique=False)
    op.create_index(op.f('ix_volume_snapshots_status'), 'volume_snapshots', ['status'], unique=False)
    op.create_index('ix_volume_snapshots_project_deleted_created', 'volume_snapshots',
                    ['project_id', 'deleted', 'created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('volumes') as batch:
        batch.drop_column('source_volid')
        batch.drop_column('snapshot_id')
    op.drop_index('ix_volume_snapshots_project_deleted_created', table_name='volume_snapshots')
    op.drop_index(op.f('ix_volume_snapshots_status'), table_name='volume_snapshots')
    op.drop_index(op.f('ix_volume_snapshots_volume_id'), table_name='volume_snapshots')
    op.drop_table('volume_snapshots')
