"""Keystone's project tags (project_tags) and domain-specific roles (roles.domain_id: the domain a role
belongs to, None for a global role). No FK on roles.domain_id, as projects.parent_id: SQLite cannot add one
to a table; deleting a domain deletes its roles (api/identity/domains.py).

Revision ID: a0018_identity_tags_domain_roles
Revises: a0017_volume_type_access
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0018_identity_tags_domain_roles"
down_revision: str | None = "a0017_volume_type_access"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    op.add_column("roles", sa.Column("domain_id", sa.String(length=64), nullable=True))
    op.create_index("ix_roles_domain", "roles", ["domain_id"])
    op.create_table(
        "project_tags",
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("project_id", "name"),
    )
    op.create_index("ix_project_tags_name", "project_tags", ["name"])


def downgrade() -> None:
    op.drop_index("ix_project_tags_name", table_name="project_tags")
    op.drop_table("project_tags")
    op.drop_index("ix_roles_domain", table_name="roles")
    with op.batch_alter_table("roles") as batch:
        batch.drop_column("domain_id")
