"""volume_type_projects: the projects a private volume type is shared with (Cinder's os-volume-type-access).

Revision ID: a0017_volume_type_access
Revises: a0016_implied_roles
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0017_volume_type_access"
down_revision: str | None = "a0016_implied_roles"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table("volume_type_projects",
                    sa.Column("volume_type_id", sa.String(length=36), nullable=False),
                    sa.Column("project_id", sa.String(length=64), nullable=False),
                    sa.ForeignKeyConstraint(["volume_type_id"], ["volume_types.id"], ondelete="CASCADE"),
                    sa.PrimaryKeyConstraint("volume_type_id", "project_id"))
    op.create_index("ix_volume_type_projects_project_id", "volume_type_projects", ["project_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_volume_type_projects_project_id", table_name="volume_type_projects")
    op.drop_table("volume_type_projects")
