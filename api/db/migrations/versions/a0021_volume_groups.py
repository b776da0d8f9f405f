"""volume_groups, volume_group_members: Cinder's generic volume groups (api/volume/groups.py).

Revision ID: a0021_volume_groups
Revises: a0020_image_tasks
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0021_volume_groups"
down_revision: str | None = "a0020_image_tasks"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table("volume_groups",
                    sa.Column("id", sa.String(length=36), nullable=False),
                    sa.Column("project_id", sa.String(length=64), nullable=False),
                    sa.Column("user_id", sa.String(length=64), nullable=True),
                    sa.Column("name", sa.String(length=255), nullable=True),
                    sa.Column("description", sa.Text(), nullable=True),
                    sa.Column("group_type_id", sa.String(length=36), nullable=False),
                    sa.Column("volume_types", sa.JSON(), nullable=False),
                    sa.Column("availability_zone", sa.String(length=255), nullable=False),
                    sa.Column("status", sa.String(length=32), nullable=False),
                    sa.Column("created_at", sa.DateTime(), nullable=False),
                    sa.Column("updated_at", sa.DateTime(), nullable=False),
                    sa.PrimaryKeyConstraint("id"))
    op.create_index("ix_volume_groups_project_id", "volume_groups", ["project_id"])
    op.create_table("volume_group_members",
                    sa.Column("volume_id", sa.String(length=36), nullable=False),
                    sa.Column("group_id", sa.String(length=36), nullable=False),
                    sa.ForeignKeyConstraint(["group_id"], ["volume_groups.id"], ondelete="CASCADE"),
                    sa.PrimaryKeyConstraint("volume_id"))
    op.create_index("ix_volume_group_members_group_id", "volume_group_members", ["group_id"])


def downgrade() -> None:
    op.drop_index("ix_volume_group_members_group_id", table_name="volume_group_members")
    op.drop_table("volume_group_members")
    op.drop_index("ix_volume_groups_project_id", table_name="volume_groups")
    op.drop_table("volume_groups")
