"""flavor_projects and quota_classes: Nova's flavor access lists and quota classes (issue 16).

Revision ID: a0011_flavor_access_quotas
Revises: a0010_aggregates
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0011_flavor_access_quotas"
down_revision: str | None = "a0010_aggregates"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table("flavor_projects",
                    sa.Column("flavor_id", sa.String(length=255), nullable=False),
                    sa.Column("project_id", sa.String(length=64), nullable=False),
                    sa.ForeignKeyConstraint(["flavor_id"], ["flavors.id"], ondelete="CASCADE"),
                    sa.PrimaryKeyConstraint("flavor_id", "project_id"))
    op.create_index("ix_flavor_projects_project_id", "flavor_projects", ["project_id"], unique=False)
    op.create_table("quota_classes",
                    sa.Column("class_name", sa.String(length=255), nullable=False),
                    sa.Column("resource", sa.String(length=64), nullable=False),
                    sa.Column("hard_limit", sa.Integer(), nullable=False),
                    sa.Column("updated_at", sa.DateTime(), nullable=False),
                    sa.PrimaryKeyConstraint("class_name", "resource"))


def downgrade() -> None:
    op.drop_table("quota_classes")
    op.drop_index("ix_flavor_projects_project_id", table_name="flavor_projects")
    op.drop_table("flavor_projects")
