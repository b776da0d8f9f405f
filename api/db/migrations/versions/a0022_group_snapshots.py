"""group_snapshots, group_snapshot_members: Cinder's group snapshots (api/volume/group_snapshots.py).

Revision ID: a0022_group_snapshots
Revises: a0021_volume_groups
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0022_group_snapshots"
down_revision: str | None = "a0021_volume_groups"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table("group_snapshots",
                    sa.Column("id", sa.String(length=36), nullable=False),
                    sa.Column("group_id", sa.String(length=36), nullable=False),
                    sa.Column("project_id", sa.String(length=64), nullable=False),
                    sa.Column("user_id", sa.String(length=64), nullable=True),
                    sa.Column("name", sa.String(length=255), nullable=True),
                    sa.Column("description", sa.Text(), nullable=True),
                    sa.Column("group_type_id", sa.String(length=36), nullable=False),
                    sa.Column("status", sa.String(length=32), nullable=False),
                    sa.Column("removing", sa.Boolean(), nullable=False),
                    sa.Column("created_at", sa.DateTime(), nullable=False),
                    sa.Column("updated_at", sa.DateTime(), nullable=False),
                    sa.PrimaryKeyConstraint("id"))
    op.create_index("ix_group_snapshots_group_id", "group_snapshots", ["group_id"])
    op.create_index("ix_group_snapshots_project_id", "group_snapshots", ["project_id"])
    op.create_table("group_snapshot_members",
                    sa.Column("snapshot_id", sa.String(length=36), nullable=False),
                    sa.Column("group_snapshot_id", sa.String(length=36), nullable=False),
                    sa.Column("volume_id", sa.String(length=36), nullable=False),
                    sa.ForeignKeyConstraint(["group_snapshot_id"], ["group_snapshots.id"], ondelete="CASCADE"),
                    sa.PrimaryKeyConstraint("snapshot_id"))
    op.create_index("ix_group_snapshot_members_group_snapshot_id", "group_snapshot_members", ["group_snapshot_id"])


def downgrade() -> None:
    op.drop_index("ix_group_snapshot_members_group_snapshot_id", table_name="group_snapshot_members")
    op.drop_table("group_snapshot_members")
    op.drop_index("ix_group_snapshots_project_id", table_name="group_snapshots")
    op.drop_index("ix_group_snapshots_group_id", table_name="group_snapshots")
    op.drop_table("group_snapshots")
